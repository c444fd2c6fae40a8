//! A Conflux tether against str0m (independent ICE, DTLS and SCTP) over loopback UDP:
//! at least 100,000 intact messages each way on unordered, `maxRetransmits = 0`,
//! negotiated channels, with both ends' SCTP MTU raised so one message is one datagram.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use conflux_dataplane::tether::{
    Fingerprint, HEADROOM, IceCredentials, LocalCertificate, MAX_DATAGRAM, OutPacket, TAILROOM,
    Tether, TetherConfig, TetherEvent, TetherState,
};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::config::{DtlsVersion, Fingerprint as StrFingerprint};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

const TARGET: u64 = 100_000;
const LEN: usize = 1300;
const CHANNELS: u16 = 4;
const LIMIT: Duration = Duration::from_secs(240);

fn fill(buf: &mut [u8], id: u64, salt: u8) {
    buf[..8].copy_from_slice(&id.to_be_bytes());
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = (id as u8).wrapping_mul(37).wrapping_add(i as u8) ^ salt;
    }
}

/// Checks a message's content; returns its id.
fn check(msg: &[u8], salt: u8) -> u64 {
    assert_eq!(msg.len(), LEN, "message length");
    let id = u64::from_be_bytes(msg[..8].try_into().unwrap());
    let mut want = vec![0u8; LEN];
    fill(&mut want, id, salt);
    assert!(msg == &want[..], "content of message {id} corrupted");
    id
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // Larger buffers keep bursts from overflowing loopback; failure only costs drops.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    s
}

struct Str0mSide {
    rtc: Rtc,
    sock: UdpSocket,
    addr: SocketAddr,
    channels: Vec<ChannelId>,
    open: usize,
    got: HashSet<u64>,
    next_send: u64,
    timeout: Instant,
}

impl Str0mSide {
    /// Drains str0m's output: datagrams to the socket, messages checked and counted.
    fn drain(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("str0m output") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    let _ = self.sock.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::ChannelOpen(..)) => self.open += 1,
                Output::Event(Event::ChannelData(d)) => {
                    let id = check(&d.data, 0x5a);
                    assert!(self.got.insert(id), "str0m got message {id} twice");
                }
                Output::Event(_) => {}
            }
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> bool {
        let mut any = false;
        while let Ok((n, from)) = self.sock.recv_from(buf) {
            any = true;
            let input = Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source: from,
                    destination: self.addr,
                    contents: (&buf[..n]).try_into().expect("datagram"),
                },
            );
            self.rtc.handle_input(input).expect("str0m input");
            // str0m's loop: one input, then drain its output before the next.
            self.timeout = self.drain();
        }
        any
    }

    /// Writes as many messages as str0m's send buffer takes.
    fn send(&mut self, budget: usize) {
        let mut msg = vec![0u8; LEN];
        for _ in 0..budget {
            let ch = self.channels[(self.next_send % CHANNELS as u64) as usize];
            fill(&mut msg, self.next_send, 0xa5);
            let Some(mut c) = self.rtc.channel(ch) else {
                return;
            };
            if !c.write(true, &msg).expect("str0m write") {
                return;
            }
            self.next_send += 1;
        }
    }
}

fn str0m_side(
    tether_addr: SocketAddr,
    local: &IceCredentials,
    fp: Fingerprint,
    str0m_leads: bool,
) -> Str0mSide {
    str0m::crypto::from_feature_flags().install_process_default();
    let sock = socket();
    let addr = sock.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_dtls_version(DtlsVersion::Dtls12)
        .set_mtu(MAX_DATAGRAM..=usize::MAX)
        .set_sctp_max_buffered_amount(1 << 20)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap())
        .unwrap();
    rtc.add_remote_candidate(Candidate::host(tether_addr, "udp").unwrap());
    let mut api = rtc.direct_api();
    api.set_remote_fingerprint(StrFingerprint {
        hash_func: "sha-256".into(),
        bytes: fp.0.to_vec(),
    });
    api.set_remote_ice_credentials(str0m::IceCreds {
        ufrag: local.ufrag.clone(),
        pass: local.pwd.clone(),
    });
    api.set_ice_controlling(str0m_leads);
    api.start_dtls(str0m_leads).unwrap();
    api.start_sctp(str0m_leads);
    let channels = (0..CHANNELS)
        .map(|id| {
            api.create_data_channel(ChannelConfig {
                label: format!("tether-{id}"),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                negotiated: Some(id),
                protocol: String::new(),
            })
        })
        .collect();
    Str0mSide {
        rtc,
        sock,
        addr,
        channels,
        open: 0,
        got: HashSet::new(),
        next_send: 0,
        timeout: Instant::now(),
    }
}

/// Conflux controls ICE and is the DTLS client and SCTP initiator.
#[test]
fn tether_leading_exchanges_100k_messages_each_way_with_str0m() {
    exchange(false);
}

/// str0m controls ICE and is the DTLS client and SCTP initiator.
#[test]
fn str0m_leading_exchanges_100k_messages_each_way_with_tether() {
    exchange(true);
}

fn exchange(str0m_leads: bool) {
    let csock = socket();
    let caddr = csock.local_addr().unwrap();
    let cert = LocalCertificate::generate().unwrap();
    let cice = IceCredentials::random();
    let mut s = str0m_side(caddr, &cice, cert.fingerprint(), str0m_leads);
    let sice = s.rtc.direct_api().local_ice_credentials();
    let sfp = s.rtc.direct_api().local_dtls_fingerprint().clone();
    assert_eq!(sfp.hash_func, "sha-256");
    let mut cfg = TetherConfig::new(
        caddr,
        vec![s.addr],
        cice,
        IceCredentials {
            ufrag: sice.ufrag,
            pwd: sice.pass,
        },
        !str0m_leads,
        cert,
        Fingerprint(sfp.bytes.as_slice().try_into().unwrap()),
    );
    cfg.channels = CHANNELS;
    let mut t = Tether::new(cfg, Instant::now()).unwrap();

    let start = Instant::now();
    let mut rbuf = vec![0u8; 65536];
    let mut tbuf = vec![0u8; MAX_DATAGRAM];
    let mut bufs: Vec<Vec<u8>> = (0..32)
        .map(|_| vec![0u8; HEADROOM + LEN + TAILROOM])
        .collect();
    let mut got_c: HashSet<u64> = HashSet::new();
    let mut next_c: u64 = 0;
    let mut connected = false;

    while got_c.len() < TARGET as usize || s.got.len() < TARGET as usize {
        let now = Instant::now();
        assert!(
            now - start < LIMIT,
            "timed out: conflux got {}, str0m got {}, tether {:?}",
            got_c.len(),
            s.got.len(),
            t.telemetry()
        );
        let mut busy = false;

        // Conflux receives.
        while let Ok((n, from)) = csock.recv_from(&mut rbuf) {
            busy = true;
            for m in t.handle_input(Instant::now(), from, &mut rbuf[..n]) {
                assert!(m.channel < CHANNELS);
                let id = check(m.data, 0xa5);
                assert!(got_c.insert(id), "tether got message {id} twice");
            }
        }
        busy |= s.receive(&mut rbuf);

        // Timers.
        let now = Instant::now();
        if t.poll_timeout().is_some_and(|d| d <= now) {
            t.handle_timeout(now);
        }
        if s.timeout <= now {
            s.rtc.handle_input(Input::Timeout(now)).unwrap();
            s.timeout = s.drain();
        }

        // Sending, once both are up.
        if connected && s.open >= CHANNELS as usize {
            if (got_c.len() as u64) < TARGET {
                s.send(32);
                s.timeout = s.drain();
            }
            if (s.got.len() as u64) < TARGET {
                let mut batch: Vec<OutPacket<'_>> = bufs
                    .iter_mut()
                    .enumerate()
                    .map(|(i, b)| {
                        fill(&mut b[HEADROOM..HEADROOM + LEN], next_c + i as u64, 0x5a);
                        OutPacket {
                            buf: b,
                            len: LEN,
                            flow: (next_c + i as u64) as u32,
                            datagram_len: 0,
                        }
                    })
                    .collect();
                let sum = t.send_batch(Instant::now(), &mut batch);
                let to = t.remote().unwrap();
                for p in batch.iter().take(sum.sent) {
                    let _ = csock.send_to(&p.buf[..p.datagram_len], to);
                }
                next_c += sum.sent as u64;
                busy |= sum.sent > 0;
            }
        }

        // Outputs.
        let now = Instant::now();
        while let Some(tx) = t.poll_transmit(now, &mut tbuf) {
            let _ = csock.send_to(&tbuf[..tx.len], tx.to);
        }
        while let Some(e) = t.poll_event() {
            match e {
                TetherEvent::Connected => connected = true,
                TetherEvent::Closed(r) => panic!("tether closed: {r}"),
                _ => {}
            }
        }
        s.timeout = s.drain();
        if !busy {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    assert_eq!(t.state(), TetherState::Up);
    let tel = t.telemetry();
    eprintln!(
        "sent {next_c} / str0m sent {}; tether: {tel:?}; {:?}",
        s.next_send,
        start.elapsed()
    );
    assert_eq!(tel.fragments_dropped, 0, "str0m fragmented a message");
    assert_eq!(tel.bad_records, 0);
    // Loopback loses little: abandoned messages stay a small fraction.
    assert!(tel.loss < 0.05, "loss {}", tel.loss);
}

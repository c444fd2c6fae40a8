//! Set-up by the libraries: the DTLS 1.2 handshake (`rtc-dtls`) and the SCTP association's
//! four-way handshake (`rtc-sctp`). Both allocate freely; they run once per tether.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc_dtls::cipher_suite::CipherSuiteId;
use rtc_dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc_dtls::endpoint::{Endpoint as DtlsEndpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_dtls::state::State;
use rtc_sctp::{
    Association as LibAssociation, ClientConfig, DatagramEvent, Endpoint as SctpEndpoint,
    EndpointConfig, Payload, ServerConfig, TransportConfig,
};
use rtc_shared::TransportProtocol;
use rustls::pki_types::CertificateDer;

use super::config::{Fingerprint, MAX_DATAGRAM, MAX_SCTP_PACKET, TetherConfig};
use super::sctp::Snoop;

/// Both libraries key their connections by remote address; the tether has exactly one
/// peer and routes by the ICE-selected address itself, so they get this stand-in.
const LIB_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5000);
const LIB_LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 5000);

/// What one DTLS read produced.
#[derive(Debug, Default)]
pub(crate) struct DtlsRead {
    pub(crate) completed: bool,
    pub(crate) app_data: Vec<BytesMut>,
    pub(crate) peer_closed: bool,
    /// The peer sent a fatal alert, or the library ended the handshake.
    pub(crate) fatal: bool,
    /// A record the library could not use (dropped).
    pub(crate) rejected: bool,
}

/// The DTLS handshake, and after it the library's handling of non-application records
/// (repeated flights, alerts).
pub(crate) struct Dtls {
    endpoint: DtlsEndpoint,
    client_config: Option<Arc<HandshakeConfig>>,
    mismatch: Arc<AtomicBool>,
    complete: bool,
}

fn verifier(expected: Fingerprint, mismatch: Arc<AtomicBool>) -> VerifyPeerCertificateFn {
    fn check(
        expected: Fingerprint,
        mismatch: &AtomicBool,
        certs: &[Vec<u8>],
        _roots: &[CertificateDer<'static>],
    ) -> rtc_shared::error::Result<()> {
        match certs.first() {
            Some(c) if Fingerprint::of_der(c) == expected => Ok(()),
            _ => {
                mismatch.store(true, Ordering::Relaxed);
                Err(rtc_shared::error::Error::Other(
                    "peer certificate fingerprint mismatch".to_owned(),
                ))
            }
        }
    }
    Arc::new(move |certs, roots| check(expected, &mismatch, certs, roots))
}

impl Dtls {
    pub(crate) fn new(cfg: &TetherConfig) -> Result<Self, String> {
        let provider = rtc_dtls::crypto_provider::default_provider().map_err(|e| e.to_string())?;
        let mismatch = Arc::new(AtomicBool::new(false));
        let hs = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![cfg.certificate.cert.clone()])
            .with_cipher_suites(vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256])
            // WebRTC clients always offer use_srtp, and a server that matches none of their
            // profiles must refuse the handshake: accept them though no SRTP ever runs.
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verifier(
                cfg.expected_fingerprint,
                mismatch.clone(),
            )))
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_mtu(MAX_DATAGRAM)
            .build(cfg.dtls_client, None)
            .map_err(|e| e.to_string())?;
        let hs = Arc::new(hs);
        let (server, client_config) = if cfg.dtls_client {
            (None, Some(hs))
        } else {
            (Some(hs), None)
        };
        Ok(Self {
            endpoint: DtlsEndpoint::new(LIB_LOCAL, TransportProtocol::UDP, server),
            client_config,
            mismatch,
            complete: false,
        })
    }

    /// Sends the ClientHello (client side; the server waits for it). Idempotent.
    pub(crate) fn start(&mut self, now: Instant) -> Result<(), String> {
        if let Some(c) = self.client_config.take() {
            self.endpoint
                .connect(now, LIB_PEER, c, None)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub(crate) fn read(&mut self, now: Instant, data: &[u8]) -> DtlsRead {
        let mut out = DtlsRead::default();
        match self
            .endpoint
            .read(now, LIB_PEER, None, BytesMut::from(data))
        {
            Ok(events) => {
                for e in events {
                    match e {
                        EndpointEvent::HandshakeComplete => {
                            self.complete = true;
                            out.completed = true;
                        }
                        EndpointEvent::ApplicationData(d) => out.app_data.push(d),
                        EndpointEvent::PeerClosed => out.peer_closed = true,
                        _ => {}
                    }
                }
            }
            Err(rtc_shared::error::Error::ErrAlertFatalOrClose) => out.fatal = true,
            Err(_) => out.rejected = true,
        }
        out
    }

    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let m = self.endpoint.poll_transmit()?;
            let n = m.message.len();
            if n <= buf.len() {
                buf[..n].copy_from_slice(&m.message);
                return Some(n);
            }
        }
    }

    /// Drives flight retransmission; an error means the handshake gave up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        match self.endpoint.handle_timeout(LIB_PEER, now) {
            Ok(()) => Ok(()),
            // No connection yet (a server before the ClientHello): nothing to drive.
            Err(_) if self.endpoint.get_connection_state(LIB_PEER).is_none() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout(&LIB_PEER)
    }

    pub(crate) fn state(&self) -> Option<&State> {
        self.endpoint.get_connection_state(LIB_PEER)
    }

    pub(crate) fn fingerprint_mismatch(&self) -> bool {
        self.mismatch.load(Ordering::Relaxed)
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Has the library seal `data` as application data; returns the record.
    #[cfg(test)]
    pub(crate) fn write_app_data(&mut self, now: Instant, data: &[u8]) -> Vec<u8> {
        self.endpoint.write(now, LIB_PEER, data).unwrap();
        let m = self.endpoint.poll_transmit().unwrap();
        m.message.to_vec()
    }
}

/// The library's SCTP association while it runs the four-way handshake; its packets are
/// snooped for the parameters the owned association needs.
pub(crate) struct SctpSetup {
    endpoint: SctpEndpoint,
    assoc: Option<(rtc_sctp::AssociationHandle, LibAssociation)>,
    outbound: VecDeque<Bytes>,
    pub(crate) snoop: Snoop,
}

fn transport(rwnd: u32, streams: u16) -> TransportConfig {
    TransportConfig::default()
        .with_max_receive_buffer_size(rwnd)
        .with_max_num_outbound_streams(streams)
        .with_max_num_inbound_streams(streams)
}

impl SctpSetup {
    pub(crate) fn new(
        now: Instant,
        initiator: bool,
        rwnd: u32,
        streams: u16,
    ) -> Result<Self, String> {
        let mut ep_cfg = EndpointConfig::new();
        ep_cfg.max_payload_size(MAX_SCTP_PACKET as u32);
        let server = (!initiator).then(|| Arc::new(ServerConfig::new(transport(rwnd, streams))));
        let mut endpoint =
            SctpEndpoint::new(LIB_LOCAL, TransportProtocol::UDP, Arc::new(ep_cfg), server);
        let assoc = if initiator {
            let c = ClientConfig::new(transport(rwnd, streams));
            Some(
                endpoint
                    .connect(now, c, LIB_PEER)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let mut s = Self {
            endpoint,
            assoc,
            outbound: VecDeque::new(),
            snoop: Snoop::default(),
        };
        s.drain(now);
        Ok(s)
    }

    fn drain(&mut self, now: Instant) {
        let Some((_, a)) = self.assoc.as_mut() else {
            return;
        };
        while a.poll().is_some() {}
        while a.poll_endpoint_event().is_some() {}
        while let Some(t) = a.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.message {
                for p in packets {
                    self.snoop.observe(&p, true);
                    self.outbound.push_back(p);
                }
            }
        }
    }

    /// Feeds one plaintext SCTP packet from the peer.
    pub(crate) fn handle(&mut self, now: Instant, packet: &[u8]) {
        self.snoop.observe(packet, false);
        let data = Bytes::copy_from_slice(packet);
        if let Some((h, ev)) = self.endpoint.handle(now, LIB_PEER, None, data) {
            match ev {
                DatagramEvent::NewAssociation(a) if self.assoc.is_none() => {
                    self.assoc = Some((h, a));
                }
                DatagramEvent::AssociationEvent(ev) => {
                    if let Some((_, a)) = self.assoc.as_mut() {
                        a.handle_event(ev);
                    }
                }
                _ => {}
            }
        }
        self.drain(now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, a)) = self.assoc.as_mut() {
            a.handle_timeout(now);
        }
        self.drain(now);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.assoc.as_ref().and_then(|(_, a)| a.poll_timeout())
    }

    /// The next handshake packet to seal and send.
    pub(crate) fn pop_outbound(&mut self) -> Option<Bytes> {
        self.outbound.pop_front()
    }

    /// Packets still to send when the owned association takes over (COOKIE ACK).
    pub(crate) fn into_outbound(self) -> VecDeque<Bytes> {
        self.outbound
    }
}

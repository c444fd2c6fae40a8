//! The worker's STUN desk: answers binding requests that belong to no ICE agent (the STUN
//! service of nodes with public addresses) and asks STUN servers what this worker's socket
//! looks like from outside (its server-reflexive address, which a NAT's mapping makes).
//!
//! Sans-io: datagrams and `now` in, datagrams to send and learned addresses out. Answers
//! are the size of the request (no amplification) and rate limited.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::stun::{MAX_WRITTEN, TXID_LEN, write_binding_request, write_binding_success};

/// Binding requests answered per second, at most (a burst of this many is allowed).
const ANSWERS_PER_SEC: u32 = 2_000;
/// Queries in flight, at most; older ones are forgotten.
const MAX_PENDING: usize = 32;
/// A query not answered within this is forgotten (the control process asks again).
const QUERY_TTL: Duration = Duration::from_secs(5);
/// Datagrams waiting to leave, at most (more are dropped and counted).
const MAX_OUTBOX: usize = 64;

/// What the desk counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StunCounters {
    /// Binding requests answered.
    pub answered: u64,
    /// Binding requests not answered: the service is off or over its rate.
    pub refused: u64,
    /// STUN datagrams that did not parse.
    pub malformed: u64,
    /// Queries sent to STUN servers.
    pub queries: u64,
    /// Answers to queries (reflexive addresses learned).
    pub learned: u64,
    /// Binding responses that answer no query of ours.
    pub unsolicited: u64,
}

impl StunCounters {
    /// Every counter with its snapshot name.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("stun_answered", self.answered),
            ("stun_refused", self.refused),
            ("stun_malformed", self.malformed),
            ("stun_queries", self.queries),
            ("stun_learned", self.learned),
            ("stun_unsolicited", self.unsolicited),
        ]
    }
}

struct Query {
    txid: [u8; TXID_LEN],
    server: SocketAddr,
    sent: Instant,
}

/// One worker's STUN service and reflexive-address queries.
pub struct StunDesk {
    /// Answer binding requests that carry no ICE username.
    pub service: bool,
    tokens: u32,
    refilled: Option<Instant>,
    pending: VecDeque<Query>,
    outbox: VecDeque<(SocketAddr, [u8; MAX_WRITTEN], usize)>,
    learned: VecDeque<(SocketAddr, SocketAddr)>,
    /// What it counts.
    pub counters: StunCounters,
}

impl Default for StunDesk {
    fn default() -> Self {
        Self {
            service: false,
            tokens: ANSWERS_PER_SEC,
            refilled: None,
            pending: VecDeque::new(),
            outbox: VecDeque::new(),
            learned: VecDeque::new(),
            counters: StunCounters::default(),
        }
    }
}

impl std::fmt::Debug for StunDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StunDesk")
            .field("service", &self.service)
            .field("pending", &self.pending.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl StunDesk {
    fn push(&mut self, to: SocketAddr, buf: [u8; MAX_WRITTEN], len: usize) -> bool {
        if self.outbox.len() >= MAX_OUTBOX {
            return false;
        }
        self.outbox.push_back((to, buf, len));
        true
    }

    /// Answers a binding request from `from` (one without an ICE username).
    pub fn answer(&mut self, now: Instant, from: SocketAddr, txid: [u8; TXID_LEN]) {
        if !self.service {
            self.counters.refused += 1;
            return;
        }
        let since = self.refilled.map_or(Duration::from_secs(1), |t| now - t);
        if since >= Duration::from_millis(1) {
            let add = (since.as_micros() * u128::from(ANSWERS_PER_SEC) / 1_000_000) as u32;
            self.tokens = self.tokens.saturating_add(add).min(ANSWERS_PER_SEC);
            self.refilled = Some(now);
        }
        if self.tokens == 0 {
            self.counters.refused += 1;
            return;
        }
        self.tokens -= 1;
        let mut buf = [0u8; MAX_WRITTEN];
        let len = write_binding_success(&txid, from, &mut buf);
        if self.push(from, buf, len) {
            self.counters.answered += 1;
        } else {
            self.counters.refused += 1;
        }
    }

    /// Asks each of `servers` for this socket's reflexive address.
    pub fn query(&mut self, now: Instant, servers: &[SocketAddr]) {
        self.pending.retain(|q| now < q.sent + QUERY_TTL);
        for s in servers {
            let mut txid = [0u8; TXID_LEN];
            // Without an OS generator the query cannot be told from a forged answer.
            if getrandom::fill(&mut txid).is_err() {
                return;
            }
            let mut buf = [0u8; MAX_WRITTEN];
            let len = write_binding_request(&txid, &mut buf);
            if !self.push(*s, buf, len) {
                return;
            }
            if self.pending.len() >= MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(Query {
                txid,
                server: *s,
                sent: now,
            });
            self.counters.queries += 1;
        }
    }

    /// Takes a binding success from `from`: true if it answered a query of ours.
    pub fn answered(
        &mut self,
        from: SocketAddr,
        txid: [u8; TXID_LEN],
        mapped: Option<SocketAddr>,
    ) -> bool {
        let Some(i) = self
            .pending
            .iter()
            .position(|q| q.txid == txid && q.server == from)
        else {
            return false;
        };
        self.pending.remove(i);
        match mapped {
            Some(m) => {
                self.counters.learned += 1;
                self.learned.push_back((from, m));
            }
            None => self.counters.malformed += 1,
        }
        true
    }

    /// A binding response that answers nothing of ours.
    pub fn unsolicited(&mut self) {
        self.counters.unsolicited += 1;
    }

    /// The next datagram to send: copied into `buf`, returned with its destination.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        let (to, b, len) = self.outbox.pop_front()?;
        if buf.len() < len {
            return None;
        }
        buf[..len].copy_from_slice(&b[..len]);
        Some((to, len))
    }

    /// The next learned `(server, reflexive address)`.
    pub fn poll_learned(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        self.learned.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::Message;

    #[test]
    fn a_query_is_answered_by_a_service_and_the_address_learned() {
        let now = Instant::now();
        let (mut client, mut server) = (StunDesk::default(), StunDesk::default());
        server.service = true;
        let server_addr: SocketAddr = "192.0.2.10:5000".parse().unwrap();
        let nat_addr: SocketAddr = "198.51.100.4:61000".parse().unwrap();
        client.query(now, &[server_addr]);
        let mut buf = [0u8; 64];
        let (to, n) = client.poll_transmit(&mut buf).unwrap();
        assert_eq!(to, server_addr);
        let req = Message::parse(&buf[..n]).unwrap();
        assert!(req.is_binding_request());
        server.answer(now, nat_addr, req.txid());
        let (back, n) = server.poll_transmit(&mut buf).unwrap();
        assert_eq!(back, nat_addr);
        let resp = Message::parse(&buf[..n]).unwrap();
        let mapped = resp.xor_mapped_address().unwrap();
        // Only the server asked may answer, and only once.
        assert!(!client.answered(nat_addr, resp.txid(), mapped));
        assert!(client.answered(server_addr, resp.txid(), mapped));
        assert!(!client.answered(server_addr, resp.txid(), mapped));
        assert_eq!(client.poll_learned(), Some((server_addr, nat_addr)));
        assert_eq!(client.counters.learned, 1);
    }

    #[test]
    fn the_service_is_off_by_default_and_rate_limited_when_on() {
        let now = Instant::now();
        let mut d = StunDesk::default();
        let from: SocketAddr = "10.0.0.1:1".parse().unwrap();
        d.answer(now, from, [0; TXID_LEN]);
        assert_eq!((d.counters.answered, d.counters.refused), (0, 1));
        d.service = true;
        for _ in 0..ANSWERS_PER_SEC + 10 {
            d.answer(now, from, [0; TXID_LEN]);
            let mut buf = [0u8; 64];
            while d.poll_transmit(&mut buf).is_some() {}
        }
        assert_eq!(d.counters.answered, u64::from(ANSWERS_PER_SEC));
        assert_eq!(d.counters.refused, 11);
        d.answer(now + Duration::from_millis(10), from, [0; TXID_LEN]);
        assert_eq!(d.counters.answered, u64::from(ANSWERS_PER_SEC) + 1);
    }
}

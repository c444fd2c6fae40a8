//! The node's sans-io state machine.
//!
//! [`Node`] takes every input through a `handle_*` method with the current time ([`Now`]),
//! and hands out what to do through [`Node::poll_output`] and when to be woken through
//! [`Node::poll_timeout`]. The driver calls, after any input, `poll_output` until it returns
//! `None`, then sleeps until `poll_timeout` and calls [`Node::handle_timeout`].
//!
//! Trust: a presence or handshake request is believed only when its Guardian certificate
//! verifies for this realm, the message's node signature verifies under the certified key,
//! it is fresh, and the sender is not revoked; everything else is dropped and counted, with
//! no reply and no log line. Streams exist only with peers the realm/taint policy allows;
//! every change of a certificate (this node's or a peer's) re-judges the pairs.

use crate::node::gateway;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conflux_shared::cert::{CertError, GuardianKey};
use conflux_shared::crypto::handshake::{
    HandshakeConfig, Initiator, Local, Peer as HsPeer, Responder,
};
use conflux_shared::crypto::identity::NodeIdentity;
use conflux_shared::crypto::key::StreamKey;
use conflux_shared::id::{NodeId, StreamId};
use conflux_shared::proto::{
    DirectoryRecord, HandshakeRequest, Presence, Revocation, SignedCertificate, SignedPresence,
};
use conflux_shared::taint::Realm;
use prost::Message;

use super::config::Timing;
use super::counters::{Counters, Ignored};
use super::handshake::{self, MAX_REQUEST_LEN, SCRATCH_LEN};
use super::nats::subjects;
use super::peers::{Outbound, Peer, Stream};
use super::policy;
use super::presence;
use super::ratelimit::{KeyedLimiter, Rate, TokenBucket};
use super::trust::{Trust, TrustedCert};

mod demand;
mod view;

#[cfg(test)]
mod tests;

/// A stream younger than this is not redone when a peer's request does not mention it: the
/// request may have been written before the stream was set up.
pub const CROSSING_GRACE: Duration = Duration::from_secs(2);
/// Shortest gap between two presence announcements.
pub const MIN_ANNOUNCE_GAP: Duration = Duration::from_millis(100);
/// How long a directory answer about a peer is trusted before it is asked again.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(60);
/// Shortest gap between two requests for Guardian's keys.
pub const KEYS_REFRESH_GAP: Duration = Duration::from_secs(30);
/// Wait before a failed certificate renewal is tried again.
pub const RENEW_RETRY: Duration = Duration::from_secs(30);
/// Presence messages a second one peer may send before the excess is dropped.
const PRESENCE_RATE: Rate = Rate::new(5.0, 10.0);
/// Handshake requests a second one peer may send.
const HANDSHAKE_RATE: Rate = Rate::new(2.0, 5.0);
/// All peers together.
const GLOBAL_RATE: Rate = Rate::new(500.0, 1000.0);
/// Directory look-ups a second.
const DIRECTORY_RATE: Rate = Rate::new(20.0, 50.0);
/// Peers (or claimed ids) tracked by each rate limiter.
const LIMITER_KEYS: usize = 65_536;

/// The current time, as both clocks: monotonic for timers, unix for certificates and
/// message timestamps.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Unix time in milliseconds.
    pub unix_ms: u64,
}

impl Now {
    /// Unix time in seconds.
    pub fn unix_s(&self) -> u64 {
        self.unix_ms / 1000
    }
}

/// Which way a stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// This node is the source.
    Out,
    /// The peer is the source.
    In,
}

impl Direction {
    /// "out" or "in".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

/// What the driver should do.
#[derive(Debug)]
pub enum Output {
    /// Publish `payload` on `subject`.
    Publish {
        /// NATS subject.
        subject: String,
        /// Message body.
        payload: Vec<u8>,
    },
    /// Send a handshake request and report its reply (or its absence) with
    /// [`Node::handle_handshake_reply`].
    HandshakeRequest {
        /// The responder.
        peer: NodeId,
        /// Identifies the attempt in the reply.
        attempt: u64,
        /// The responder's handshake subject.
        subject: String,
        /// An encoded `HandshakeRequest`.
        payload: Vec<u8>,
    },
    /// Read the peer's record from the realm directory and report it with
    /// [`Node::handle_directory_record`].
    LookupDirectory {
        /// The node to look up.
        node: NodeId,
    },
    /// Ask Guardian for a renewed certificate, then call [`Node::set_certificate`] (or
    /// [`Node::renewal_failed`]).
    RenewCertificate,
    /// Ask Guardian for its current keys, then call [`Node::set_guardian_keys`].
    RefreshGuardianKeys,
    /// A stream is set up: the data plane may use its key.
    StreamUp {
        /// The other end.
        peer: NodeId,
        /// Which way it goes.
        direction: Direction,
        /// The stream.
        stream_id: StreamId,
        /// Its key.
        key: StreamKey,
        /// The data plane key epoch (0 or 1) the key takes.
        epoch: u8,
        /// A rekey: the stream this key replaces (same data plane stream, other epoch).
        replaces: Option<StreamId>,
    },
    /// A stream is gone: the data plane must forget its key.
    StreamDown {
        /// The other end.
        peer: NodeId,
        /// Which way it went.
        direction: Direction,
        /// The stream.
        stream_id: StreamId,
        /// The peer restarted or set the stream up again: a new stream follows, and the
        /// data plane may keep the old key for a short grace; otherwise (policy, idle,
        /// revocation, silence) the key goes at once.
        replaced: bool,
    },
}

/// Why this node's own certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnCertError {
    /// It does not verify under Guardian's keys.
    #[error("certificate rejected: {0:?}")]
    Rejected(Ignored),
    /// It does not certify this node's id or current keys.
    #[error("certificate is not for this node's id and keys")]
    NotOurs,
    /// The certificate itself could not be decoded.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// What a node starts with, once registered.
pub struct NodeParams {
    /// The stable node id.
    pub node_id: NodeId,
    /// This run's key pairs.
    pub identity: NodeIdentity,
    /// Guardian's certificate for them.
    pub certificate: SignedCertificate,
    /// Guardian's keys that certificates may be signed with.
    pub guardian_keys: Vec<GuardianKey>,
    /// Control loop timings.
    pub timing: Timing,
}

/// The node's state.
pub struct Node {
    id: NodeId,
    identity: NodeIdentity,
    cert: Arc<TrustedCert>,
    trust: Trust,
    timing: Timing,
    hs_config: HandshakeConfig,
    responder: Responder,
    peers: BTreeMap<NodeId, Peer>,
    revoked: HashMap<NodeId, u64>,
    presence_limit: KeyedLimiter<NodeId>,
    handshake_limit: KeyedLimiter<NodeId>,
    directory_limit: TokenBucket,
    keys_refresh_after: Instant,
    presence: SignedPresence,
    last_presence_ms: u64,
    next_announce: Instant,
    last_announce: Option<Instant>,
    renew_at: Instant,
    renew_pending: bool,
    next_attempt: u64,
    outputs: VecDeque<Output>,
    counters: Counters,
    scratch: Box<[u8; SCRATCH_LEN]>,
    started: Instant,
    on_demand: bool,
    relay: bool,
    /// LAN prefixes this node advertises (gateway).
    routes: Vec<String>,
    /// Where this node answers STUN ("ip:port"), announced in its presence.
    stun: Vec<String>,
    nats_up: bool,
}

impl Node {
    /// A node with its certificate, not yet announced (the first `handle_timeout` or
    /// [`Node::handle_connected`] announces it).
    pub fn new(p: NodeParams, now: Now) -> Result<Self, OwnCertError> {
        let realm = realm_of(&p.certificate)?;
        let mut trust = Trust::new(realm, p.guardian_keys);
        let cert = own_cert(&mut trust, &p.certificate, p.node_id, &p.identity, now)?;
        let presence = presence::sign(&p.identity, p.node_id, &cert.signed, now.unix_ms);
        let hs_config = HandshakeConfig::default();
        let mut node = Self {
            id: p.node_id,
            identity: p.identity,
            renew_at: now.mono,
            cert,
            trust,
            timing: p.timing,
            hs_config,
            responder: Responder::new(hs_config),
            peers: BTreeMap::new(),
            revoked: HashMap::new(),
            presence_limit: KeyedLimiter::new(PRESENCE_RATE, GLOBAL_RATE, LIMITER_KEYS, now.mono),
            handshake_limit: KeyedLimiter::new(HANDSHAKE_RATE, GLOBAL_RATE, LIMITER_KEYS, now.mono),
            directory_limit: TokenBucket::new(DIRECTORY_RATE, now.mono),
            keys_refresh_after: now.mono,
            presence,
            last_presence_ms: now.unix_ms,
            next_announce: now.mono,
            last_announce: None,
            renew_pending: false,
            next_attempt: 0,
            outputs: VecDeque::new(),
            counters: Counters::default(),
            scratch: Box::new([0; SCRATCH_LEN]),
            started: now.mono,
            on_demand: false,
            relay: false,
            routes: Vec::new(),
            stun: Vec::new(),
            nats_up: true,
        };
        node.schedule_renewal(now);
        Ok(node)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// This node's realm.
    pub fn realm(&self) -> &Realm {
        self.trust.realm()
    }

    /// This node's current certificate.
    pub fn certificate(&self) -> &TrustedCert {
        &self.cert
    }

    /// What the node has done and dropped.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a message the driver dropped before it reached the node.
    pub fn ignore(&mut self, why: Ignored) {
        self.counters.ignore(why);
    }

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_announce;
        if !self.renew_pending {
            t = t.min(self.renew_at);
        }
        for p in self.peers.values() {
            if self.nats_up {
                t = t.min(p.last_seen + self.timing.peer_timeout);
            }
            match &p.outbound {
                Outbound::Idle if p.verdict.allows() && self.wants(p) => t = t.min(p.retry_at),
                Outbound::Pending { sent, .. } => t = t.min(*sent + self.pending_limit()),
                _ => {}
            }
            if let Some(c) = p.directory_checked {
                t = t.min(c + DIRECTORY_TTL);
            }
            if let Some(r) = &p.rekey {
                t = t.min(r.sent + self.pending_limit());
            }
        }
        t
    }

    /// Runs whatever is due: announcements, peer expiry, handshake retries, renewal.
    pub fn handle_timeout(&mut self, now: Now) {
        let nats_up = self.nats_up;
        let expired: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| nats_up && now.mono >= p.last_seen + self.timing.peer_timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove_peer(id);
        }
        let limit = self.pending_limit();
        let mut due = Vec::new();
        let on_demand = self.on_demand;
        for (id, p) in &mut self.peers {
            if let Outbound::Pending { sent, .. } = &p.outbound
                && now.mono >= *sent + limit
            {
                p.failed(now.mono);
            }
            if p.rekey.as_ref().is_some_and(|r| now.mono >= r.sent + limit) {
                p.rekey = None;
            }
            if p.verdict.allows()
                && (!on_demand || p.wanted)
                && matches!(p.outbound, Outbound::Idle)
                && now.mono >= p.retry_at
            {
                due.push(*id);
            }
        }
        for id in due {
            self.start_handshake(id, now, false);
        }
        let stale: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.directory_checked
                    .is_some_and(|c| now.mono >= c + DIRECTORY_TTL)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.lookup_directory(id, now);
        }
        self.revoked.retain(|_, until| *until >= now.unix_s());
        if !self.renew_pending && now.mono >= self.renew_at {
            self.renew_pending = true;
            self.outputs.push_back(Output::RenewCertificate);
        }
        if now.mono >= self.next_announce {
            self.announce(now);
        }
    }

    /// The NATS connection is (again) up: announce at once, so the realm's view heals.
    pub fn handle_connected(&mut self, now: Now) {
        // Peers were silent because this node could not hear them, not because they left:
        // each gets a full timeout to be heard again before its streams go.
        if !self.nats_up {
            for p in self.peers.values_mut() {
                p.last_seen = p.last_seen.max(now.mono);
            }
        }
        self.nats_up = true;
        self.announce_soon(now);
    }

    /// The NATS connection is down: silence from peers no longer means they left, so none
    /// is expired (and no established stream torn down) until it is back.
    pub fn handle_disconnected(&mut self) {
        self.nats_up = false;
    }

    /// A message from the realm's presence subject.
    pub fn handle_presence(&mut self, now: Now, bytes: &[u8]) {
        let r = presence::decode(bytes).and_then(|signed| {
            let (id, p) = presence::claimed_node(&signed)?;
            if !self.presence_limit.allow(&id, now.mono) {
                return Err(Ignored::RateLimited);
            }
            self.accept_presence(now, &signed, &p, id, false)
        });
        if let Err(why) = r {
            self.counters.ignore(why);
        }
    }

    /// A handshake request on this node's subject; returns the reply to send, or `None` to
    /// stay silent.
    #[must_use]
    pub fn handle_handshake_request(&mut self, now: Now, bytes: &[u8]) -> Option<Vec<u8>> {
        match self.answer(now, bytes) {
            Ok(reply) => Some(reply),
            Err(why) => {
                self.counters.ignore(why);
                None
            }
        }
    }

    /// The reply to a handshake request, or `None` if none came in time.
    pub fn handle_handshake_reply(
        &mut self,
        now: Now,
        peer: NodeId,
        attempt: u64,
        reply: Option<&[u8]>,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            if reply.is_some() {
                self.counters.ignore(Ignored::Unexpected);
            }
            return;
        };
        if p.rekey.as_ref().is_some_and(|r| r.attempt == attempt) {
            self.finish_rekey(now, peer, reply);
            return;
        }
        let Outbound::Pending {
            attempt: want,
            sent,
            initiator,
        } = &p.outbound
        else {
            if reply.is_some() {
                self.counters.ignore(Ignored::Unexpected);
            }
            return;
        };
        if *want != attempt {
            if reply.is_some() {
                self.counters.ignore(Ignored::Unexpected);
            }
            return;
        }
        let Some(reply) = reply else {
            p.failed(now.mono);
            return;
        };
        let local = Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.cert.membership,
        };
        let hs_peer = HsPeer {
            id: peer,
            public: &p.cert.identity,
            membership: &p.cert.membership,
        };
        match initiator.handle_accept(&local, &hs_peer, reply, now.unix_s()) {
            Ok(est) => {
                let handshake_us = now.mono.saturating_duration_since(*sent).as_micros() as u64;
                let stream = Stream {
                    stream_id: est.stream_id,
                    fingerprint: handshake::key_fingerprint(&est.key),
                    key: est.key,
                    established: now.mono,
                    established_unix_ms: now.unix_ms,
                    handshake_us,
                    epoch: 0,
                    generation: 1,
                };
                self.outputs.push_back(Output::StreamUp {
                    peer,
                    direction: Direction::Out,
                    stream_id: stream.stream_id,
                    key: stream.key.clone(),
                    epoch: 0,
                    replaces: None,
                });
                p.outbound = Outbound::Up(stream);
                p.backoff = super::peers::FIRST_BACKOFF;
                self.counters.handshakes_initiated += 1;
            }
            Err(e) => {
                p.failed(now.mono);
                self.counters.ignore(handshake::ignored(&e));
            }
        }
    }

    /// A message from the realm's revocation subject. Anyone in the realm can publish
    /// there, so it only triggers a directory look-up; the directory (written by Guardian
    /// alone) decides.
    pub fn handle_revocation(&mut self, now: Now, bytes: &[u8]) {
        let Ok(r) = Revocation::decode(bytes) else {
            self.counters.ignore(Ignored::Malformed);
            return;
        };
        let Ok(id) = <[u8; 16]>::try_from(r.node_id.as_slice()) else {
            self.counters.ignore(Ignored::Malformed);
            return;
        };
        let id = NodeId(id);
        if id != self.id {
            self.lookup_directory(id, now);
        }
    }

    /// A directory record (or its absence) asked for with [`Output::LookupDirectory`].
    pub fn handle_directory_record(&mut self, now: Now, node: NodeId, record: Option<&[u8]>) {
        let Some(bytes) = record else { return };
        let Ok(rec) = DirectoryRecord::decode(bytes) else {
            self.counters.ignore(Ignored::Malformed);
            return;
        };
        if rec.revoked {
            // Until every certificate the node could still hold has expired.
            let until = now.unix_s() + 7 * 24 * 3600;
            self.revoked.insert(node, until);
            self.remove_peer(node);
        }
    }

    /// Adopts a new certificate for this node (taint change or renewal): re-judges every
    /// peer and announces at once.
    pub fn set_certificate(
        &mut self,
        now: Now,
        certificate: &SignedCertificate,
    ) -> Result<(), OwnCertError> {
        let cert = own_cert(&mut self.trust, certificate, self.id, &self.identity, now)?;
        self.cert = cert;
        self.renew_pending = false;
        self.schedule_renewal(now);
        // Announced before any handshake starts, so the requests carry the new certificate.
        self.announce(now);
        let ids: Vec<NodeId> = self.peers.keys().copied().collect();
        for id in ids {
            self.rejudge(id, now);
        }
        Ok(())
    }

    /// A renewal asked for with [`Output::RenewCertificate`] failed; try again later.
    pub fn renewal_failed(&mut self, now: Now) {
        self.renew_pending = false;
        self.renew_at = now.mono + RENEW_RETRY;
    }

    /// Replaces Guardian's keys (asked for with [`Output::RefreshGuardianKeys`]).
    pub fn set_guardian_keys(&mut self, keys: Vec<GuardianKey>) {
        self.trust.set_keys(keys);
    }

    fn pending_limit(&self) -> Duration {
        // The driver reports a timeout itself; this only frees a slot it never reported.
        self.timing.handshake_timeout + Duration::from_secs(2)
    }

    fn schedule_renewal(&mut self, now: Now) {
        let (nb, na) = (self.cert.not_before, self.cert.not_after);
        let at = nb + (na.saturating_sub(nb)) * 2 / 3;
        self.renew_at = now.mono + Duration::from_secs(at.saturating_sub(now.unix_s()));
    }

    fn announce_soon(&mut self, now: Now) {
        let earliest = self
            .last_announce
            .map_or(now.mono, |l| (l + MIN_ANNOUNCE_GAP).max(now.mono));
        self.next_announce = self.next_announce.min(earliest);
    }

    fn announce(&mut self, now: Now) {
        // Strictly increasing, so receivers can tell a replay from a newer announcement.
        let ts = now.unix_ms.max(self.last_presence_ms + 1);
        self.last_presence_ms = ts;
        self.presence = presence::sign_with(
            &self.identity,
            self.id,
            &self.cert.signed,
            ts,
            self.relay,
            &self.routes,
            &self.stun,
        );
        self.outputs.push_back(Output::Publish {
            subject: subjects::presence(self.trust.realm()),
            payload: self.presence.encode_to_vec(),
        });
        self.counters.presence_sent += 1;
        self.last_announce = Some(now.mono);
        self.next_announce = now.mono + self.timing.presence_interval;
    }

    fn lookup_directory(&mut self, id: NodeId, now: Now) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.directory_checked = Some(now.mono);
        }
        if self.directory_limit.try_take(now.mono) {
            self.outputs.push_back(Output::LookupDirectory { node: id });
        }
    }

    /// Checks a presence and, if it is newer than what is known, adopts what it says.
    ///
    /// From a handshake request (`in_handshake`), an older presence is accepted without
    /// change when it carries the certificate already known: the request's own signature
    /// is what matters there, and presence messages may overtake it.
    fn accept_presence(
        &mut self,
        now: Now,
        signed: &SignedPresence,
        p: &Presence,
        id: NodeId,
        in_handshake: bool,
    ) -> Result<(), Ignored> {
        if id == self.id {
            return Err(Ignored::Replayed);
        }
        if self.revoked.contains_key(&id) {
            return Err(Ignored::Revoked);
        }
        if let Some(known) = self.peers.get_mut(&id)
            && p.timestamp_ms <= known.last_presence_ms
        {
            let same_cert = p
                .certificate
                .as_ref()
                .is_some_and(|c| super::trust::digest(c) == known.cert.digest);
            if in_handshake && same_cert {
                return Ok(());
            }
            // The broadcast of a presence first seen inside a handshake request (the two
            // travel on different subjects, in either order) is expected once, not stale.
            let echo = p.timestamp_ms == known.last_presence_ms
                && same_cert
                && std::mem::take(&mut known.presence_via_handshake);
            return if echo { Ok(()) } else { Err(Ignored::Stale) };
        }
        let v = presence::verify(signed, p, id, &mut self.trust, now.unix_ms).inspect_err(|e| {
            if *e == Ignored::UnknownKey && now.mono >= self.keys_refresh_after {
                self.keys_refresh_after = now.mono + KEYS_REFRESH_GAP;
                self.outputs.push_back(Output::RefreshGuardianKeys);
            }
        })?;
        self.counters.presence_accepted += 1;
        match self.peers.get_mut(&id) {
            None => {
                let mut peer = Peer::new(v.cert, v.timestamp_ms, now.mono, now.unix_ms);
                peer.relay = p.relay;
                peer.stun = stun_servers(&p.stun);
                let (routes, refused) = gateway::accepted(&peer.cert, &p.routes);
                self.counters.routes_refused += refused;
                peer.routes = routes;
                peer.presence_via_handshake = in_handshake;
                self.peers.insert(id, peer);
                self.lookup_directory(id, now);
                // A newcomer learns of this node at once instead of at the next period.
                self.announce_soon(now);
                self.rejudge(id, now);
            }
            Some(_) => {
                let cert = v.cert.clone();
                let routes = gateway::accepted(&cert, &p.routes);
                if routes.1 > 0 {
                    self.counters.routes_refused += routes.1;
                }
                let Some(peer) = self.peers.get_mut(&id) else {
                    return Ok(());
                };
                peer.routes = routes.0;
                peer.relay = p.relay;
                peer.stun = stun_servers(&p.stun);
                peer.presence_via_handshake = in_handshake;
                peer.last_presence_ms = v.timestamp_ms;
                peer.last_seen = now.mono;
                peer.last_seen_unix_ms = now.unix_ms;
                if peer.cert.digest != v.cert.digest {
                    let new_keys = peer.cert.identity != v.cert.identity;
                    peer.cert = v.cert;
                    if new_keys {
                        // A restarted peer: streams made with its old keys are dead.
                        self.drop_streams(id, true);
                    }
                    self.rejudge(id, now);
                }
            }
        }
        Ok(())
    }

    /// Re-applies the policy to a peer: drops its streams if it may no longer talk to this
    /// node, or starts a handshake if it now may.
    fn rejudge(&mut self, id: NodeId, now: Now) {
        let mine = &self.cert.membership;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let verdict = policy::judge(mine, &p.cert.membership);
        let was = p.verdict;
        p.verdict = verdict;
        if !verdict.allows() {
            self.drop_streams(id, false);
        } else if !was.allows() || matches!(p.outbound, Outbound::Idle) {
            p.retry_now(now.mono);
            if matches!(p.outbound, Outbound::Idle) && (!self.on_demand || p.wanted) {
                self.start_handshake(id, now, false);
            }
        }
    }

    /// Starts a handshake for a new outbound stream, or (`rekey`) for a fresh key of the
    /// current one, which keeps carrying traffic meanwhile.
    fn start_handshake(&mut self, id: NodeId, now: Now, rekey: bool) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let current = match (&p.outbound, rekey) {
            (Outbound::Up(s), true) if p.rekey.is_none() => Some((s.stream_id, s.epoch)),
            (_, true) => return,
            _ => None,
        };
        let local = Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.cert.membership,
        };
        let hs_peer = HsPeer {
            id,
            public: &p.cert.identity,
            membership: &p.cert.membership,
        };
        let started = Initiator::start(
            &self.hs_config,
            &local,
            &hs_peer,
            StreamId::random(),
            now.unix_s(),
            &mut self.scratch[..],
        );
        let (initiator, len) = match started {
            Ok(s) => s,
            Err(_) if rekey => return,
            Err(_) => {
                p.failed(now.mono);
                return;
            }
        };
        self.next_attempt += 1;
        let attempt = self.next_attempt;
        let payload = HandshakeRequest {
            presence: Some(self.presence.clone()),
            init: self.scratch[..len].to_vec(),
            inbound_stream_id: p
                .inbound
                .as_ref()
                .map(|s| s.stream_id.0.to_vec())
                .unwrap_or_default(),
            replaces_stream_id: current.map(|(s, _)| s.0.to_vec()).unwrap_or_default(),
            key_epoch: current.map_or(0, |(_, e)| u32::from(1 - e)),
        }
        .encode_to_vec();
        if rekey {
            p.rekey = Some(super::peers::Rekey {
                attempt,
                sent: now.mono,
                initiator: Box::new(initiator),
            });
        } else {
            p.outbound = Outbound::Pending {
                attempt,
                sent: now.mono,
                initiator: Box::new(initiator),
            };
        }
        self.outputs.push_back(Output::HandshakeRequest {
            peer: id,
            attempt,
            subject: subjects::handshake(self.trust.realm(), id),
            payload,
        });
    }

    fn answer(&mut self, now: Now, bytes: &[u8]) -> Result<Vec<u8>, Ignored> {
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(Ignored::Malformed);
        }
        let req = HandshakeRequest::decode(bytes).map_err(|_| Ignored::Malformed)?;
        let signed = req.presence.ok_or(Ignored::Malformed)?;
        let (id, p) = presence::claimed_node(&signed)?;
        if !self.handshake_limit.allow(&id, now.mono) {
            return Err(Ignored::RateLimited);
        }
        self.accept_presence(now, &signed, &p, id, true)?;
        let peer = self.peers.get_mut(&id).ok_or(Ignored::Unexpected)?;
        if !peer.verdict.allows() {
            return Err(Ignored::Policy);
        }
        let local = Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.cert.membership,
        };
        let hs_peer = HsPeer {
            id,
            public: &peer.cert.identity,
            membership: &peer.cert.membership,
        };
        let (est, len) = self
            .responder
            .handle_init(
                &local,
                &hs_peer,
                &req.init,
                now.unix_s(),
                &mut self.scratch[..],
            )
            .map_err(|e| handshake::ignored(&e))?;
        let epoch = u8::try_from(req.key_epoch)
            .ok()
            .filter(|e| *e <= 1)
            .ok_or(Ignored::Malformed)?;
        let replaces = peer
            .inbound
            .as_ref()
            .filter(|s| {
                !req.replaces_stream_id.is_empty()
                    && s.stream_id.0.as_slice() == req.replaces_stream_id.as_slice()
            })
            .map(|s| (s.stream_id, s.generation));
        let stream = Stream {
            stream_id: est.stream_id,
            fingerprint: handshake::key_fingerprint(&est.key),
            key: est.key,
            established: now.mono,
            established_unix_ms: now.unix_ms,
            handshake_us: 0,
            epoch,
            generation: replaces.map_or(1, |(_, g)| g + 1),
        };
        if let Some(old) = peer.inbound.take()
            && replaces.is_none()
        {
            self.outputs.push_back(Output::StreamDown {
                peer: id,
                direction: Direction::In,
                stream_id: old.stream_id,
                replaced: true,
            });
        }
        self.outputs.push_back(Output::StreamUp {
            peer: id,
            direction: Direction::In,
            stream_id: stream.stream_id,
            key: stream.key.clone(),
            epoch,
            replaces: replaces.map(|(s, _)| s),
        });
        peer.inbound = Some(stream);
        self.counters.handshakes_answered += 1;
        let reply = self.scratch[..len].to_vec();
        // The initiator forgot this node's stream to it (it timed this node out): set
        // that stream up again. A stream younger than the grace period may simply have
        // crossed this request, so it is left alone; the new one is then known to the
        // initiator, so this cannot repeat.
        let forgotten = peer.outbound.stream().is_some_and(|s| {
            s.stream_id.0.as_slice() != req.inbound_stream_id.as_slice()
                && now.mono.saturating_duration_since(s.established) >= CROSSING_GRACE
        });
        if forgotten {
            if let Outbound::Up(s) = std::mem::take(&mut peer.outbound) {
                self.outputs.push_back(Output::StreamDown {
                    peer: id,
                    direction: Direction::Out,
                    stream_id: s.stream_id,
                    replaced: true,
                });
            }
            peer.retry_now(now.mono);
            if !self.on_demand || peer.wanted {
                self.start_handshake(id, now, false);
            }
        }
        Ok(reply)
    }

    /// Drops both streams with a peer (and any handshake in flight), keeping the peer.
    fn drop_streams(&mut self, id: NodeId, replaced: bool) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.rekey = None;
        if let Outbound::Up(s) = std::mem::take(&mut p.outbound) {
            self.outputs.push_back(Output::StreamDown {
                peer: id,
                direction: Direction::Out,
                stream_id: s.stream_id,
                replaced,
            });
        }
        if let Some(s) = p.inbound.take() {
            self.outputs.push_back(Output::StreamDown {
                peer: id,
                direction: Direction::In,
                stream_id: s.stream_id,
                replaced,
            });
        }
    }

    fn remove_peer(&mut self, id: NodeId) {
        self.drop_streams(id, false);
        self.peers.remove(&id);
        self.presence_limit.forget(&id);
        self.handshake_limit.forget(&id);
    }
}

fn realm_of(c: &SignedCertificate) -> Result<Realm, OwnCertError> {
    let cert = conflux_shared::proto::NodeCertificate::decode(c.certificate.as_slice())
        .map_err(|_| CertError::Malformed("certificate"))?;
    Ok(cert.realm_name()?)
}

fn own_cert(
    trust: &mut Trust,
    signed: &SignedCertificate,
    id: NodeId,
    identity: &NodeIdentity,
    now: Now,
) -> Result<Arc<TrustedCert>, OwnCertError> {
    let c = trust
        .verify(signed, now.unix_s())
        .map_err(OwnCertError::Rejected)?;
    if c.node_id != id || &c.identity != identity.public() {
        return Err(OwnCertError::NotOurs);
    }
    Ok(c)
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// A peer's announced STUN service addresses: at most a few, each a valid `ip:port`
/// (anything else is dropped).
fn stun_servers(list: &[String]) -> Vec<std::net::SocketAddr> {
    list.iter()
        .take(MAX_STUN_PER_PEER)
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// STUN addresses taken from one peer's presence, at most.
const MAX_STUN_PER_PEER: usize = 8;

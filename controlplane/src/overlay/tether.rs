//! Tethers on demand: one per next-hop node, set up by an offer/answer exchange of signed
//! signals and opened in the data plane by both ends.
//!
//! A WebRTC association lives on one data plane worker, and a worker only sends on the
//! associations it holds, so a tether between an end with `m` workers and one with `n`
//! is `max(m, n)` associations: association `k` joins worker `k mod m` of one end to
//! worker `k mod n` of the other (each worker has its own UDP port, which the offer and
//! answer list). Every worker then holds at least one association to the peer, whichever
//! TUN queue or relay datagram brings it a packet. Association `k` uses the ICE username
//! fragment of the signal with `k` appended (two digits; none for `k = 0`), so both ends
//! derive the same distinct credentials without more signalling; the data plane tether id
//! of each association is this end's own, and the link installs a route or relay entry on
//! each worker with the associations that worker holds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conflux_shared::id::NodeId;
use conflux_shared::proto::{TetherAnswer, TetherOffer, TetherOpen};
use conflux_shared::wire::record::TetherId;

use super::core::{Command, Directory, Overlay};
use super::path::Pending;
use super::signal::Payload;

/// Associations one tether may have (one per worker of the larger end).
pub(super) const MAX_ASSOCIATIONS: usize = 64;

/// A failed tether is not offered again before this.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// An offer crossing this node's own winning one arrives within this of it coming up; a
/// later offer means the peer lost its tether (it restarted) and replaces this one.
const CROSSING_GRACE: Duration = Duration::from_secs(5);

/// Where a tether is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// This end offered; waiting for the answer.
    Offering,
    /// Both ends opened it; waiting for the data plane to report it up.
    Opening,
    /// Carrying traffic.
    Up,
    /// Failed or went down; kept to remember not to retry at once.
    Failed,
}

/// One association of a tether: a data plane tether id on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Association {
    /// The data plane's tether id.
    pub(super) id: TetherId,
    /// The worker holding it (`None`: a plain tether, on every worker).
    pub(super) worker: Option<u16>,
    /// Reported up by its worker.
    pub(super) up: bool,
    /// Where it sends (ICE's selected pair), as its worker last reported.
    pub(super) remote: Option<SocketAddr>,
}

/// The peer's half of an offer or answer.
struct RemoteEnd<'a> {
    ufrag: &'a str,
    pwd: &'a str,
    fingerprint: &'a str,
    candidates: &'a [String],
    ports: &'a [u32],
    reflexive: &'a [String],
}

/// One tether.
#[derive(Debug)]
pub(super) struct Tether {
    /// The first association's id (what status shows).
    pub(super) id: TetherId,
    /// Its associations (empty until both ends opened it).
    pub(super) assocs: Vec<Association>,
    pub(super) phase: Phase,
    /// When the phase began.
    pub(super) since: Instant,
    pub(super) controlling: bool,
    pub(super) session: u64,
    pub(super) ufrag: String,
    pub(super) pwd: String,
    pub(super) rtt_us: u32,
    pub(super) tx_bytes: u64,
    /// Path MTU its association last reported (UDP payload bytes; 0: none yet).
    pub(super) plpmtu: u16,
    /// The peer's worker count (its `ports`, at least 1), once it answered or offered.
    pub(super) remote_workers: usize,
    /// The peer's host candidates, as its offer or answer listed them.
    pub(super) remote_hosts: Vec<String>,
    /// The peer's reflexive candidates known so far ("<worker> ip:port").
    pub(super) remote_reflexive: Vec<String>,
    /// This end's reflexive candidates the peer has been told.
    pub(super) sent_reflexive: Vec<String>,
    /// Last telemetry with traffic, or the last phase change.
    pub(super) active: Instant,
}

impl Tether {
    pub(super) fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Offering => "offering",
            Phase::Opening => "opening",
            Phase::Up => "up",
            Phase::Failed => "failed",
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// Whether `id` is one of its associations.
    pub(super) fn holds(&self, id: TetherId) -> bool {
        self.id == id || self.assocs.iter().any(|a| a.id == id)
    }

    /// Every association's data plane id.
    pub(super) fn ids(&self) -> Vec<TetherId> {
        if self.assocs.is_empty() {
            return vec![self.id];
        }
        self.assocs.iter().map(|a| a.id).collect()
    }
}

/// The ICE username fragment of association `k`.
fn association_ufrag(base: &str, k: usize) -> String {
    if k == 0 {
        base.to_owned()
    } else {
        format!("{base}{k:02}")
    }
}

/// The peer's candidates for its worker `j`: each address with the port moved by that
/// worker's offset from worker 0 (a forwarded port keeps the same offset).
fn worker_candidates(candidates: &[String], ports: &[u32], j: usize) -> Vec<String> {
    let shift = match (ports.first(), ports.get(j)) {
        (Some(p0), Some(pj)) if j > 0 => i64::from(*pj) - i64::from(*p0),
        _ => return candidates.to_vec(),
    };
    candidates
        .iter()
        .filter_map(|c| c.parse::<SocketAddr>().ok())
        .filter_map(|mut a| {
            let port = u16::try_from(i64::from(a.port()) + shift).ok()?;
            (port != 0).then(|| {
                a.set_port(port);
                a.to_string()
            })
        })
        .collect()
}

/// Whether a peer's worker ports make sense.
fn ports_valid(ports: &[u32]) -> bool {
    ports.len() <= MAX_ASSOCIATIONS && ports.iter().all(|p| (1..=65535).contains(p))
}

fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b = vec![0u8; len];
    // The OS generator only fails on systems without one, where nothing else works either.
    getrandom::fill(&mut b).unwrap_or_default();
    b.iter()
        .map(|x| char::from(CHARS[usize::from(*x) % CHARS.len()]))
        .collect()
}

impl Overlay {
    fn new_tether(&mut self, now: Instant, controlling: bool, session: u64) -> Tether {
        let id = self.next_tether;
        self.next_tether += 1;
        Tether {
            id,
            phase: Phase::Offering,
            since: now,
            controlling,
            session,
            // ICE: a ufrag of at least 4 and a password of at least 22 characters.
            ufrag: random_token(8),
            pwd: random_token(24),
            assocs: Vec::new(),
            rtt_us: 0,
            plpmtu: 0,
            tx_bytes: 0,
            remote_workers: 1,
            remote_hosts: Vec::new(),
            remote_reflexive: Vec::new(),
            sent_reflexive: self.reflexive.clone(),
            active: now,
        }
    }

    /// Makes sure a tether to `peer` exists or is being made.
    pub(super) fn ensure_tether(&mut self, now: Instant, peer: NodeId) {
        if let Some(t) = self.tethers.get(&peer) {
            let retry = t.phase == Phase::Failed && now >= t.since + RETRY_AFTER;
            if !retry {
                return;
            }
            self.close_tether_quietly(now, peer);
        }
        self.next_session = self.next_session.wrapping_add(1);
        let t = self.new_tether(now, true, self.next_session);
        let offer = TetherOffer {
            session: t.session,
            ufrag: t.ufrag.clone(),
            pwd: t.pwd.clone(),
            fingerprint: self.cfg.fingerprint.clone(),
            candidates: self.cfg.candidates.clone(),
            ports: self.my_ports(),
            reflexive: self.reflexive.clone(),
        };
        self.tethers.insert(peer, t);
        self.request(peer, Payload::Offer(offer), Pending::Offer { peer });
    }

    /// Answers a peer's offer (the signal's signature and policy are checked already).
    pub(super) fn answer_offer(
        &mut self,
        now: Instant,
        from: NodeId,
        offer: TetherOffer,
    ) -> Payload {
        let decline = TetherAnswer {
            session: offer.session,
            accepted: false,
            ..TetherAnswer::default()
        };
        if offer.candidates.is_empty() || offer.fingerprint.is_empty() || !ports_valid(&offer.ports)
        {
            self.status.signals_ignored += 1;
            return Payload::Answer(decline);
        }
        if let Some(t) = self.tethers.get(&from) {
            // Offers cross when both ends want a tether at once: the smaller id's offer
            // wins while its tether is being made or has just come up.
            let settling = match t.phase {
                Phase::Offering | Phase::Opening => true,
                Phase::Up => now < t.since + CROSSING_GRACE,
                Phase::Failed => false,
            };
            // A peer that moved offers from other addresses: its old tether is dead
            // whatever its age, so the offer never loses to it.
            let moved = !t.remote_hosts.is_empty() && t.remote_hosts != offer.candidates;
            let ours_wins = settling && self.me < from && !moved;
            if ours_wins || (t.session == offer.session && !t.controlling) {
                return Payload::Answer(decline);
            }
            // The peer restarted or lost its tether: the new offer replaces this one, and
            // what used it waits for the new one.
            self.park_routes_through(now, from, false);
            self.drop_relays_through(from);
            self.close_tether_quietly(now, from);
        }
        let mut t = self.new_tether(now, false, offer.session);
        t.phase = Phase::Opening;
        let answer = TetherAnswer {
            session: offer.session,
            accepted: true,
            ufrag: t.ufrag.clone(),
            pwd: t.pwd.clone(),
            fingerprint: self.cfg.fingerprint.clone(),
            candidates: self.cfg.candidates.clone(),
            ports: self.my_ports(),
            reflexive: self.reflexive.clone(),
        };
        self.open(
            &mut t,
            &RemoteEnd {
                ufrag: &offer.ufrag,
                pwd: &offer.pwd,
                fingerprint: &offer.fingerprint,
                candidates: &offer.candidates,
                ports: &offer.ports,
                reflexive: &offer.reflexive,
            },
        );
        self.tethers.insert(from, t);
        self.status.tethers_opened += 1;
        Payload::Answer(answer)
    }

    /// The answer to this node's offer (or `None`: no answer in time).
    pub(super) fn offer_answered(
        &mut self,
        now: Instant,
        peer: NodeId,
        answer: Option<TetherAnswer>,
        dir: &impl Directory,
    ) {
        let Some(t) = self.tethers.get(&peer) else {
            return;
        };
        if t.phase != Phase::Offering || !t.controlling {
            // The peer's own offer won meanwhile.
            return;
        }
        match answer {
            Some(a)
                if a.accepted
                    && a.session == t.session
                    && !a.candidates.is_empty()
                    && ports_valid(&a.ports) =>
            {
                if let Some(mut t) = self.tethers.remove(&peer) {
                    self.open(
                        &mut t,
                        &RemoteEnd {
                            ufrag: &a.ufrag,
                            pwd: &a.pwd,
                            fingerprint: &a.fingerprint,
                            candidates: &a.candidates,
                            ports: &a.ports,
                            reflexive: &a.reflexive,
                        },
                    );
                    t.phase = Phase::Opening;
                    t.since = now;
                    self.tethers.insert(peer, t);
                    // Reflexive candidates learned while the offer was out.
                    self.trickle_to(peer);
                }
                self.status.tethers_opened += 1;
            }
            Some(a) if !a.accepted => {
                // Declined: the peer's offer crossed ours and wins; it arrives on its own.
                if self.me > peer {
                    return;
                }
                self.tether_failed(now, peer, dir);
            }
            _ => self.tether_failed(now, peer, dir),
        }
        if self.cfg.plain_tethers
            && self
                .tethers
                .get(&peer)
                .is_some_and(|t| t.phase == Phase::Opening)
        {
            self.tether_up(now, peer, dir);
        }
    }

    /// This node's worker ports, as offers and answers list them.
    fn my_ports(&self) -> Vec<u32> {
        self.cfg.ports.iter().map(|p| u32::from(*p)).collect()
    }

    /// Opens `t` in the data plane: one association per worker of the larger end.
    fn open(&mut self, t: &mut Tether, remote: &RemoteEnd<'_>) {
        if self.cfg.plain_tethers {
            if let Some(peer) = remote
                .candidates
                .iter()
                .find_map(|c| c.parse::<SocketAddr>().ok())
            {
                self.command(Command::PlainTether { tether: t.id, peer });
            }
            t.assocs = vec![Association {
                id: t.id,
                worker: None,
                up: false,
                remote: None,
            }];
            return;
        }
        let mine = self.cfg.ports.len().max(1);
        let theirs = remote.ports.len().max(1);
        let n = mine.max(theirs).min(MAX_ASSOCIATIONS);
        t.remote_workers = theirs;
        t.remote_hosts = remote.candidates.to_vec();
        for r in remote
            .reflexive
            .iter()
            .take(super::candidates::MAX_REFLEXIVE)
        {
            if !t.remote_reflexive.contains(r) {
                t.remote_reflexive.push(r.clone());
            }
        }
        t.assocs.clear();
        for k in 0..n {
            let id = if k == 0 {
                t.id
            } else {
                let id = self.next_tether;
                self.next_tether += 1;
                id
            };
            let worker = (k % mine) as u16;
            self.command(Command::OpenTether {
                worker,
                open: TetherOpen {
                    tether: id,
                    candidates: worker_candidates(remote.candidates, remote.ports, k % theirs)
                        .into_iter()
                        .chain(super::candidates::for_worker(
                            &t.remote_reflexive,
                            k % theirs,
                        ))
                        .collect(),
                    controlling: t.controlling,
                    local_ufrag: association_ufrag(&t.ufrag, k),
                    local_pwd: t.pwd.clone(),
                    remote_ufrag: association_ufrag(remote.ufrag, k),
                    remote_pwd: remote.pwd.to_owned(),
                    remote_fingerprint: remote.fingerprint.to_owned(),
                    channels: 0,
                },
            });
            t.assocs.push(Association {
                id,
                worker: Some(worker),
                up: false,
                remote: None,
            });
        }
    }

    /// A worker reported one association up or down; the tether is up when all are.
    pub(super) fn association_state(
        &mut self,
        now: Instant,
        peer: NodeId,
        id: TetherId,
        up: bool,
        dir: &impl Directory,
    ) {
        let Some(t) = self.tethers.get_mut(&peer) else {
            return;
        };
        if !up {
            self.tether_failed(now, peer, dir);
            return;
        }
        for a in t.assocs.iter_mut().filter(|a| a.id == id) {
            a.up = true;
        }
        if t.assocs.iter().all(|a| a.up) {
            self.tether_up(now, peer, dir);
        }
    }

    pub(super) fn tether_up(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        let Some(t) = self.tethers.get_mut(&peer) else {
            return;
        };
        if t.phase == Phase::Up {
            return;
        }
        t.phase = Phase::Up;
        t.since = now;
        t.active = now;
        tracing::info!(%peer, tether = t.id, "tether up");
        self.neighbour_up(now, peer, dir);
        self.tether_changed(now, peer, dir);
    }

    pub(super) fn tether_failed(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        let Some(t) = self.tethers.get_mut(&peer) else {
            return;
        };
        if t.phase == Phase::Failed {
            return;
        }
        let was_up = t.phase == Phase::Up;
        t.phase = Phase::Failed;
        t.since = now;
        let (id, ids) = (t.id, t.ids());
        self.status.tethers_failed += 1;
        tracing::info!(%peer, tether = id, was_up, "tether failed");
        for tether in ids {
            self.command(Command::RemoveTether { tether });
        }
        self.neighbour_down(now, peer, dir);
        self.tether_changed(now, peer, dir);
    }

    /// Closes a tether for good (policy change, idle).
    pub(super) fn close_tether(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        if let Some(t) = self.tethers.remove(&peer) {
            tracing::info!(%peer, tether = t.id, "tether closed");
            for tether in t.ids() {
                self.command(Command::RemoveTether { tether });
            }
            self.neighbour_gone(now, peer, dir);
            self.tether_changed(now, peer, dir);
        }
    }

    pub(super) fn close_tether_quietly(&mut self, now: Instant, peer: NodeId) {
        self.router.remove_neighbour(now, peer);
        if let Some(t) = self.tethers.remove(&peer)
            && t.phase != Phase::Failed
        {
            for tether in t.ids() {
                self.command(Command::RemoveTether { tether });
            }
        }
    }

    /// Fails tethers stuck in set-up, and closes unused ones after the idle timeout.
    pub(super) fn sweep_tethers(&mut self, now: Instant, dir: &impl Directory) {
        let timeout = self.cfg.tether_timeout;
        let stuck: Vec<NodeId> = self
            .tethers
            .iter()
            .filter(|(_, t)| {
                matches!(t.phase, Phase::Offering | Phase::Opening) && now >= t.since + timeout
            })
            .map(|(p, _)| *p)
            .collect();
        for p in stuck {
            self.tether_failed(now, p, dir);
        }
        let idle = self.cfg.idle_timeout;
        let unused: Vec<NodeId> = self
            .tethers
            .iter()
            .filter(|(p, t)| {
                now.saturating_duration_since(t.active.max(t.since)) >= idle
                    && !self.out.contains_key(p)
                    && !self.inb.contains_key(p)
                    && self.tether_users(**p) == 0
            })
            .map(|(p, _)| *p)
            .collect();
        for p in unused {
            self.close_tether(now, p, dir);
        }
    }
}

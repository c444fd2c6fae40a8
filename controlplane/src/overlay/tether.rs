//! Tethers on demand: one per next-hop node, set up by an offer/answer exchange of signed
//! signals and opened in the data plane by both ends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conflux_shared::id::NodeId;
use conflux_shared::proto::{TetherAnswer, TetherOffer, TetherOpen};
use conflux_shared::wire::record::TetherId;

use super::core::{Command, Directory, Overlay};
use super::path::Pending;
use super::signal::Payload;

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

/// One tether.
#[derive(Debug)]
pub(super) struct Tether {
    pub(super) id: TetherId,
    pub(super) phase: Phase,
    /// When the phase began.
    pub(super) since: Instant,
    pub(super) controlling: bool,
    pub(super) session: u64,
    pub(super) ufrag: String,
    pub(super) pwd: String,
    pub(super) rtt_us: u32,
    pub(super) tx_bytes: u64,
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
            rtt_us: 0,
            tx_bytes: 0,
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
            self.close_tether_quietly(peer);
        }
        self.next_session = self.next_session.wrapping_add(1);
        let t = self.new_tether(now, true, self.next_session);
        let offer = TetherOffer {
            session: t.session,
            ufrag: t.ufrag.clone(),
            pwd: t.pwd.clone(),
            fingerprint: self.cfg.fingerprint.clone(),
            candidates: self.cfg.candidates.clone(),
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
        if offer.candidates.is_empty() || offer.fingerprint.is_empty() {
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
            let ours_wins = settling && self.me < from;
            if ours_wins || (t.session == offer.session && !t.controlling) {
                return Payload::Answer(decline);
            }
            // The peer restarted or lost its tether: the new offer replaces this one, and
            // what used it waits for the new one.
            self.park_routes_through(from, false);
            self.drop_relays_through(from);
            self.close_tether_quietly(from);
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
        };
        self.open(
            &t,
            &offer.ufrag,
            &offer.pwd,
            &offer.fingerprint,
            &offer.candidates,
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
            Some(a) if a.accepted && a.session == t.session && !a.candidates.is_empty() => {
                let (ufrag, pwd) = (t.ufrag.clone(), t.pwd.clone());
                let id = t.id;
                let controlling = t.controlling;
                let snapshot = Tether {
                    ufrag,
                    pwd,
                    id,
                    controlling,
                    phase: Phase::Opening,
                    since: now,
                    session: t.session,
                    rtt_us: 0,
                    tx_bytes: 0,
                    active: now,
                };
                self.open(&snapshot, &a.ufrag, &a.pwd, &a.fingerprint, &a.candidates);
                self.status.tethers_opened += 1;
                if let Some(t) = self.tethers.get_mut(&peer) {
                    t.phase = Phase::Opening;
                    t.since = now;
                }
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

    fn open(
        &mut self,
        t: &Tether,
        ufrag: &str,
        pwd: &str,
        fingerprint: &str,
        candidates: &[String],
    ) {
        if self.cfg.plain_tethers {
            if let Some(peer) = candidates.iter().find_map(|c| c.parse::<SocketAddr>().ok()) {
                self.command(Command::PlainTether { tether: t.id, peer });
            }
            return;
        }
        self.command(Command::OpenTether(TetherOpen {
            tether: t.id,
            candidates: candidates.to_vec(),
            controlling: t.controlling,
            local_ufrag: t.ufrag.clone(),
            local_pwd: t.pwd.clone(),
            remote_ufrag: ufrag.to_owned(),
            remote_pwd: pwd.to_owned(),
            remote_fingerprint: fingerprint.to_owned(),
            channels: 0,
        }));
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
        let id = t.id;
        self.status.tethers_failed += 1;
        tracing::info!(%peer, tether = id, was_up, "tether failed");
        self.command(Command::RemoveTether { tether: id });
        self.tether_changed(now, peer, dir);
    }

    /// Closes a tether for good (policy change, idle).
    pub(super) fn close_tether(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        if let Some(t) = self.tethers.remove(&peer) {
            tracing::info!(%peer, tether = t.id, "tether closed");
            self.command(Command::RemoveTether { tether: t.id });
            self.tether_changed(now, peer, dir);
        }
    }

    fn close_tether_quietly(&mut self, peer: NodeId) {
        if let Some(t) = self.tethers.remove(&peer)
            && t.phase != Phase::Failed
        {
            self.command(Command::RemoveTether { tether: t.id });
        }
    }

    /// Routes and relay entries that use the tether to `peer`.
    pub(super) fn tether_users(&self, peer: NodeId) -> usize {
        let routes = self
            .routes
            .values()
            .filter(|r| r.first_hop() == Some(peer))
            .count();
        let relays = self
            .relays
            .values()
            .filter(|r| r.next == peer || r.previous == peer)
            .count();
        routes + relays
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

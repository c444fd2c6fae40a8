//! What a tether's ends know of each other's addresses beyond the host candidates of the
//! offer and answer: server-reflexive candidates (a NAT's mapping of a worker's socket, as a
//! STUN server saw it), trickled when they are learned after the offer or answer left, and
//! a new set of host candidates when this node's own addresses change (roaming), which
//! restarts ICE on every tether by offering it anew.
//!
//! A reflexive candidate is `"<worker> ip:port"`: each worker's socket has its own mapping,
//! so association `k` adds the peer's entries for worker `k mod n` to its candidates.

use std::net::SocketAddr;
use std::time::Instant;

use conflux_shared::id::NodeId;
use conflux_shared::proto::{TetherCandidates, TetherTrickle};
use conflux_shared::wire::record::TetherId;

use super::core::{Command, Overlay};
use super::signal::Payload;
use super::tether::{MAX_ASSOCIATIONS, Phase};

/// Reflexive candidates one end may list, at most.
pub(super) const MAX_REFLEXIVE: usize = 32;

/// Parses `"<worker> ip:port"`.
pub(super) fn parse(entry: &str) -> Option<(usize, SocketAddr)> {
    let (w, a) = entry.split_once(' ')?;
    let w: usize = w.parse().ok()?;
    (w < MAX_ASSOCIATIONS).then_some(())?;
    Some((w, a.parse().ok()?))
}

/// The reflexive addresses of worker `j` in `list`.
pub(super) fn for_worker(list: &[String], j: usize) -> impl Iterator<Item = String> + '_ {
    list.iter()
        .filter_map(|e| parse(e))
        .filter(move |(w, _)| *w == j)
        .map(|(_, a)| a.to_string())
}

/// Whether a peer's list is well formed.
fn valid(list: &[String]) -> bool {
    list.len() <= MAX_REFLEXIVE && list.iter().all(|e| parse(e).is_some())
}

impl Overlay {
    /// This node's reflexive candidates changed (the driver learned them from STUN
    /// servers): tethers being set up get the new ones at once (trickle), later offers and
    /// answers carry them.
    pub fn set_reflexive(&mut self, mut list: Vec<String>) {
        list.retain(|e| parse(e).is_some());
        list.truncate(MAX_REFLEXIVE);
        list.sort();
        list.dedup();
        if list == self.reflexive {
            return;
        }
        tracing::info!(reflexive = ?list, "reflexive candidates changed");
        self.reflexive = list;
        let peers: Vec<NodeId> = self.tethers.keys().copied().collect();
        for p in peers {
            self.trickle_to(p);
        }
    }

    /// This node's reflexive candidates, as offers carry them.
    pub fn reflexive(&self) -> &[String] {
        &self.reflexive
    }

    /// A worker said where association `tether` now sends (its ICE-selected pair).
    pub fn set_tether_remote(&mut self, tether: TetherId, remote: SocketAddr) {
        for t in self.tethers.values_mut() {
            for a in t.assocs.iter_mut().filter(|a| a.id == tether) {
                a.remote = Some(remote);
            }
        }
    }

    /// This node's host candidates, as offers carry them.
    pub fn host_candidates(&self) -> &[String] {
        &self.cfg.candidates
    }

    /// Tells the peer of a tether being set up the reflexive candidates it has not heard.
    pub(super) fn trickle_to(&mut self, peer: NodeId) {
        let Some(t) = self.tethers.get_mut(&peer) else {
            return;
        };
        // While offering, the peer has no tether to add them to; the answer's arrival
        // calls this again.
        if t.phase != Phase::Opening || t.sent_reflexive == self.reflexive {
            return;
        }
        t.sent_reflexive = self.reflexive.clone();
        let trickle = TetherTrickle {
            session: t.session,
            reflexive: self.reflexive.clone(),
        };
        self.actions.push_back(super::core::Action::Notify {
            to: peer,
            payload: Payload::Trickle(trickle),
        });
    }

    /// A peer's trickled candidates for the tether of session `tr.session`.
    pub(super) fn handle_trickle(&mut self, from: NodeId, tr: TetherTrickle) {
        if !valid(&tr.reflexive) {
            self.status.signals_ignored += 1;
            return;
        }
        let Some(t) = self.tethers.get_mut(&from) else {
            return;
        };
        if t.session != tr.session {
            // An older attempt's candidates: the current one has its own.
            return;
        }
        let fresh: Vec<String> = tr
            .reflexive
            .into_iter()
            .filter(|e| !t.remote_reflexive.contains(e))
            .collect();
        if fresh.is_empty() {
            return;
        }
        t.remote_reflexive.extend(fresh.iter().cloned());
        let theirs = t.remote_workers.max(1);
        let mut cmds = Vec::new();
        for (k, a) in t.assocs.iter().enumerate() {
            let candidates: Vec<String> = for_worker(&fresh, k % theirs).collect();
            if let (Some(worker), false) = (a.worker, candidates.is_empty()) {
                cmds.push(Command::TetherCandidates {
                    worker,
                    candidates: TetherCandidates {
                        tether: a.id,
                        candidates,
                    },
                });
            }
        }
        for c in cmds {
            self.command(c);
        }
    }

    /// This node's host addresses changed. When one it offered is gone (it moved to another
    /// network), every tether is offered anew with the new candidates (an ICE restart), and
    /// what used a tether waits for its replacement; streams are end to end and stay as
    /// they are. Addresses that only appeared change nothing that works.
    pub fn set_host_candidates(&mut self, now: Instant, candidates: Vec<String>) {
        if candidates == self.cfg.candidates {
            return;
        }
        let lost = self.cfg.candidates.iter().any(|c| !candidates.contains(c));
        if !lost {
            // Only new addresses (another interface came up): the tethers keep the paths
            // they have; later offers carry the new ones.
            tracing::info!(?candidates, "host candidates added");
            self.cfg.candidates = candidates;
            return;
        }
        tracing::info!(?candidates, "host candidates changed: restarting tethers");
        self.cfg.candidates = candidates;
        // Mappings of the old addresses mean nothing now; the driver learns new ones.
        self.reflexive.clear();
        let peers: Vec<NodeId> = self.tethers.keys().copied().collect();
        for p in peers {
            self.park_routes_through(now, p, false);
            self.drop_relays_through(p);
            self.close_tether_quietly(now, p);
            self.ensure_tether(now, p);
        }
        self.status.ice_restarts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse("1 198.51.100.4:40000"),
            Some((1, "198.51.100.4:40000".parse().unwrap()))
        );
        assert_eq!(parse("0 [2001:db8::1]:5").map(|e| e.0), Some(0));
        for bad in [
            "",
            "1",
            "x 1.2.3.4:5",
            "64 1.2.3.4:5",
            "1 1.2.3.4",
            "1  1.2.3.4:5",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let list = vec!["0 1.2.3.4:5".to_owned(), "1 1.2.3.4:6".to_owned()];
        assert_eq!(for_worker(&list, 1).collect::<Vec<_>>(), ["1.2.3.4:6"]);
        assert!(valid(&list));
        assert!(!valid(&["nope".to_owned()]));
    }
}

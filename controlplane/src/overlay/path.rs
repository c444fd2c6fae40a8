//! Route messages and the relay side: set-ups this node forwards for others (and the relay
//! entries they leave), the replies to this node's requests, and what a tether coming up
//! or failing means for routes and relay entries.

use std::time::Instant;

use conflux_shared::id::{Label, NodeId};
use conflux_shared::wire::route::{AckStatus, RouteAck, RouteMessage, RouteSetup};

use super::core::{Action, Command, Directory, Overlay};
use super::signal::Payload;
use super::tether::Phase;

/// What a request in flight is for.
#[derive(Debug)]
pub(super) enum Pending {
    /// This node's tether offer.
    Offer { peer: NodeId },
    /// This node's route set-up toward `destination`.
    Setup { destination: NodeId, route_id: u64 },
    /// A set-up this node forwards as a relay; the answer goes to `token`.
    Forward { token: u64, setup: RouteSetup },
    /// A tear-down; the answer does not matter.
    Teardown,
}

/// A relay entry this node installed for someone else's route.
#[derive(Debug)]
pub(super) struct RelayEntry {
    pub(super) in_label: Label,
    pub(super) previous: NodeId,
    pub(super) next: NodeId,
}

/// A relayed set-up waiting for the tether to its next hop.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) token: u64,
    pub(super) setup: RouteSetup,
    pub(super) since: Instant,
}

pub(super) fn route_bytes(m: RouteMessage) -> Payload {
    let mut buf = vec![0u8; m.buffer_len()];
    match m.emit(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(_) => buf.clear(),
    }
    Payload::Route(buf)
}

fn ack(route_id: u64, hop_index: u8, status: AckStatus, label: Label) -> Payload {
    route_bytes(RouteMessage::Ack(RouteAck {
        route_id,
        hop_index,
        status,
        label: if status == AckStatus::Accepted {
            label
        } else {
            0
        },
    }))
}

impl Overlay {
    /// Sets the wall clock (unix seconds) route set-ups are stamped and checked with.
    pub fn set_unix_time(&mut self, unix_s: u64) {
        self.unix_s = unix_s;
    }

    /// Removes the relay entries that receive from or send to `peer`.
    pub(super) fn drop_relays_through(&mut self, peer: NodeId) {
        let dead: Vec<u64> = self
            .relays
            .iter()
            .filter(|(_, r)| r.next == peer || r.previous == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(r) = self.relays.remove(&id) {
                self.command(Command::RemoveRelay {
                    in_label: r.in_label,
                });
            }
        }
    }

    /// A tether to `peer` came up or failed: move the routes and relays that depend on it.
    pub(super) fn tether_changed(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        let up = self.tethers.get(&peer).is_some_and(|t| t.is_up());
        if !up {
            self.park_routes_through(now, peer, true);
            self.drop_relays_through(peer);
        }
        self.routes_after_tether(now, peer, dir);
        let held = std::mem::take(&mut self.held);
        for h in held {
            if h.setup.next_hop() != Some(peer) {
                self.held.push(h);
            } else if up {
                self.forward(h.token, h.setup);
            } else {
                let a = ack(h.setup.route_id, h.setup.hop_index, AckStatus::NoTether, 0);
                self.actions.push_back(Action::Reply {
                    token: h.token,
                    payload: a,
                });
            }
        }
    }

    /// Gives up on relayed set-ups whose next hop's tether never came.
    pub(super) fn sweep_held(&mut self, now: Instant) {
        let timeout = self.cfg.tether_timeout;
        let held = std::mem::take(&mut self.held);
        for h in held {
            if now >= h.since + timeout {
                let a = ack(h.setup.route_id, h.setup.hop_index, AckStatus::NoTether, 0);
                self.actions.push_back(Action::Reply {
                    token: h.token,
                    payload: a,
                });
            } else {
                self.held.push(h);
            }
        }
    }

    fn forward(&mut self, token: u64, setup: RouteSetup) {
        let Some(next_setup) = setup.for_next_hop() else {
            return;
        };
        let next = next_setup.this_hop();
        self.request(
            next,
            route_bytes(RouteMessage::Setup(next_setup)),
            Pending::Forward { token, setup },
        );
    }

    /// A signal from a verified peer. Returns the reply, or `None` when the reply will come
    /// later as [`Action::Reply`] with `token` (or not at all).
    pub fn handle_signal(
        &mut self,
        now: Instant,
        from: NodeId,
        payload: Payload,
        token: u64,
        dir: &impl Directory,
    ) -> Option<Payload> {
        match payload {
            Payload::Offer(o) => Some(self.answer_offer(now, from, o)),
            Payload::Answer(_) => {
                self.status.signals_ignored += 1;
                None
            }
            Payload::Estimates(bytes) => {
                self.handle_estimates(now, from, &bytes, dir);
                None
            }
            Payload::Trickle(t) => {
                self.handle_trickle(from, t);
                None
            }
            Payload::Route(bytes) => match RouteMessage::parse(&bytes) {
                Ok(RouteMessage::Setup(s)) => self.handle_setup(now, from, s, token, dir),
                Ok(RouteMessage::Teardown(t)) => {
                    if let Some(r) = self.relays.get(&t.route_id)
                        && r.previous == from
                        && let Some(r) = self.relays.remove(&t.route_id)
                    {
                        self.command(Command::RemoveRelay {
                            in_label: r.in_label,
                        });
                    }
                    Some(Payload::Route(bytes))
                }
                Ok(RouteMessage::Ack(_)) | Err(_) => {
                    self.status.signals_ignored += 1;
                    None
                }
            },
        }
    }

    fn handle_setup(
        &mut self,
        now: Instant,
        from: NodeId,
        s: RouteSetup,
        token: u64,
        dir: &impl Directory,
    ) -> Option<Payload> {
        let refuse = |ov: &mut Self, status| {
            ov.status.setups_refused += 1;
            Some(ack(s.route_id, s.hop_index, status, 0))
        };
        if s.this_hop() != self.me || s.previous_hop() != from {
            self.status.signals_ignored += 1;
            return None;
        }
        if s.expiry_unix_s < self.unix_s {
            return refuse(self, AckStatus::Expired);
        }
        let Some(next) = s.next_hop() else {
            // This node is the destination: answer with the stream's label.
            if !dir.allows(s.source) {
                return refuse(self, AckStatus::Refused);
            }
            return match self.inb.get(&s.source) {
                Some(st) if st.dp_id == s.stream_id => {
                    Some(ack(s.route_id, s.hop_index, AckStatus::Accepted, st.label))
                }
                // The stream is not installed yet (or was replaced): the source retries.
                _ => refuse(self, AckStatus::Overloaded),
            };
        };
        if !self.cfg.relay
            || !dir.allows(s.source)
            || !dir.allows(next)
            || !dir.pair_allowed(s.source, next)
        {
            return refuse(self, AckStatus::Refused);
        }
        match self.tethers.get(&next).map(|t| t.phase) {
            Some(Phase::Up) => self.forward(token, s),
            Some(Phase::Failed) => return refuse(self, AckStatus::NoTether),
            _ => {
                self.ensure_tether(now, next);
                self.held.push(Held {
                    token,
                    setup: s,
                    since: now,
                });
            }
        }
        None
    }

    /// The reply to a request (or `None`: none came in time).
    pub fn handle_reply(
        &mut self,
        now: Instant,
        request: u64,
        reply: Option<Payload>,
        dir: &impl Directory,
    ) {
        let Some(p) = self.requests.remove(&request) else {
            return;
        };
        match p {
            Pending::Offer { peer } => {
                let answer = match reply {
                    Some(Payload::Answer(a)) => Some(a),
                    _ => None,
                };
                self.offer_answered(now, peer, answer, dir);
            }
            Pending::Setup {
                destination,
                route_id,
            } => self.setup_answered(now, destination, route_id, parse_ack(reply)),
            Pending::Forward { token, setup } => {
                let a = parse_ack(reply).filter(|a| a.route_id == setup.route_id);
                let payload = match (a, setup.next_hop()) {
                    (Some(a), Some(next)) if a.status == AckStatus::Accepted => {
                        match self
                            .tethers
                            .get(&next)
                            .filter(|t| t.is_up())
                            .map(|t| t.ids())
                        {
                            Some(tethers) => {
                                let in_label = self.label();
                                self.command(Command::InstallRelay {
                                    in_label,
                                    tethers,
                                    out_label: a.label,
                                });
                                self.relays.insert(
                                    setup.route_id,
                                    RelayEntry {
                                        in_label,
                                        previous: setup.previous_hop(),
                                        next,
                                    },
                                );
                                self.status.relays_installed += 1;
                                tracing::info!(
                                    source = %setup.source,
                                    destination = %setup.destination,
                                    in_label,
                                    "relaying"
                                );
                                ack(
                                    setup.route_id,
                                    setup.hop_index,
                                    AckStatus::Accepted,
                                    in_label,
                                )
                            }
                            None => ack(setup.route_id, setup.hop_index, AckStatus::NoTether, 0),
                        }
                    }
                    (Some(a), _) => ack(setup.route_id, setup.hop_index, a.status, 0),
                    (None, _) => ack(setup.route_id, setup.hop_index, AckStatus::NoTether, 0),
                };
                self.actions.push_back(Action::Reply { token, payload });
            }
            Pending::Teardown => {}
        }
    }
}

fn parse_ack(reply: Option<Payload>) -> Option<RouteAck> {
    match reply {
        Some(Payload::Route(b)) => match RouteMessage::parse(&b) {
            Ok(RouteMessage::Ack(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

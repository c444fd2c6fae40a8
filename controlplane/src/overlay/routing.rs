//! The router inside the overlay: what feeds it and what its decisions become.
//!
//! - Tethers are its neighbours: one comes up → [`Router::add_neighbour`]; fails →
//!   [`Router::handle_tether_down`] (traffic leaves it at once); closes →
//!   [`Router::remove_neighbour`].
//! - Every telemetry report (each worker, every 100 ms) → [`Router::handle_telemetry`].
//! - Estimates travel as signed signals without a reply: [`Decision::Publish`] goes to every
//!   neighbour whose tether is up, and a neighbour's arrive in [`Overlay::handle_estimates`].
//! - A destination with an outbound stream is wanted; its stream going idle unwants it.
//! - [`Decision::Route`] becomes legs ([`super::route`]); [`Decision::LookupRegion`] is
//!   answered from the directory at once.
//!
//! Paths need tethers to relays, and relays need tethers onward. So a node that wants a
//! destination also keeps tethers to a few relays its geo policy allows, and a relay
//! makes a tether to each destination its neighbours want (when they may talk): then the
//! neighbours' estimates name real paths, and a standby is ready before it is needed.

use std::collections::BTreeSet;
use std::time::Instant;

use conflux_shared::id::NodeId;

use super::core::{Action, Directory, Overlay};
use super::signal::Payload;
use crate::route::{Decision, GeoPolicy, Region, Router, Telemetry};

/// Relays a node keeps tethers to while it has routes to build.
const RELAY_TETHERS: usize = 2;

impl Overlay {
    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Replaces the geo policy (configuration or `conflux-ctl geo`); paths through a relay
    /// it now excludes are dropped at once.
    pub fn set_geo(&mut self, now: Instant, policy: GeoPolicy, dir: &impl Directory) {
        self.learn_regions(now, dir);
        self.router.set_geo(now, policy);
        // Bootstrap legs are not the router's: judge them here too.
        let bad: BTreeSet<NodeId> = self
            .routes
            .iter()
            .flat_map(|(d, r)| r.legs.iter().filter_map(|l| l.via()).map(move |v| (*d, v)))
            .filter(|(d, v)| !self.relay_allowed(*v, *d))
            .map(|(_, v)| v)
            .collect();
        for via in bad {
            self.park_routes_through(now, via, true);
        }
        self.drain_router(now, dir);
        self.choose_exit(now, dir);
    }

    /// Whether geo policy lets `relay` carry traffic to `dst`.
    pub(super) fn relay_allowed(&self, relay: NodeId, dst: NodeId) -> bool {
        self.router
            .geo()
            .judge(&[relay, dst], self.router.regions())
            .allowed()
    }

    /// Tells the router every known relay's region, so geo policy can judge paths.
    fn learn_regions(&mut self, now: Instant, dir: &impl Directory) {
        for r in dir.relays() {
            let region = dir.region_of(r).map(Region::new);
            if self.router.regions().get(&r) != region.as_ref() {
                self.router.set_region(now, r, region);
            }
        }
    }

    /// The node has traffic for `dst`: the router tracks it, and relays get tethers.
    pub(super) fn want_route(&mut self, now: Instant, dst: NodeId, dir: &impl Directory) {
        self.learn_regions(now, dir);
        self.router.want(now, dst);
        let mut relays: Vec<(bool, NodeId)> = dir
            .relays()
            .into_iter()
            .filter(|r| *r != dst && dir.allows(*r) && self.relay_allowed(*r, dst))
            .map(|r| (!self.tethers.contains_key(&r), r))
            .collect();
        // Relays already tethered first, so wanting more destinations adds no tethers.
        relays.sort();
        for (_, r) in relays.into_iter().take(RELAY_TETHERS) {
            self.ensure_tether(now, r);
        }
        self.drain_router(now, dir);
    }

    /// The node no longer sends to `dst`.
    pub(super) fn unwant_route(&mut self, dst: NodeId) {
        self.router.unwant(dst);
    }

    /// A neighbour's estimates (the signal's signature and sender are checked already).
    pub(super) fn handle_estimates(
        &mut self,
        now: Instant,
        from: NodeId,
        bytes: &[u8],
        dir: &impl Directory,
    ) {
        if let Err(e) = self.router.handle_neighbour_estimates(now, from, bytes) {
            tracing::debug!(%from, "estimates ignored: {e}");
        }
        self.drain_router(now, dir);
    }

    /// A telemetry report about the tether to `peer`.
    pub(super) fn router_telemetry(&mut self, now: Instant, t: &Telemetry, dir: &impl Directory) {
        self.router.handle_telemetry(now, t);
        self.drain_router(now, dir);
    }

    /// The tether to `peer` came up.
    pub(super) fn neighbour_up(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        self.router.add_neighbour(now, peer);
        self.drain_router(now, dir);
    }

    /// The tether to `peer` failed (it may be made again).
    pub(super) fn neighbour_down(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        self.router.handle_tether_down(now, peer);
        self.drain_router(now, dir);
    }

    /// The tether to `peer` is gone for good.
    pub(super) fn neighbour_gone(&mut self, now: Instant, peer: NodeId, dir: &impl Directory) {
        self.router.remove_neighbour(now, peer);
        self.drain_router(now, dir);
    }

    /// Runs the router's timers, and makes the tethers relaying needs.
    pub(super) fn router_timeout(&mut self, now: Instant, dir: &impl Directory) {
        self.router.handle_timeout(now);
        self.drain_router(now, dir);
    }

    /// A relay makes a tether to each destination its neighbours want.
    pub(super) fn relay_tethers(&mut self, now: Instant, dir: &impl Directory) {
        if !self.cfg.relay {
            return;
        }
        let wanted: BTreeSet<(NodeId, NodeId)> = self.router.wanted_by_neighbours(now);
        for (neighbour, dst) in wanted {
            if dst != self.me
                && !self.tethers.contains_key(&dst)
                && dir.allows(dst)
                && dir.pair_allowed(neighbour, dst)
            {
                self.ensure_tether(now, dst);
            }
        }
    }

    /// Carries out what the router decided.
    pub(super) fn drain_router(&mut self, now: Instant, dir: &impl Directory) {
        while let Some(d) = self.router.poll_decision() {
            match d {
                Decision::Route(r) => self.apply_decision(now, &r, dir),
                Decision::Publish(bytes) => {
                    let up: Vec<NodeId> = self
                        .tethers
                        .iter()
                        .filter(|(_, t)| t.is_up())
                        .map(|(p, _)| *p)
                        .collect();
                    for to in up {
                        self.actions.push_back(Action::Notify {
                            to,
                            payload: Payload::Estimates(bytes.clone()),
                        });
                    }
                }
                Decision::LookupRegion(n) => {
                    let region = dir.region_of(n).map(Region::new);
                    self.router.set_region(now, n, region);
                }
            }
        }
    }
}

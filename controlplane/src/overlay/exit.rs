//! Internet exits. A portal delivers internet-bound packets from its owner's nodes only
//! (the data plane checks each stream's exit flag, set here from the certificate's owner);
//! a rift node sends what is not for the overlay through one portal: the configured one,
//! or its owner's portal the router rates cheapest (never one in a region geo policy
//! excludes; a preferred region's first). When that portal goes away (its
//! presence expires, policy cuts it off) the rift moves to the next one.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use conflux_shared::id::NodeId;

use super::core::{Action, Command, Directory, Overlay};

/// The default route: everything no longer prefix covers.
pub(super) const DEFAULT_V4: (IpAddr, u8) = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

impl Overlay {
    /// The portal this rift node uses now.
    pub fn exit(&self) -> Option<NodeId> {
        self.exit
    }

    /// Keeps the rift's portal: the configured or cheapest own portal that is still
    /// trusted; moves to another when it is not.
    pub(super) fn choose_exit(&mut self, now: Instant, dir: &impl Directory) {
        let Some(wanted) = self.cfg.rift else {
            return;
        };
        let geo = self.router.geo().clone();
        let region = |p: NodeId| dir.region_of(p).map(crate::route::Region::new);
        // Geo policy applies to exits as to relays: never an excluded region's portal
        // (nor one whose region is unknown while regions are excluded).
        let usable = |p: NodeId| {
            dir.address_of(p).is_some()
                && dir.allows(p)
                && (geo.exclude.is_empty() || region(p).is_some_and(|r| !geo.exclude.contains(&r)))
        };
        let candidates: Vec<NodeId> = match wanted {
            Some(p) => vec![p],
            None => dir.own_portals(),
        };
        if self
            .exit
            .is_some_and(|e| candidates.contains(&e) && usable(e))
        {
            return;
        }
        let cost = |p: &NodeId| {
            let preferred =
                geo.prefer.is_empty() || region(*p).is_some_and(|r| geo.prefer.contains(&r));
            let penalty = if preferred {
                0.0
            } else {
                crate::route::geo::PREFER_PENALTY_US
            };
            self.router
                .q_values(now, *p)
                .iter()
                .filter(|q| q.3)
                .map(|q| q.1)
                .fold(f64::INFINITY, f64::min)
                .min(1e9)
                + penalty
        };
        let next = candidates
            .iter()
            .copied()
            .filter(|p| usable(*p))
            .min_by(|a, b| cost(a).total_cmp(&cost(b)).then(a.cmp(b)));
        if next == self.exit {
            return;
        }
        if let Some(old) = self.exit.take() {
            tracing::info!(portal = %old, "leaving portal");
            self.command(Command::RemoveRoute {
                destination: DEFAULT_V4.0,
                len: DEFAULT_V4.1,
            });
        }
        let Some(p) = next else {
            tracing::warn!(
                "no portal of this node's owner is reachable; internet traffic is dropped"
            );
            return;
        };
        tracing::info!(portal = %p, "internet traffic goes through portal");
        self.exit = Some(p);
        if let Some(s) = self.inb.get(&p) {
            let stream_id = s.dp_id;
            self.command(Command::AllowSource {
                stream_id,
                prefix: DEFAULT_V4,
            });
        }
        if self.out.contains_key(&p) {
            self.route_to(now, p, dir);
            self.reinstall(p);
        } else {
            self.actions.push_back(Action::Want(p));
            self.ensure_tether(now, p);
        }
    }
}

//! Routes: a destination prefix delivered here, or split over up to
//! [`MAX_NEXT_HOPS`] weighted next hops by a hash of the inner flow.

use conflux_shared::id::Label;
use conflux_shared::wire::record::{InstallRouteBody, MAX_NEXT_HOPS, RouteTarget, TetherId};

/// One next hop of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hop {
    /// The tether to send on.
    pub tether: TetherId,
    /// The label the next hop chose.
    pub label: Label,
    /// Share of flows; zero keeps the hop as standby.
    pub weight: u16,
}

/// A route entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Local or forwarded.
    pub target: RouteTarget,
    hops: [Hop; MAX_NEXT_HOPS],
    count: u8,
    total_weight: u32,
    /// Index of the egress stream that seals this route's packets, once one is installed.
    pub stream: Option<u32>,
    /// The destination whose egress stream seals it, when the record named one.
    pub via: Option<std::net::IpAddr>,
}

impl Route {
    /// From a validated install record.
    pub fn from_record(b: &InstallRouteBody) -> Self {
        let mut hops = [Hop::default(); MAX_NEXT_HOPS];
        for (h, r) in hops.iter_mut().zip(b.next_hops()) {
            *h = Hop {
                tether: r.tether.get(),
                label: r.label.get(),
                weight: r.weight.get(),
            };
        }
        let mut r = Self::new(b.target, &hops[..b.next_hops().len()]);
        r.via = b.via();
        r
    }

    /// A route over `hops` (at most [`MAX_NEXT_HOPS`] are kept).
    pub fn new(target: RouteTarget, hops: &[Hop]) -> Self {
        let mut r = Self {
            target,
            hops: [Hop::default(); MAX_NEXT_HOPS],
            count: 0,
            total_weight: 0,
            stream: None,
            via: None,
        };
        for (slot, h) in r.hops.iter_mut().zip(hops) {
            *slot = *h;
            r.count += 1;
            r.total_weight += u32::from(h.weight);
        }
        r
    }

    /// The next hops.
    pub fn hops(&self) -> &[Hop] {
        &self.hops[..usize::from(self.count)]
    }

    /// The hop for a flow: the flow hash picks a point in the summed weights, so each hop
    /// gets its share of flows and one flow always gets the same hop.
    #[inline]
    pub fn choose(&self, flow_hash: u32) -> Option<&Hop> {
        if self.total_weight == 0 {
            return self.hops().first();
        }
        // Multiply-shift maps the hash onto [0, total) without a division.
        let mut point = ((u64::from(flow_hash) * u64::from(self.total_weight)) >> 32) as u32;
        for h in self.hops() {
            let w = u32::from(h.weight);
            if point < w {
                return Some(h);
            }
            point -= w;
        }
        self.hops().last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_split_flows_and_standby_gets_none() {
        let r = Route::new(
            RouteTarget::Forward,
            &[
                Hop {
                    tether: 1,
                    label: 10,
                    weight: 3,
                },
                Hop {
                    tether: 2,
                    label: 20,
                    weight: 1,
                },
                Hop {
                    tether: 3,
                    label: 30,
                    weight: 0,
                },
            ],
        );
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            let h = crate::packet::FlowHasher::new();
            let mut h = h;
            h.write_u64(u64::from(i));
            let hop = r.choose(h.finish32()).unwrap();
            counts[hop.tether as usize] += 1;
        }
        assert_eq!(counts[3], 0, "a zero-weight hop is standby");
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "hop 1 share {share}");
        assert_eq!(r.choose(12345), r.choose(12345), "one flow, one hop");
    }
}

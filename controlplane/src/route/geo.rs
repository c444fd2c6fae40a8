//! Geo-location control: exclude or prefer regions for the relays of a path.
//!
//! Regions are what nodes declared at registration and Guardian certified (the certificate's
//! `region`); the control process passes them in with [`super::Router::set_region`].
//! Exclusion is strict: a path is used only when every relay's region is known and not
//! excluded, so a relay whose region has not been looked up yet is treated as excluded. The
//! destination itself is not a relay and is never excluded. Preference is soft: each relay
//! outside the preferred regions adds [`PREFER_PENALTY_US`] to the path's cost when choosing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use conflux_shared::id::NodeId;

/// Cost added per relay outside the preferred regions when any region is preferred.
pub const PREFER_PENALTY_US: f64 = 20_000.0;

/// A region name, as certified for a node (for example `eu-west`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region(pub String);

impl Region {
    /// A region from its name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which regions relays may be in, and which are preferred (from config and `conflux-ctl`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoPolicy {
    /// Never relay through a node in one of these regions.
    pub exclude: BTreeSet<Region>,
    /// Favour relays in these regions.
    pub prefer: BTreeSet<Region>,
}

/// What geo policy says about one path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The path may be used; its cost is raised by this much.
    Allowed {
        /// Preference penalty, microseconds.
        penalty_us: f64,
    },
    /// A relay is in an excluded region.
    Excluded,
    /// A relay's region is unknown while exclusion needs it: treated as excluded.
    Unknown(NodeId),
}

impl Verdict {
    /// Whether traffic may take the path.
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }
}

impl GeoPolicy {
    /// No exclusion, no preference.
    pub fn open() -> Self {
        Self::default()
    }

    /// The verdict on `path` (hops after this node, ending at the destination).
    pub fn judge(&self, path: &[NodeId], regions: &BTreeMap<NodeId, Region>) -> Verdict {
        let relays = &path[..path.len().saturating_sub(1)];
        let mut penalty_us = 0.0;
        for relay in relays {
            let region = regions.get(relay);
            if !self.exclude.is_empty() {
                match region {
                    None => return Verdict::Unknown(*relay),
                    Some(r) if self.exclude.contains(r) => return Verdict::Excluded,
                    Some(_) => {}
                }
            }
            if !self.prefer.is_empty() && !region.is_some_and(|r| self.prefer.contains(r)) {
                penalty_us += PREFER_PENALTY_US;
            }
        }
        Verdict::Allowed { penalty_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn regions() -> BTreeMap<NodeId, Region> {
        [(id(1), "eu"), (id(2), "us"), (id(3), "ap")]
            .into_iter()
            .map(|(n, r)| (n, Region::new(r)))
            .collect()
    }

    #[test]
    fn excluded_relay_refuses_the_path_but_an_excluded_destination_does_not() {
        let p = GeoPolicy {
            exclude: [Region::new("us")].into(),
            ..GeoPolicy::open()
        };
        assert_eq!(
            p.judge(&[id(1), id(2), id(3)], &regions()),
            Verdict::Excluded
        );
        assert!(p.judge(&[id(1), id(2)], &regions()).allowed());
        assert!(p.judge(&[id(2)], &regions()).allowed());
    }

    #[test]
    fn unknown_relay_region_counts_as_excluded_only_under_exclusion() {
        let strict = GeoPolicy {
            exclude: [Region::new("us")].into(),
            ..GeoPolicy::open()
        };
        assert_eq!(
            strict.judge(&[id(9), id(1)], &regions()),
            Verdict::Unknown(id(9))
        );
        assert!(
            GeoPolicy::open()
                .judge(&[id(9), id(1)], &regions())
                .allowed()
        );
    }

    #[test]
    fn preference_penalises_each_relay_outside_the_preferred_regions() {
        let p = GeoPolicy {
            prefer: [Region::new("eu")].into(),
            ..GeoPolicy::open()
        };
        let pen = |path: &[NodeId]| match p.judge(path, &regions()) {
            Verdict::Allowed { penalty_us } => penalty_us,
            v => panic!("refused: {v:?}"),
        };
        assert_eq!(pen(&[id(1), id(3)]), 0.0);
        assert_eq!(pen(&[id(2), id(3), id(1)]), 2.0 * PREFER_PENALTY_US);
        assert_eq!(pen(&[id(9), id(1)]), PREFER_PENALTY_US);
    }
}

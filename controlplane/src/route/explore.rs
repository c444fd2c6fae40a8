//! Bounded exploration.
//!
//! Liveness probes and neighbours' estimates keep every candidate's cost up to date without
//! sending traffic on it, so exploration is kept for the paths those do not vouch for: a path
//! through a neighbour on probation (it just came back after being abandoned) and a path
//! whose estimate has lost its confidence (its neighbour has gone quiet on the control
//! channel). One such path at a time, taken in turn, carries [`EXPLORE_SHARE`] of the flows,
//! if its cost is within [`EXPLORE_COST_FACTOR`] of the best trusted path. While any trusted
//! path exists, exploratory paths together never carry more than [`EXPLORE_SHARE`]; when
//! none does, the exploratory ones are all there is and carry everything.

use conflux_shared::id::NodeId;

/// The most flows exploratory paths carry while a trusted path exists.
pub const EXPLORE_SHARE: f64 = 0.05;
/// An exploratory path is tried only when it costs at most this many times the best.
pub const EXPLORE_COST_FACTOR: f64 = 3.0;
/// An estimate with less confidence than this is exploratory.
pub const LOW_CONFIDENCE: f64 = 0.3;

/// Adds one exploratory candidate `(next hop, cost)` to the trusted `shares` (adding up to
/// one): the `turn`-th of those within [`EXPLORE_COST_FACTOR`] of `best_cost`.
pub fn mix(
    shares: &[(NodeId, f64)],
    explorers: &[(NodeId, f64)],
    best_cost: f64,
    turn: u64,
) -> Vec<(NodeId, f64)> {
    let eligible: Vec<NodeId> = explorers
        .iter()
        .filter(|e| e.1.is_finite() && e.1 <= best_cost * EXPLORE_COST_FACTOR)
        .map(|e| e.0)
        .collect();
    let mut out: Vec<(NodeId, f64)> = shares.to_vec();
    if eligible.is_empty() || shares.is_empty() {
        return out;
    }
    let pick = eligible[(turn % eligible.len() as u64) as usize];
    out.iter_mut().for_each(|s| s.1 *= 1.0 - EXPLORE_SHARE);
    out.push((pick, EXPLORE_SHARE));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    /// A small deterministic generator for varied cases.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn exploratory_share_never_exceeds_the_bound_and_only_eligible_paths_are_explored() {
        let mut x = 0x1234_5678_9abc_def1;
        for case in 0..2000 {
            let n_trusted = (next(&mut x) % 4) as u8 + 1;
            let shares = super::super::weights::normalise(
                (0..n_trusted)
                    .map(|i| (id(i), (next(&mut x) % 100 + 1) as f64))
                    .collect(),
            );
            let best = 10_000.0 + (next(&mut x) % 50_000) as f64;
            let explorers: Vec<(NodeId, f64)> = (0..(next(&mut x) % 4) as u8)
                .map(|i| (id(100 + i), best * (next(&mut x) % 500) as f64 / 100.0))
                .collect();
            let out = mix(&shares, &explorers, best, next(&mut x));
            let explored: Vec<_> = out.iter().filter(|s| s.0.0[0] >= 100).collect();
            let explored_share: f64 = explored.iter().map(|s| s.1).sum();
            assert!(
                explored_share <= EXPLORE_SHARE + 1e-12,
                "case {case}: {out:?}"
            );
            assert!(explored.len() <= 1);
            for e in &explored {
                let cost = explorers.iter().find(|c| c.0 == e.0).unwrap().1;
                assert!(cost <= best * EXPLORE_COST_FACTOR, "case {case}: too dear");
            }
            let any_eligible = explorers.iter().any(|e| e.1 <= best * EXPLORE_COST_FACTOR);
            assert_eq!(explored.len() == 1, any_eligible, "case {case}");
            assert!((out.iter().map(|s| s.1).sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn explorers_are_taken_in_turn() {
        let shares = [(id(1), 1.0)];
        let explorers = [(id(2), 10.0), (id(3), 10.0)];
        let picked: Vec<NodeId> = (0..4)
            .map(|turn| mix(&shares, &explorers, 10.0, turn)[1].0)
            .collect();
        assert_eq!(picked, [id(2), id(3), id(2), id(3)]);
    }
}

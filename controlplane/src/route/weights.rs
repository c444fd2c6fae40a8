//! Multi-path weights: how flows are shared among a destination's good paths.
//!
//! Each path's target share is a soft minimum of the costs, relative to the best:
//!
//! ```text
//! target_i ∝ exp(−(Q_i − Q_min) / (TEMPERATURE · Q_min))
//! ```
//!
//! so two equally good paths get half each, a path 5 % dearer about a quarter, and one 20 %
//! dearer next to nothing. Every [`super::RouterConfig::decide_interval`] the shares move a
//! step ([`SMOOTHING`]) towards the target. Since costs include queueing, traffic keeps moving
//! from a loaded path to a lighter one until their costs meet (the equilibrium in which no
//! flow gains by switching), while the step keeps every source from jumping at once. Shares
//! under [`MIN_SHARE`] are dropped; at most [`super::MAX_NEXT_HOPS`] paths are kept.
//!
//! [`super::Strategy::LatencyOnly`] uses [`pick_one`] instead: the single cheapest path, kept
//! until another is [`HYSTERESIS`] cheaper.

use conflux_shared::id::NodeId;

use super::WEIGHT_TOTAL;

/// Softmin temperature, as a fraction of the best cost.
pub const TEMPERATURE: f64 = 0.05;
/// Fraction of the way to the target the shares move per decision tick.
pub const SMOOTHING: f64 = 0.3;
/// Shares under this are dropped.
pub const MIN_SHARE: f64 = 0.02;
/// A single-path choice switches only to a path this much cheaper.
pub const HYSTERESIS: f64 = 0.05;

/// Target shares for candidates `(next hop, cost)`, in the same order; empty if none is
/// finite.
pub fn target(costs: &[(NodeId, f64)]) -> Vec<(NodeId, f64)> {
    let best = costs.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    if !best.is_finite() {
        return Vec::new();
    }
    let scale = TEMPERATURE * best.max(1.0);
    let raw: Vec<(NodeId, f64)> = costs
        .iter()
        .filter(|c| c.1.is_finite())
        .map(|&(n, c)| (n, (-(c - best) / scale).exp()))
        .collect();
    normalise(raw)
}

/// Moves `current` a `step` of the way to `target`; hops not in `target` fade out. Drops
/// small shares, keeps at most `max_paths`, and renormalises.
pub fn blend(
    current: &[(NodeId, f64)],
    target: &[(NodeId, f64)],
    step: f64,
    max_paths: usize,
) -> Vec<(NodeId, f64)> {
    let old = |n: NodeId| current.iter().find(|c| c.0 == n).map_or(0.0, |c| c.1);
    let mut mixed: Vec<(NodeId, f64)> = target
        .iter()
        .map(|&(n, t)| (n, old(n) + step * (t - old(n))))
        .filter(|c| c.1 >= MIN_SHARE)
        .collect();
    if mixed.is_empty() {
        // Every share fell under the floor at once: take the target as it is.
        mixed = target.to_vec();
    }
    mixed.sort_by(|a, b| b.1.total_cmp(&a.1));
    mixed.truncate(max_paths);
    normalise(mixed)
}

/// The cheapest candidate, keeping `current` unless another is [`HYSTERESIS`] cheaper.
pub fn pick_one(current: Option<NodeId>, costs: &[(NodeId, f64)]) -> Option<NodeId> {
    let best = costs
        .iter()
        .filter(|c| c.1.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    match current.and_then(|n| costs.iter().find(|c| c.0 == n && c.1.is_finite())) {
        Some(cur) if best.1 >= cur.1 * (1.0 - HYSTERESIS) => Some(cur.0),
        _ => Some(best.0),
    }
}

/// Integer weights adding up to [`WEIGHT_TOTAL`], each at least 1 (largest remainders).
pub fn to_units(shares: &[f64]) -> Vec<u16> {
    let total = f64::from(WEIGHT_TOTAL);
    let n = shares.len() as u16;
    if n == 0 {
        return Vec::new();
    }
    let spare = total - f64::from(n);
    let exact: Vec<f64> = shares.iter().map(|s| s.max(0.0) * spare).collect();
    let mut units: Vec<u16> = exact.iter().map(|e| 1 + e.floor() as u16).collect();
    let used: u16 = units.iter().sum();
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &i in order
        .iter()
        .cycle()
        .take(usize::from(WEIGHT_TOTAL.saturating_sub(used)))
    {
        units[i] += 1;
    }
    units
}

/// Scales shares to add up to one (empty stays empty).
pub fn normalise(mut v: Vec<(NodeId, f64)>) -> Vec<(NodeId, f64)> {
    let sum: f64 = v.iter().map(|c| c.1).sum();
    if sum > 0.0 {
        v.iter_mut().for_each(|c| c.1 /= sum);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn share(v: &[(NodeId, f64)], n: u8) -> f64 {
        v.iter().find(|c| c.0 == id(n)).map_or(0.0, |c| c.1)
    }

    #[test]
    fn equal_paths_share_evenly_and_a_much_dearer_path_gets_nothing_that_counts() {
        let t = target(&[(id(1), 30_000.0), (id(2), 30_000.0), (id(3), 45_000.0)]);
        assert!((share(&t, 1) - 0.5).abs() < 1e-3 && (share(&t, 2) - 0.5).abs() < 1e-3);
        assert!(share(&t, 3) < 1e-3);
        let b = blend(&[], &t, 1.0, 4);
        assert_eq!(b.len(), 2, "the dear path falls under the floor: {b:?}");
    }

    #[test]
    fn shares_move_a_step_towards_the_target_and_add_up_to_one() {
        let cur = vec![(id(1), 1.0)];
        let t = vec![(id(1), 0.5), (id(2), 0.5)];
        let b = blend(&cur, &t, 0.3, 4);
        assert!((share(&b, 1) - 0.85).abs() < 1e-9, "{b:?}");
        assert!((share(&b, 2) - 0.15).abs() < 1e-9);
        let mut s = cur;
        for _ in 0..40 {
            s = blend(&s, &t, 0.3, 4);
        }
        assert!((share(&s, 2) - 0.5).abs() < 1e-3, "converges to the target");
        assert!((s.iter().map(|c| c.1).sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn at_most_max_paths_are_kept() {
        let costs: Vec<_> = (1..=6).map(|n| (id(n), 10_000.0)).collect();
        assert_eq!(blend(&[], &target(&costs), 1.0, 4).len(), 4);
    }

    #[test]
    fn single_path_switches_only_past_the_hysteresis() {
        let c = [(id(1), 10_000.0), (id(2), 9_800.0)];
        assert_eq!(pick_one(Some(id(1)), &c), Some(id(1)));
        assert_eq!(pick_one(None, &c), Some(id(2)));
        let c = [(id(1), 10_000.0), (id(2), 9_000.0)];
        assert_eq!(pick_one(Some(id(1)), &c), Some(id(2)));
        let c = [(id(1), f64::INFINITY), (id(2), 50_000.0)];
        assert_eq!(pick_one(Some(id(1)), &c), Some(id(2)));
    }

    #[test]
    fn units_add_up_to_the_total_and_keep_every_path() {
        for shares in [
            vec![1.0],
            vec![0.5, 0.5],
            vec![0.999, 0.0005, 0.0005],
            vec![0.3; 3],
        ] {
            let u = to_units(&shares);
            assert_eq!(u.iter().sum::<u16>(), WEIGHT_TOTAL, "{shares:?} -> {u:?}");
            assert!(u.iter().all(|&w| w >= 1));
        }
    }
}

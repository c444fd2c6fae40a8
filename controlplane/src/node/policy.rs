//! The realm/taint policy as the node applies it to a peer (DESIGN §6).

use conflux_shared::taint::Membership;

/// What the policy says about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same realm, and one taint set contains the other with at least one taint shared.
    Talk,
    /// Another realm: such a node should not even be visible.
    OtherRealm,
    /// Same realm, taint sets that do not allow talking.
    Taints,
}

impl Verdict {
    /// Whether the two nodes may set up streams.
    pub fn allows(self) -> bool {
        self == Verdict::Talk
    }
}

/// Judges a peer's membership against this node's.
pub fn judge(local: &Membership, peer: &Membership) -> Verdict {
    if local.realm != peer.realm {
        Verdict::OtherRealm
    } else if local.may_talk(peer) {
        Verdict::Talk
    } else {
        Verdict::Taints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_shared::taint::{Realm, TaintSet};

    fn m(realm: &str, taints: &[&str]) -> Membership {
        Membership {
            realm: Realm::new(realm).unwrap(),
            taints: TaintSet::parse(taints.iter().copied()).unwrap(),
        }
    }

    #[test]
    fn the_issue_examples() {
        assert_eq!(judge(&m("r", &["a"]), &m("r", &["a", "b"])), Verdict::Talk);
        assert_eq!(judge(&m("r", &["a"]), &m("r", &["c"])), Verdict::Taints);
        assert_eq!(judge(&m("r", &[]), &m("r", &["a"])), Verdict::Taints);
        assert_eq!(judge(&m("r", &[]), &m("r", &[])), Verdict::Taints);
        assert_eq!(judge(&m("r", &["a"]), &m("s", &["a"])), Verdict::OtherRealm);
        assert!(!Verdict::Taints.allows() && Verdict::Talk.allows());
    }
}

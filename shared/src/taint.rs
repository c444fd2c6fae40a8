//! Realm and taint rules (DESIGN §6).
//!
//! A node is in exactly one realm and carries a set of taints. Two nodes may talk iff they
//! are in the same realm, one's taint set is a subset of the other's, and the sets share at
//! least one taint; so a node without taints talks to no one.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest realm or taint name, in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Most taints a node may carry.
pub const MAX_TAINTS: usize = 32;

/// Why a realm, taint or taint set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// A character outside `[a-z0-9_-]`, or a name not starting with a letter or digit.
    #[error("name {0:?} may hold only a-z, 0-9, '-' and '_', starting with a letter or digit")]
    BadChar(String),
    /// More than [`MAX_TAINTS`] taints.
    #[error("more than {MAX_TAINTS} taints")]
    TooMany,
}

fn check_name(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let ok_first = s.as_bytes()[0].is_ascii_lowercase() || s.as_bytes()[0].is_ascii_digit();
    let ok_rest = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !(ok_first && ok_rest) {
        return Err(NameError::BadChar(s.to_owned()));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $t(String);

        impl $t {
            /// Validates and wraps a name.
            pub fn new(s: &str) -> Result<Self, NameError> {
                check_name(s)?;
                Ok(Self(s.to_owned()))
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $t {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                check_name(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$t> for String {
            fn from(t: $t) -> String {
                t.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

name_type!(
    /// A realm name: the trust domain a node belongs to (one NATS account).
    Realm
);
name_type!(
    /// One taint: a label an operator puts on nodes to decide who talks to whom.
    Taint
);

/// A node's set of taints, kept sorted and bounded.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Taint>", into = "Vec<Taint>")]
pub struct TaintSet(BTreeSet<Taint>);

impl TaintSet {
    /// The empty set: a node with it talks to no one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from names, validating each.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, NameError> {
        let set = names
            .into_iter()
            .map(Taint::new)
            .collect::<Result<BTreeSet<_>, _>>()?;
        Self::try_from_set(set)
    }

    fn try_from_set(set: BTreeSet<Taint>) -> Result<Self, NameError> {
        if set.len() > MAX_TAINTS {
            return Err(NameError::TooMany);
        }
        Ok(Self(set))
    }

    /// Adds a taint; `Ok(false)` if it was already there.
    pub fn insert(&mut self, t: Taint) -> Result<bool, NameError> {
        if !self.0.contains(&t) && self.0.len() >= MAX_TAINTS {
            return Err(NameError::TooMany);
        }
        Ok(self.0.insert(t))
    }

    /// Removes a taint; `false` if it was not there.
    pub fn remove(&mut self, t: &Taint) -> bool {
        self.0.remove(t)
    }

    /// Whether the set holds `t`.
    pub fn contains(&self, t: &Taint) -> bool {
        self.0.contains(t)
    }

    /// Number of taints.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The taints in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &Taint> {
        self.0.iter()
    }

    /// Whether two taint sets allow their nodes to talk: one is a subset of the other and
    /// they share at least one taint.
    pub fn compatible(&self, other: &TaintSet) -> bool {
        let shares = self.0.intersection(&other.0).next().is_some();
        shares && (self.0.is_subset(&other.0) || other.0.is_subset(&self.0))
    }
}

impl TryFrom<Vec<Taint>> for TaintSet {
    type Error = NameError;
    fn try_from(v: Vec<Taint>) -> Result<Self, NameError> {
        Self::try_from_set(v.into_iter().collect())
    }
}

impl From<TaintSet> for Vec<Taint> {
    fn from(s: TaintSet) -> Vec<Taint> {
        s.0.into_iter().collect()
    }
}

impl fmt::Debug for TaintSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl fmt::Display for TaintSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(t.as_str())?;
        }
        f.write_str("}")
    }
}

/// A node's standing for the talk rule: its realm and taints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The one realm the node is in.
    pub realm: Realm,
    /// The node's taints.
    pub taints: TaintSet,
}

impl Membership {
    /// Whether a node with this membership may talk to one with `other`.
    pub fn may_talk(&self, other: &Membership) -> bool {
        self.realm == other.realm && self.taints.compatible(&other.taints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(realm: &str, taints: &[&str]) -> Membership {
        Membership {
            realm: Realm::new(realm).unwrap(),
            taints: TaintSet::parse(taints.iter().copied()).unwrap(),
        }
    }

    /// (realm a, taints a, realm b, taints b, may talk)
    type TalkCase = (
        &'static str,
        &'static [&'static str],
        &'static str,
        &'static [&'static str],
        bool,
    );

    #[test]
    fn talk_table() {
        #[rustfmt::skip]
        let table: &[TalkCase] = &[
            ("r", &["dev", "stage"], "r", &["dev"], true),
            ("r", &["dev"], "r", &["dev"], true),
            ("r", &["prod"], "r", &["dev"], false),
            ("r", &[], "r", &["dev"], false),
            ("r", &[], "r", &[], false),
            ("r", &["a", "b"], "r", &["b", "c"], false),
            ("r", &["a", "b", "c"], "r", &["c", "a"], true),
            ("r1", &["dev"], "r2", &["dev"], false),
        ];
        for (ra, ta, rb, tb, want) in table {
            let (a, b) = (m(ra, ta), m(rb, tb));
            assert_eq!(a.may_talk(&b), *want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(Taint::new(""), Err(NameError::Empty));
        assert!(matches!(Taint::new("Dev"), Err(NameError::BadChar(_))));
        assert!(matches!(Taint::new("-x"), Err(NameError::BadChar(_))));
        assert!(matches!(Realm::new("a b"), Err(NameError::BadChar(_))));
        assert_eq!(Realm::new(&"a".repeat(64)), Err(NameError::TooLong));
        assert!(Taint::new("eu-west_1").is_ok());
        let many: Vec<String> = (0..=MAX_TAINTS).map(|i| format!("t{i}")).collect();
        assert_eq!(
            TaintSet::parse(many.iter().map(String::as_str)),
            Err(NameError::TooMany)
        );
    }

    #[test]
    fn serde_validates() {
        let s: TaintSet = serde_json::from_str(r#"["b","a","b"]"#).unwrap();
        assert_eq!(s.to_string(), "{a,b}");
        assert!(serde_json::from_str::<TaintSet>(r#"["BAD"]"#).is_err());
    }

    fn membership() -> impl Strategy<Value = Membership> {
        (
            prop::sample::select(vec!["r1", "r2"]),
            prop::collection::btree_set(prop::sample::select(vec!["a", "b", "c", "d"]), 0..4),
        )
            .prop_map(|(r, ts)| m(r, &ts.into_iter().collect::<Vec<_>>()))
    }

    proptest! {
        #[test]
        fn relation_is_symmetric(a in membership(), b in membership()) {
            prop_assert_eq!(a.may_talk(&b), b.may_talk(&a));
        }

        #[test]
        fn empty_talks_to_no_one(a in membership()) {
            let empty = Membership { realm: a.realm.clone(), taints: TaintSet::new() };
            prop_assert!(!empty.may_talk(&a));
        }
    }
}

//! Counters of what the node did and of what it silently dropped, by reason.
//!
//! Untrusted input is never answered and never logged message by message; an operator sees
//! these counters instead (`conflux-ctl status`).

/// Why a message from the network was dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Bytes that do not decode, or fields of the wrong shape.
    Malformed,
    /// The sender exceeded its rate (or all senders together did).
    RateLimited,
    /// From (or about) a node Guardian revoked.
    Revoked,
    /// A certificate signed by a Guardian key this node does not know.
    UnknownKey,
    /// A certificate whose signature does not verify, or that names another node.
    BadCertificate,
    /// A certificate outside its validity window.
    Expired,
    /// A node of another realm.
    WrongRealm,
    /// A presence or handshake whose node signature does not verify.
    BadSignature,
    /// A presence too old, from the future, or older than one already accepted.
    Stale,
    /// A handshake seen before, or one that expired.
    Replayed,
    /// A peer the realm/taint policy does not let this node talk to.
    Policy,
    /// A handshake that fails its checks (wrong responder, bad key material, bad accept).
    BadHandshake,
    /// A reply nobody waits for any more.
    Unexpected,
}

impl Ignored {
    /// Every reason, in display order.
    pub const ALL: [Ignored; 13] = [
        Ignored::Malformed,
        Ignored::RateLimited,
        Ignored::Revoked,
        Ignored::UnknownKey,
        Ignored::BadCertificate,
        Ignored::Expired,
        Ignored::WrongRealm,
        Ignored::BadSignature,
        Ignored::Stale,
        Ignored::Replayed,
        Ignored::Policy,
        Ignored::BadHandshake,
        Ignored::Unexpected,
    ];

    /// The reason's name in counters and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::RateLimited => "rate_limited",
            Ignored::Revoked => "revoked",
            Ignored::UnknownKey => "unknown_key",
            Ignored::BadCertificate => "bad_certificate",
            Ignored::Expired => "expired",
            Ignored::WrongRealm => "wrong_realm",
            Ignored::BadSignature => "bad_signature",
            Ignored::Stale => "stale",
            Ignored::Replayed => "replayed",
            Ignored::Policy => "policy",
            Ignored::BadHandshake => "bad_handshake",
            Ignored::Unexpected => "unexpected",
        }
    }
}

/// The node's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    ignored: [u64; Ignored::ALL.len()],
    /// Presence announcements published.
    pub presence_sent: u64,
    /// Presence announcements accepted from peers.
    pub presence_accepted: u64,
    /// Outbound streams set up by this node.
    pub handshakes_initiated: u64,
    /// Inbound streams accepted by this node.
    pub handshakes_answered: u64,
    /// Outbound streams given a fresh key.
    pub rekeys: u64,
    /// LAN prefixes peers advertised without Guardian's authorization (ignored).
    pub routes_refused: u64,
}

impl Counters {
    /// Counts one dropped message.
    pub fn ignore(&mut self, why: Ignored) {
        self.ignored[why as usize] += 1;
    }

    /// Messages dropped for `why`.
    pub fn ignored(&self, why: Ignored) -> u64 {
        self.ignored[why as usize]
    }

    /// Every non-zero drop counter with its name.
    pub fn ignored_nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Ignored::ALL
            .iter()
            .map(|&w| (w.as_str(), self.ignored(w)))
            .filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let mut c = Counters::default();
        for (i, w) in Ignored::ALL.iter().enumerate() {
            assert_eq!(*w as usize, i, "ALL is in declaration order");
            for _ in 0..=i {
                c.ignore(*w);
            }
        }
        let names: Vec<_> = c.ignored_nonzero().collect();
        assert_eq!(names.len(), Ignored::ALL.len());
        assert_eq!(names[0], ("malformed", 1));
        assert_eq!(names[12], ("unexpected", 13));
    }
}

//! The `TetherOpen` signal: what the control process sends a worker to open a WebRTC
//! tether, checked before anything of it is used.
//!
//! The message arrives on the signals-in ring as kind
//! [`SIGNAL_TETHER_OPEN`](crate::control::SIGNAL_TETHER_OPEN), a protobuf
//! `conflux.v1.TetherOpen`. Every field is untrusted: [`OpenRequest::decode`] returns a
//! typed error for anything out of its domain and the worker counts it.

use std::net::SocketAddr;

use conflux_shared::proto::TetherOpen;
use conflux_shared::wire::record::TetherId;
use prost::Message;

use crate::tether::{Fingerprint, IceCredentials};

/// Candidates one open may name at most.
pub const MAX_CANDIDATES: usize = 8;
/// Channels one tether may spread packets over at most.
pub const MAX_CHANNELS: u16 = 64;
/// Channels when the open names none.
pub const DEFAULT_CHANNELS: u16 = 4;
/// The hash name in fingerprint text.
const FINGERPRINT_HASH: &str = "sha-256";

/// Why a `TetherOpen` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The bytes are not a `TetherOpen` message.
    #[error("not a TetherOpen message: {0}")]
    Decode(String),
    /// Tether id 0.
    #[error("tether id 0")]
    ZeroTether,
    /// No candidate, too many, or one that is not `ip:port`.
    #[error("bad candidates: {0}")]
    Candidates(String),
    /// An ICE username fragment or password outside RFC 8445's lengths or alphabet.
    #[error("bad ICE credentials: {0}")]
    Credentials(&'static str),
    /// The remote fingerprint is not `sha-256` and 32 colon-separated hex bytes.
    #[error("bad remote fingerprint")]
    Fingerprint,
    /// More channels than [`MAX_CHANNELS`].
    #[error("{0} channels (at most {MAX_CHANNELS})")]
    Channels(u32),
}

/// A checked `TetherOpen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The tether.
    pub tether: TetherId,
    /// The remote worker's candidates.
    pub candidates: Vec<SocketAddr>,
    /// ICE controlling and DTLS client.
    pub controlling: bool,
    /// This end's ICE credentials.
    pub local: IceCredentials,
    /// The peer's ICE credentials.
    pub remote: IceCredentials,
    /// The peer's certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Channels (the default when the message said 0).
    pub channels: u16,
}

/// `ice-char` of RFC 8839: ALPHA / DIGIT / "+" / "/".
fn ice_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn check_ufrag(s: &str) -> Result<(), OpenError> {
    if !(4..=256).contains(&s.len()) || !ice_chars(s) {
        return Err(OpenError::Credentials("ufrag must be 4 to 256 ice-chars"));
    }
    Ok(())
}

fn check_pwd(s: &str) -> Result<(), OpenError> {
    if !(22..=256).contains(&s.len()) || !ice_chars(s) {
        return Err(OpenError::Credentials("pwd must be 22 to 256 ice-chars"));
    }
    Ok(())
}

/// Parses `"sha-256 AA:BB:…"` (the hash name in any case, the hex in either case).
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, OpenError> {
    let (hash, hex) = s.trim().split_once(' ').ok_or(OpenError::Fingerprint)?;
    if !hash.eq_ignore_ascii_case(FINGERPRINT_HASH) {
        return Err(OpenError::Fingerprint);
    }
    hex.trim().parse().map_err(|_| OpenError::Fingerprint)
}

/// `"sha-256 AA:BB:…"`, uppercase hex: the form `Hello`, snapshots and `TetherOpen` use.
pub fn fingerprint_text(f: &Fingerprint) -> String {
    format!("{FINGERPRINT_HASH} {f}")
}

impl OpenRequest {
    /// Decodes and checks a signals-in payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, OpenError> {
        let m = TetherOpen::decode(bytes).map_err(|e| OpenError::Decode(e.to_string()))?;
        Self::from_message(&m)
    }

    /// Checks a decoded message.
    pub fn from_message(m: &TetherOpen) -> Result<Self, OpenError> {
        if m.tether == 0 {
            return Err(OpenError::ZeroTether);
        }
        if m.candidates.is_empty() || m.candidates.len() > MAX_CANDIDATES {
            return Err(OpenError::Candidates(format!(
                "{} candidates (1 to {MAX_CANDIDATES})",
                m.candidates.len()
            )));
        }
        let candidates = m
            .candidates
            .iter()
            .map(|c| {
                c.parse::<SocketAddr>()
                    .ok()
                    .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
                    .ok_or_else(|| OpenError::Candidates(format!("{c:?} is not ip:port")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_ufrag(&m.local_ufrag)?;
        check_pwd(&m.local_pwd)?;
        check_ufrag(&m.remote_ufrag)?;
        check_pwd(&m.remote_pwd)?;
        let fingerprint = parse_fingerprint(&m.remote_fingerprint)?;
        let channels = match m.channels {
            0 => DEFAULT_CHANNELS,
            c if c <= u32::from(MAX_CHANNELS) => c as u16,
            c => return Err(OpenError::Channels(c)),
        };
        Ok(Self {
            tether: m.tether,
            candidates,
            controlling: m.controlling,
            local: IceCredentials {
                ufrag: m.local_ufrag.clone(),
                pwd: m.local_pwd.clone(),
            },
            remote: IceCredentials {
                ufrag: m.remote_ufrag.clone(),
                pwd: m.remote_pwd.clone(),
            },
            fingerprint,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> TetherOpen {
        TetherOpen {
            tether: 3,
            candidates: vec!["10.0.0.2:51820".into()],
            controlling: true,
            local_ufrag: "abcd".into(),
            local_pwd: "a".repeat(22),
            remote_ufrag: "wxyz".into(),
            remote_pwd: "b+/".repeat(8),
            remote_fingerprint: fingerprint_text(&Fingerprint([0xAB; 32])),
            channels: 0,
        }
    }

    #[test]
    fn accepts_a_valid_open_and_fills_defaults() {
        let r = OpenRequest::decode(&valid().encode_to_vec()).unwrap();
        assert_eq!(r.tether, 3);
        assert_eq!(
            r.candidates,
            vec!["10.0.0.2:51820".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(r.channels, DEFAULT_CHANNELS);
        assert_eq!(r.fingerprint, Fingerprint([0xAB; 32]));
        assert!(r.controlling);
    }

    #[test]
    fn fingerprint_text_is_the_documented_form() {
        let t = fingerprint_text(&Fingerprint([0x0A; 32]));
        assert!(t.starts_with("sha-256 0A:0A:"), "{t}");
        assert_eq!(t.len(), 8 + 32 * 3 - 1);
        assert_eq!(
            parse_fingerprint(&t.to_lowercase()).unwrap(),
            Fingerprint([0x0A; 32])
        );
        assert!(parse_fingerprint("sha-1 0A:0B").is_err());
        assert!(parse_fingerprint(&t.replace("sha-256 ", "")).is_err());
    }

    type Mutation = fn(&mut TetherOpen);
    type Expect = fn(&OpenError) -> bool;

    #[test]
    fn refuses_each_bad_field() {
        let cases: [(Mutation, Expect); 8] = [
            (|m| m.tether = 0, |e| *e == OpenError::ZeroTether),
            (
                |m| m.candidates.clear(),
                |e| matches!(e, OpenError::Candidates(_)),
            ),
            (
                |m| m.candidates = vec!["10.0.0.2".into()],
                |e| matches!(e, OpenError::Candidates(_)),
            ),
            (
                |m| m.candidates = vec!["0.0.0.0:1".into()],
                |e| matches!(e, OpenError::Candidates(_)),
            ),
            (
                |m| m.local_ufrag = "ab".into(),
                |e| matches!(e, OpenError::Credentials(_)),
            ),
            (
                |m| m.remote_pwd = "short".into(),
                |e| matches!(e, OpenError::Credentials(_)),
            ),
            (
                |m| m.remote_fingerprint = "sha-256 AB".into(),
                |e| *e == OpenError::Fingerprint,
            ),
            (|m| m.channels = 65, |e| *e == OpenError::Channels(65)),
        ];
        for (mutate, expect) in cases {
            let mut m = valid();
            mutate(&mut m);
            let e = OpenRequest::decode(&m.encode_to_vec()).unwrap_err();
            assert!(expect(&e), "{e:?}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = OpenRequest::decode(&bytes);
        }
    }
}

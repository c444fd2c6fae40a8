//! Bearer secrets: registration tokens, conflux tokens and the admin token.
//!
//! A token reads `<prefix><id>.<secret>`: the id (16 hex digits) finds the stored row, the
//! secret (32 random bytes, base64url) proves possession. Only SHA-256 of the whole token is
//! stored, and the comparison runs in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Random bytes in a token's secret part.
const SECRET_LEN: usize = 32;
/// Random bytes in a token's id.
const ID_LEN: usize = 8;

/// Which credential a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// One-time (or few-times) registration token made by an admin for a realm.
    Registration,
    /// A node's long-lived credential, issued at its first registration.
    Conflux,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Registration => "cfxr_",
            Self::Conflux => "cfxn_",
        }
    }
}

/// A freshly made token: the plain text is shown once, the hash is stored.
pub struct IssuedToken {
    /// Public id, the store's lookup key.
    pub id: String,
    /// The whole token, for the client only.
    pub plain: Zeroizing<String>,
    /// SHA-256 of `plain`.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is unavailable");
    b
}

/// Makes a new token of `kind`.
pub fn issue(kind: TokenKind) -> IssuedToken {
    let id = hex::encode(random::<ID_LEN>());
    let secret = Zeroizing::new(random::<SECRET_LEN>());
    let plain = Zeroizing::new(format!(
        "{}{id}.{}",
        kind.prefix(),
        URL_SAFE_NO_PAD.encode(secret.as_slice())
    ));
    let hash = Sha256::digest(plain.as_bytes()).into();
    IssuedToken { id, plain, hash }
}

/// A token as a client presented it, split but not yet checked.
#[derive(Clone, Copy)]
pub struct PresentedToken<'a> {
    id: &'a str,
    whole: &'a str,
}

impl std::fmt::Debug for PresentedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'a> PresentedToken<'a> {
    /// Splits a presented token of `kind`; `None` if it has the wrong shape.
    pub fn parse(kind: TokenKind, s: &'a str) -> Option<Self> {
        let rest = s.strip_prefix(kind.prefix())?;
        let (id, secret) = rest.split_once('.')?;
        let id_ok = id.len() == 2 * ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = secret.len() == URL_SAFE_NO_PAD.encode([0u8; SECRET_LEN]).len();
        (id_ok && secret_ok).then_some(Self { id, whole: s })
    }

    /// The public id.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// Whether the token hashes to `stored` (constant time).
    pub fn matches(&self, stored: &[u8]) -> bool {
        let h: [u8; 32] = Sha256::digest(self.whole.as_bytes()).into();
        h.ct_eq(stored).into()
    }
}

/// The admin token, held as its hash.
#[derive(Clone)]
pub struct AdminToken {
    hash: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Shortest admin token accepted, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl AdminToken {
    /// Wraps the configured admin token; it must be at least [`MIN_ADMIN_TOKEN_LEN`] bytes.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(format!(
                "the admin token must be at least {MIN_ADMIN_TOKEN_LEN} bytes"
            ));
        }
        Ok(Self {
            hash: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the admin token; compares hashes so neither content nor
    /// length leaks through timing.
    pub fn check(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.ct_eq(&self.hash).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_parses_and_matches_only_its_hash() {
        let t = issue(TokenKind::Registration);
        let p = PresentedToken::parse(TokenKind::Registration, &t.plain).unwrap();
        assert_eq!(p.id(), t.id);
        assert!(p.matches(&t.hash));
        let other = issue(TokenKind::Registration);
        assert!(!p.matches(&other.hash));
        // A token of one kind is never accepted as the other.
        assert!(PresentedToken::parse(TokenKind::Conflux, &t.plain).is_none());
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let t = issue(TokenKind::Conflux);
        for bad in [
            "",
            "cfxn_",
            "cfxn_abc.def",
            &t.plain[..t.plain.len() - 1],
            &t.plain.replace('.', ""),
            &format!("{}x", t.plain.as_str()),
        ] {
            assert!(
                PresentedToken::parse(TokenKind::Conflux, bad).is_none(),
                "{bad}"
            );
        }
        // A forged secret of the right shape parses but does not match.
        let mut forged = t.plain.to_string();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let p = PresentedToken::parse(TokenKind::Conflux, &forged).unwrap();
        assert!(!p.matches(&t.hash));
    }

    #[test]
    fn admin_token_check() {
        assert!(AdminToken::new("short").is_err());
        let a = AdminToken::new("correct horse battery staple").unwrap();
        assert!(a.check("correct horse battery staple"));
        assert!(!a.check("correct horse battery stapl"));
        assert!(!a.check(""));
        assert_eq!(format!("{a:?}"), "AdminToken(..)");
    }
}

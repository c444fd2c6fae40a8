//! Registration tokens: bound to a realm, with an expiry and a use count, stored hashed.

use rusqlite::{Connection, OptionalExtension, Row, params};

use conflux_shared::taint::TaintSet;

use super::realms::{taints_from_column, taints_to_column};
use super::{from_json, to_json};
use crate::guardian::secret::PresentedToken;

/// A registration token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Public id.
    pub id: String,
    /// SHA-256 of the whole token.
    pub hash: [u8; 32],
    /// Realm the token registers into.
    pub realm: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// How many registrations it allows.
    pub uses: u32,
    /// The taints its nodes may carry (and get by default); `None`: any.
    pub taints: Option<TaintSet>,
    /// Region given to its nodes when they name none.
    pub region: Option<String>,
    /// Owner recorded in its nodes' certificates.
    pub owner: String,
    /// Its nodes may be portals.
    pub portal: bool,
    /// Prefixes its nodes may route (making them gateways).
    pub routed_prefixes: Vec<String>,
    /// Creation time, unix seconds.
    pub created_at: u64,
}

/// A stored registration token (without its hash).
#[derive(Debug, Clone)]
pub struct TokenRow {
    /// Public id.
    pub id: String,
    /// Realm the token registers into.
    pub realm: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// Registrations left.
    pub uses_left: u32,
    /// The taints its nodes may carry; `None`: any.
    pub taints: Option<TaintSet>,
    /// Default region of its nodes.
    pub region: Option<String>,
    /// Owner of its nodes.
    pub owner: String,
    /// Its nodes may be portals.
    pub portal: bool,
    /// Prefixes its nodes may route.
    pub routed_prefixes: Vec<String>,
}

/// The outcome of trying to spend one use of a token.
#[derive(Debug)]
pub enum TokenUse {
    /// One use was spent; here is the token as it was.
    Spent(TokenRow),
    /// No such id, or the secret does not match.
    Invalid,
    /// Past its expiry.
    Expired,
    /// No uses left.
    UsedUp,
}

impl NewToken {
    /// Inserts the token.
    pub fn insert(&self, db: &Connection) -> rusqlite::Result<()> {
        db.execute(
            "INSERT INTO registration_tokens (id, realm, secret_hash, expires_at, uses_left,
                 taints, region, owner, portal, routed_prefixes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                self.id,
                self.realm,
                self.hash.as_slice(),
                self.expires_at,
                self.uses,
                taints_to_column(self.taints.as_ref()),
                self.region,
                self.owner,
                self.portal,
                to_json(&self.routed_prefixes),
                self.created_at,
            ],
        )?;
        Ok(())
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(TokenRow, Vec<u8>)> {
    let row = TokenRow {
        id: r.get(0)?,
        realm: r.get(1)?,
        expires_at: r.get(3)?,
        uses_left: r.get(4)?,
        taints: taints_from_column(r.get(5)?)?,
        region: r.get(6)?,
        owner: r.get(7)?,
        portal: r.get(8)?,
        routed_prefixes: from_json(&r.get::<_, String>(9)?)?,
    };
    Ok((row, r.get(2)?))
}

impl TokenRow {
    /// Checks `token` and, if it is good, spends one use. Run it inside the transaction
    /// that stores the node, so a failed registration gives the use back.
    pub fn spend(
        db: &Connection,
        token: &PresentedToken<'_>,
        now: u64,
    ) -> rusqlite::Result<TokenUse> {
        let found = db
            .query_row(
                "SELECT id, realm, secret_hash, expires_at, uses_left, taints, region, owner,
                        portal, routed_prefixes
                 FROM registration_tokens WHERE id = ?1",
                [token.id()],
                from_row,
            )
            .optional()?;
        let Some((row, hash)) = found else {
            return Ok(TokenUse::Invalid);
        };
        if !token.matches(&hash) {
            return Ok(TokenUse::Invalid);
        }
        if now >= row.expires_at {
            return Ok(TokenUse::Expired);
        }
        if row.uses_left == 0 {
            return Ok(TokenUse::UsedUp);
        }
        db.execute(
            "UPDATE registration_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            [&row.id],
        )?;
        Ok(TokenUse::Spent(row))
    }

    /// Uses left of the token `id`, for tests and listings.
    pub fn uses_left(db: &Connection, id: &str) -> rusqlite::Result<Option<u32>> {
        db.query_row(
            "SELECT uses_left FROM registration_tokens WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
    }
}

//! Realm rows: name, overlay subnet, the realm's NATS account key, OAuth policy.

use rusqlite::{Connection, OptionalExtension, Row, params};
use zeroize::Zeroizing;

use conflux_shared::taint::TaintSet;

use super::{from_json, to_json};

/// A realm as stored.
#[derive(Clone)]
pub struct RealmRow {
    /// Realm name.
    pub name: String,
    /// Overlay subnet in CIDR notation.
    pub subnet: String,
    /// IPv6 overlay subnet beside an IPv4 `subnet`, in CIDR notation.
    pub subnet6: Option<String>,
    /// Public key of the realm's NATS account.
    pub account_public_key: String,
    /// Seed of the realm's NATS account key (signs user JWTs).
    pub account_seed: Zeroizing<String>,
    /// Taints OAuth-registered nodes may carry; `None`: OAuth registration is refused.
    pub oauth_taints: Option<TaintSet>,
    /// Creation time, unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for RealmRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealmRow")
            .field("name", &self.name)
            .field("subnet", &self.subnet)
            .field("subnet6", &self.subnet6)
            .field("account_public_key", &self.account_public_key)
            .field("oauth_taints", &self.oauth_taints)
            .finish_non_exhaustive()
    }
}

pub(super) fn taints_to_column(t: Option<&TaintSet>) -> Option<String> {
    t.map(|t| to_json(&t.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>()))
}

pub(super) fn taints_from_column(s: Option<String>) -> rusqlite::Result<Option<TaintSet>> {
    s.map(|s| taint_set_from_json(&s)).transpose()
}

pub(super) fn taint_set_from_json(s: &str) -> rusqlite::Result<TaintSet> {
    let names = from_json(s)?;
    TaintSet::parse(names.iter().map(String::as_str)).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

const COLUMNS: &str =
    "name, subnet, account_public_key, account_seed, oauth_taints, created_at, subnet6";

fn from_row(r: &Row<'_>) -> rusqlite::Result<RealmRow> {
    Ok(RealmRow {
        name: r.get(0)?,
        subnet: r.get(1)?,
        account_public_key: r.get(2)?,
        account_seed: Zeroizing::new(r.get(3)?),
        oauth_taints: taints_from_column(r.get(4)?)?,
        created_at: r.get(5)?,
        subnet6: r.get(6)?,
    })
}

impl RealmRow {
    /// Inserts the realm; fails with a uniqueness violation if the name exists.
    pub fn insert(&self, db: &Connection) -> rusqlite::Result<()> {
        db.execute(
            &format!("INSERT INTO realms ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                self.name,
                self.subnet,
                self.account_public_key,
                self.account_seed.as_str(),
                taints_to_column(self.oauth_taints.as_ref()),
                self.created_at,
                self.subnet6,
            ],
        )?;
        Ok(())
    }

    /// The realm named `name`.
    pub fn get(db: &Connection, name: &str) -> rusqlite::Result<Option<Self>> {
        db.query_row(
            &format!("SELECT {COLUMNS} FROM realms WHERE name = ?1"),
            [name],
            from_row,
        )
        .optional()
    }

    /// Every realm, by name.
    pub fn list(db: &Connection) -> rusqlite::Result<Vec<Self>> {
        db.prepare(&format!("SELECT {COLUMNS} FROM realms ORDER BY name"))?
            .query_map([], from_row)?
            .collect()
    }

    /// Deletes the realm with its tokens, nodes and revocations; `false` if it did not exist.
    pub fn delete(db: &Connection, name: &str) -> rusqlite::Result<bool> {
        Ok(db.execute("DELETE FROM realms WHERE name = ?1", [name])? == 1)
    }

    /// NATS user keys revoked in this realm, with their revocation times.
    pub fn revocations(db: &Connection, name: &str) -> rusqlite::Result<Vec<(String, u64)>> {
        db.prepare("SELECT public_key, revoked_at FROM nats_revocations WHERE realm = ?1")?
            .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }
}

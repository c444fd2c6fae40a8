//! Numbered schema migrations. Each runs once, in order, in its own transaction; the
//! highest applied number is kept in `schema_version`. Never edit a released migration:
//! add the next one.

use rusqlite::{Connection, OptionalExtension};

const MIGRATIONS: &[&str] = &[
    // 1: realms, registration tokens, nodes, NATS users and revocations.
    r"
    CREATE TABLE realms (
        name               TEXT PRIMARY KEY,
        subnet             TEXT NOT NULL,
        account_public_key TEXT NOT NULL UNIQUE,
        account_seed       TEXT NOT NULL,
        oauth_taints       TEXT,
        created_at         INTEGER NOT NULL
    );
    CREATE TABLE registration_tokens (
        id              TEXT PRIMARY KEY,
        realm           TEXT NOT NULL REFERENCES realms(name) ON DELETE CASCADE,
        secret_hash     BLOB NOT NULL,
        expires_at      INTEGER NOT NULL,
        uses_left       INTEGER NOT NULL,
        taints          TEXT,
        region          TEXT,
        owner           TEXT NOT NULL,
        portal          INTEGER NOT NULL,
        routed_prefixes TEXT NOT NULL,
        created_at      INTEGER NOT NULL
    );
    CREATE TABLE nodes (
        node_id           TEXT PRIMARY KEY,
        realm             TEXT NOT NULL REFERENCES realms(name) ON DELETE CASCADE,
        token_id          TEXT NOT NULL UNIQUE,
        token_hash        BLOB NOT NULL,
        overlay_address   TEXT NOT NULL,
        owner             TEXT NOT NULL,
        region            TEXT NOT NULL,
        taints            TEXT NOT NULL,
        allowed_taints    TEXT,
        portal            INTEGER NOT NULL,
        routed_prefixes   TEXT NOT NULL,
        ml_dsa_public_key BLOB NOT NULL,
        ml_kem_public_key BLOB NOT NULL,
        certificate       BLOB NOT NULL,
        nats_user         TEXT,
        revoked_at        INTEGER,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        UNIQUE (realm, overlay_address)
    );
    CREATE TABLE nats_users (
        public_key TEXT PRIMARY KEY,
        node_id    TEXT NOT NULL REFERENCES nodes(node_id) ON DELETE CASCADE,
        issued_at  INTEGER NOT NULL
    );
    CREATE INDEX nats_users_by_node ON nats_users(node_id);
    CREATE TABLE nats_revocations (
        realm      TEXT NOT NULL REFERENCES realms(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL,
        revoked_at INTEGER NOT NULL,
        PRIMARY KEY (realm, public_key)
    );
    ",
    // 2: conflux tokens expire; existing ones get a year from their node's last change.
    r"
    ALTER TABLE nodes ADD COLUMN token_expires_at INTEGER NOT NULL DEFAULT 0;
    UPDATE nodes SET token_expires_at = updated_at + 31536000;
    ",
    // 3: an optional IPv6 overlay subnet per realm, and each node's address in it.
    r"
    ALTER TABLE realms ADD COLUMN subnet6 TEXT;
    ALTER TABLE nodes ADD COLUMN overlay_address6 TEXT;
    CREATE UNIQUE INDEX nodes_address6 ON nodes(realm, overlay_address6);
    ",
];

/// Brings the schema up to the latest version.
pub(super) fn run(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

/// The schema version a fully migrated store has.
#[cfg(test)]
pub(super) fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_record_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        for _ in 0..2 {
            let mut conn = Connection::open(&path).unwrap();
            run(&mut conn).unwrap();
            let versions: Vec<i64> = conn
                .prepare("SELECT version FROM schema_version ORDER BY version")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(versions, (1..=latest()).collect::<Vec<_>>());
        }
    }
}

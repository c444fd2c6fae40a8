//! The realm directory: one `DirectoryRecord` per node in the realm's JetStream KV bucket
//! (key = node id hex), written only by Guardian; and revocation announcements on
//! `conflux.<realm>.revoked`.

use prost::Message as _;

use conflux_shared::cert::decode_signed;
use conflux_shared::id::NodeId;
use conflux_shared::proto::{DirectoryRecord, Revocation};

use super::natsauth::{RealmConn, bounded, subject_prefix};

/// Writes `node`'s record: its current signed certificate and whether it is revoked.
pub async fn put(
    conn: &RealmConn,
    node: &NodeId,
    signed_certificate: &[u8],
    revoked: bool,
    now: u64,
) -> anyhow::Result<()> {
    let record = DirectoryRecord {
        certificate: Some(decode_signed(signed_certificate)?),
        revoked,
        updated_at: now,
    };
    bounded(
        "directory write",
        conn.directory
            .put(node.to_hex(), record.encode_to_vec().into()),
    )
    .await?;
    Ok(())
}

/// Announces `node`'s revocation to the realm.
pub async fn announce_revocation(
    conn: &RealmConn,
    realm: &str,
    node: &NodeId,
    now: u64,
) -> anyhow::Result<()> {
    let msg = Revocation {
        node_id: node.0.to_vec(),
        revoked_at: now,
    };
    let subject = format!("{}.revoked", subject_prefix(realm));
    bounded(
        "revocation",
        conn.client.publish(subject, msg.encode_to_vec().into()),
    )
    .await?;
    bounded("revocation flush", conn.client.flush()).await?;
    Ok(())
}

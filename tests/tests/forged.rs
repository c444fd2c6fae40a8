//! A node with a forged certificate is ignored: its presence and handshakes are dropped
//! and counted by every node, never answered, and it never appears as a peer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use conflux_controlplane::node::presence;
use conflux_shared::cert::{self, CERT_CONTEXT};
use conflux_shared::crypto::identity::{NodeIdentity, SigningKey};
use conflux_shared::id::NodeId;
use conflux_shared::proto::{HandshakeRequest, NodeCertificate, SignedCertificate};
use conflux_tests::cluster::{Cluster, STARTUP, paired};
use conflux_tests::nats_client::Independent;
use conflux_tests::wait;
use prost::Message;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn forged_certificates_are_ignored() {
    let c = Cluster::start();
    c.create_realm("lab", "10.81.0.0/24");
    let a = c.node("a", "lab", &["a"]);
    let b = c.node("b", "lab", &["a"]);
    wait::until_true("the real pair", STARTUP, || paired(&a, &b));

    // The rogue holds real credentials for the realm's NATS account (it registered), but
    // presents certificates Guardian never issued.
    let rogue = NodeIdentity::generate();
    let reg = c.register("lab", &rogue, &["x"]);
    let rogue_id = NodeId::from_hex(&reg.node_id).unwrap();
    let real = cert::decode_signed(&B64.decode(&reg.certificate).unwrap()).unwrap();
    let real_body = NodeCertificate::decode(real.certificate.as_slice()).unwrap();
    let fake_guardian = SigningKey::generate();
    let real_key_id = real.key_id.clone();

    // 1. Signed by a self-made key: unknown to the nodes.
    let unknown = cert::sign(
        NodeCertificate {
            taints: vec!["a".into()],
            ..real_body.clone()
        },
        &fake_guardian,
    );
    // 2. Signed by a self-made key that claims the real key's id: bad signature.
    let mut body = real_body.clone();
    body.taints = vec!["a".into()];
    body.issuer_key_id = real_key_id.clone();
    let bytes = body.encode_to_vec();
    let claimed = SignedCertificate {
        signature: fake_guardian.sign(CERT_CONTEXT, &bytes).as_bytes().to_vec(),
        certificate: bytes,
        key_id: real_key_id,
    };
    // 3. The rogue's real certificate with its taints edited after signing.
    let edited = SignedCertificate {
        certificate: NodeCertificate {
            taints: vec!["a".into()],
            ..real_body
        }
        .encode_to_vec(),
        ..real.clone()
    };

    let before: Vec<_> = [&a, &b].iter().map(|n| n.status()).collect();
    let a_id = a.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let no_reply = rt.block_on(async {
        let spy = Independent::connect(&c.nats_url(), &reg.nats).await;
        let mut ts = unix_ms();
        for forged in [&unknown, &claimed, &edited] {
            ts += 1;
            let p = presence::sign(&rogue, rogue_id, forged, ts).encode_to_vec();
            spy.client
                .publish("conflux.lab.presence", p.into())
                .await
                .unwrap();
        }
        // 4. Node a's real certificate, announced under the rogue's signature.
        let mut sub = spy.client.subscribe("conflux.lab.presence").await.unwrap();
        let a_cert = loop {
            let m = futures::StreamExt::next(&mut sub).await.unwrap();
            let sp = presence::decode(&m.payload).unwrap();
            let (id, p) = presence::claimed_node(&sp).unwrap();
            if id.to_hex() == a_id {
                break p.certificate.unwrap();
            }
        };
        let stolen = presence::sign(
            &rogue,
            NodeId::from_hex(&a_id).unwrap(),
            &a_cert,
            unix_ms() + 5,
        );
        spy.client
            .publish("conflux.lab.presence", stolen.encode_to_vec().into())
            .await
            .unwrap();
        // 5. A handshake request under a forged certificate: no answer at all.
        let req = HandshakeRequest {
            presence: Some(presence::sign(&rogue, rogue_id, &claimed, unix_ms() + 10)),
            init: vec![1, 1, 0, 0],
            inbound_stream_id: Vec::new(),
            ..HandshakeRequest::default()
        };
        let subject = format!("conflux.lab.node.{a_id}.hs");
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            spy.client.request(subject, req.encode_to_vec().into()),
        )
        .await;
        spy.client.flush().await.unwrap();
        !matches!(r, Ok(Ok(_)))
    });
    assert!(no_reply, "a forged handshake gets no reply");

    let rogue_hex = rogue_id.to_hex();
    // a also saw the forged handshake request (bad certificate); b only the presences.
    for (n, before, bad_certs) in [(&a, &before[0], 3), (&b, &before[1], 2)] {
        wait::until_true("the forgeries to be counted", STARTUP, || {
            let st = n.status();
            st.ignored("unknown_key") > before.ignored("unknown_key")
                && st.ignored("bad_certificate") >= before.ignored("bad_certificate") + bad_certs
        });
        println!(
            "MEASURE {} dropped (counters): {:?}",
            n.name,
            n.status().ignored
        );
        let peers = n.ctl.peers();
        assert!(
            peers.iter().all(|p| p.node_id != rogue_hex),
            "{} ignores the rogue",
            n.name
        );
        assert_eq!(peers.len(), 1);
    }
    // a's own certificate under the rogue's signature fails the signature check at b.
    wait::until_true("bad_signature to be counted at b", STARTUP, || {
        b.status().ignored("bad_signature") > before[1].ignored("bad_signature")
    });
    assert!(paired(&a, &b), "the real pair is untouched");
}

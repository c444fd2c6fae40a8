//! Realms are NATS accounts: a node of another realm never sees the first realm, and a
//! client holding a node's credentials is refused the other realm's subjects by nats-server.

use std::time::Duration;

use conflux_shared::crypto::identity::NodeIdentity;
use conflux_tests::cluster::{Cluster, STARTUP, paired};
use conflux_tests::nats_client::Independent;
use conflux_tests::wait;
use futures::StreamExt;

#[test]
fn other_realm_is_denied_by_nats_server() {
    let c = Cluster::start();
    c.create_realm("lab", "10.79.0.0/24");
    c.create_realm("other", "10.80.0.0/24");
    let a = c.node("a", "lab", &["a"]);
    let b = c.node("b", "lab", &["a"]);
    let x = c.node("x", "other", &["a"]);
    wait::until_true("the lab pair", STARTUP, || paired(&a, &b));
    assert_eq!(x.status().realm, "other");
    wait::stays("realms to stay apart", Duration::from_secs(3), || {
        x.ctl.peers().is_empty() && a.ctl.peers().len() == 1 && b.ctl.peers().len() == 1
    });
    // Nothing of the other realm even reached the lab nodes.
    assert_eq!(a.status().ignored("wrong_realm"), 0);

    // Credentials of a node in "other", used by an independent client.
    let other = c.register("other", &NodeIdentity::generate(), &["a"]);
    let lab = c.register("lab", &NodeIdentity::generate(), &["a"]);
    let a_id = a.id();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let spy = Independent::connect(&c.nats_url(), &other.nats).await;

        // Its own realm works: it hears x's presence.
        let mut own = spy
            .client
            .subscribe("conflux.other.presence")
            .await
            .unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(5), own.next()).await;
        assert!(
            matches!(heard, Ok(Some(_))),
            "the client hears its own realm"
        );

        // The lab realm's subjects are refused by nats-server.
        for subject in ["conflux.lab.presence", "conflux.lab.>"] {
            let _sub = spy.client.subscribe(subject).await.unwrap();
            assert!(
                spy.denied(subject, Duration::from_secs(5)).await,
                "subscribing to {subject} must be a permissions violation; got {:?}",
                spy.errors()
            );
        }
        let hs = format!("conflux.lab.node.{a_id}.hs");
        spy.client
            .publish(hs.clone(), "hello".into())
            .await
            .unwrap();
        spy.client.flush().await.unwrap();
        assert!(
            spy.denied(&hs, Duration::from_secs(5)).await,
            "publishing to {hs} must be a permissions violation; got {:?}",
            spy.errors()
        );

        // And the other way round: lab credentials are refused "other"'s subjects.
        let lab_spy = Independent::connect(&c.nats_url(), &lab.nats).await;
        let _sub = lab_spy
            .client
            .subscribe("conflux.other.presence")
            .await
            .unwrap();
        assert!(
            lab_spy
                .denied("conflux.other.presence", Duration::from_secs(5))
                .await,
            "got {:?}",
            lab_spy.errors()
        );
    });
    // The lab pair never noticed.
    assert!(paired(&a, &b));
}

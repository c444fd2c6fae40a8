//! Two peers in memory: node A sets up a stream to node B.

use super::*;
use crate::crypto::identity::SIGNATURE_LEN;
use crate::taint::{Realm, TaintSet};
use crate::wire::handshake::{ACCEPT_MAX_LEN, INIT_MAX_LEN, InitRepr};

const NOW: u64 = 1_700_000_000;

struct Node {
    id: NodeId,
    identity: NodeIdentity,
    membership: Membership,
}

impl Node {
    fn new(realm: &str, taints: &[&str]) -> Self {
        Self {
            id: NodeId::random(),
            identity: NodeIdentity::generate(),
            membership: membership(realm, taints),
        }
    }

    /// Another key pair claiming this node's id.
    fn impostor(&self) -> Self {
        Self {
            id: self.id,
            identity: NodeIdentity::generate(),
            membership: self.membership.clone(),
        }
    }

    fn local(&self) -> Local<'_> {
        Local {
            id: self.id,
            identity: &self.identity,
            membership: &self.membership,
        }
    }

    /// How another node sees this one through its certificate.
    fn cert(&self) -> Peer<'_> {
        Peer {
            id: self.id,
            public: self.identity.public(),
            membership: &self.membership,
        }
    }
}

fn membership(realm: &str, taints: &[&str]) -> Membership {
    Membership {
        realm: Realm::new(realm).unwrap(),
        taints: TaintSet::parse(taints.iter().copied()).unwrap(),
    }
}

/// A → B, each with its own clock.
struct Pair {
    a: Node,
    b: Node,
    config: HandshakeConfig,
    responder: Responder,
    a_now: u64,
    b_now: u64,
}

impl Pair {
    fn new() -> Self {
        Self::with(
            Node::new("home", &["dev"]),
            Node::new("home", &["dev", "stage"]),
        )
    }

    fn with(a: Node, b: Node) -> Self {
        let config = HandshakeConfig::default();
        Self {
            a,
            b,
            config,
            responder: Responder::new(config),
            a_now: NOW,
            b_now: NOW,
        }
    }

    fn init(&self) -> (Initiator, Vec<u8>) {
        self.try_init().unwrap()
    }

    fn try_init(&self) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let mut out = vec![0; INIT_MAX_LEN];
        let (initiator, n) = Initiator::start(
            &self.config,
            &self.a.local(),
            &self.b.cert(),
            StreamId::random(),
            self.a_now,
            &mut out,
        )?;
        out.truncate(n);
        Ok((initiator, out))
    }

    fn respond(&mut self, init: &[u8]) -> Result<(Established, Vec<u8>), HandshakeError> {
        let mut out = vec![0; ACCEPT_MAX_LEN];
        let (established, n) = self.responder.handle_init(
            &self.b.local(),
            &self.a.cert(),
            init,
            self.b_now,
            &mut out,
        )?;
        out.truncate(n);
        Ok((established, out))
    }

    fn finish(&self, initiator: &Initiator, accept: &[u8]) -> Result<Established, HandshakeError> {
        initiator.handle_accept(&self.a.local(), &self.b.cert(), accept, self.a_now)
    }

    /// A full handshake; returns both sides' view of the stream.
    fn run(&mut self) -> Result<(Established, Established), HandshakeError> {
        let (initiator, init) = self.try_init()?;
        let (at_b, accept) = self.respond(&init)?;
        let at_a = self.finish(&initiator, &accept)?;
        Ok((at_a, at_b))
    }
}

#[test]
fn both_sides_derive_the_same_key() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let (at_b, accept) = p.respond(&init).unwrap();
    let at_a = p.finish(&initiator, &accept).unwrap();
    assert_eq!(at_a.key, at_b.key);
    assert_ne!(at_a.key.key, [0; 32]);
    for e in [&at_a, &at_b] {
        assert_eq!(e.stream_id, initiator.stream_id());
        assert_eq!((e.initiator, e.responder), (p.a.id, p.b.id));
    }

    let (again_a, again_b) = p.run().unwrap();
    assert_eq!(again_a.key, again_b.key);
    assert_ne!(again_a.key, at_a.key, "each handshake yields a fresh key");

    // The reverse stream, set up by B, has its own key.
    let mut reverse = Pair::with(p.b, p.a);
    let (back_b, back_a) = reverse.run().unwrap();
    assert_eq!(back_b.key, back_a.key);
    assert_ne!(back_b.key, at_a.key);
}

#[test]
fn init_from_an_uncertified_key_is_wrong_signer() {
    let mut p = Pair::new();
    let impostor = p.a.impostor();
    let impostor_fp = *impostor.identity.fingerprint();
    let real_a = std::mem::replace(&mut p.a, impostor);
    let (_, init) = p.init();
    p.a = real_a;
    assert_eq!(
        p.respond(&init).unwrap_err(),
        HandshakeError::WrongSigner {
            want: *p.a.identity.fingerprint(),
            got: impostor_fp,
        }
    );
    assert_eq!(p.responder.replay_cache_len(), 0);
}

#[test]
fn accept_from_an_uncertified_key_is_wrong_signer() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let impostor = p.b.impostor();
    let real_b = std::mem::replace(&mut p.b, impostor);
    let (_, accept) = p.respond(&init).unwrap();
    let impostor_fp = *p.b.identity.fingerprint();
    p.b = real_b;
    assert_eq!(
        p.finish(&initiator, &accept).unwrap_err(),
        HandshakeError::WrongSigner {
            want: *p.b.identity.fingerprint(),
            got: impostor_fp,
        }
    );
}

#[test]
fn signature_by_another_key_under_the_peers_fingerprint_is_bad_signature() {
    let mut p = Pair::new();
    let forger = NodeIdentity::generate();
    let (ct, _) = p.b.identity.public().encapsulate();
    let repr = InitRepr {
        stream_id: StreamId::random(),
        initiator: p.a.id,
        responder: p.b.id,
        nonce: [7; 32],
        expires: NOW + 10,
        fingerprint: p.a.identity.fingerprint().0,
        ciphertext: ct.as_array(),
        membership: &p.a.membership,
    };
    let mut buf = vec![0; INIT_MAX_LEN];
    let unsigned = repr.emit(&mut buf).unwrap();
    let sig = forger.sign(INIT_CONTEXT, unsigned.signed_part());
    let n = unsigned.finish(sig.as_bytes()).unwrap();
    assert_eq!(
        p.respond(&buf[..n]).unwrap_err(),
        HandshakeError::BadSignature
    );
    // An accept signature replayed as an init signature fails too: contexts differ.
    let mut p = Pair::new();
    let (_, init) = p.init();
    let signed_len = init.len() - SIGNATURE_LEN;
    let mut swapped = init.clone();
    let accept_sig = p.a.identity.sign(ACCEPT_CONTEXT, &init[..signed_len]);
    swapped[signed_len..].copy_from_slice(accept_sig.as_bytes());
    assert_eq!(
        p.respond(&swapped).unwrap_err(),
        HandshakeError::BadSignature
    );
}

/// What flipping one bit at `offset` of the signed part may yield, by field.
fn expected_for_init(offset: usize, e: &HandshakeError) -> bool {
    use HandshakeError as E;
    match offset {
        0 => matches!(e, E::Malformed(WireError::Version(_))),
        1 => matches!(e, E::Malformed(WireError::UnknownType(_))),
        2..4 => matches!(e, E::Malformed(WireError::Reserved)),
        4..20 => matches!(e, E::BadSignature), // stream id
        20..36 => matches!(e, E::WrongPeer { .. }), // initiator
        36..52 => matches!(e, E::NotForUs { .. }), // responder
        52..84 => matches!(e, E::BadSignature), // nonce
        84..91 => matches!(e, E::Expired { .. } | E::ExpiryTooFar { .. }),
        91 => matches!(e, E::BadSignature), // expiry off by one second
        92..124 => matches!(e, E::WrongSigner { .. }), // fingerprint
        124..1212 => matches!(e, E::BadSignature), // KEM ciphertext
        _ => matches!(e, E::BadSignature | E::Malformed(_)), // realm and taints
    }
}

#[test]
fn any_flipped_bit_in_the_signed_init_is_refused() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let signed_len = init.len() - SIGNATURE_LEN;
    for offset in 0..signed_len {
        let mut bad = init.clone();
        bad[offset] ^= 0x01;
        let e = p.respond(&bad).expect_err("tampered init accepted");
        assert!(expected_for_init(offset, &e), "offset {offset}: {e:?}");
    }
    for offset in [signed_len, init.len() - 1] {
        let mut bad = init.clone();
        bad[offset] ^= 0x01;
        assert_eq!(p.respond(&bad).unwrap_err(), HandshakeError::BadSignature);
    }
    // No tampered copy used up the nonce: the genuine init still goes through.
    assert_eq!(p.responder.replay_cache_len(), 0);
    let (at_b, accept) = p.respond(&init).unwrap();
    assert_eq!(p.finish(&initiator, &accept).unwrap().key, at_b.key);
}

fn expected_for_accept(offset: usize, e: &HandshakeError) -> bool {
    use HandshakeError as E;
    match offset {
        0 => matches!(e, E::Malformed(WireError::Version(_))),
        1 => matches!(e, E::Malformed(WireError::UnknownType(_))),
        2..4 => matches!(e, E::Malformed(WireError::Reserved)),
        4..20 => matches!(e, E::NotOurInit),        // stream id
        20..36 => matches!(e, E::NotForUs { .. }),  // initiator
        36..52 => matches!(e, E::WrongPeer { .. }), // responder
        52..84 => matches!(e, E::BadSignature),     // responder nonce
        84..116 => matches!(e, E::NotOurInit),      // init hash
        116..123 => matches!(e, E::Expired { .. } | E::ExpiryTooFar { .. }),
        123 => matches!(e, E::BadSignature),
        124..156 => matches!(e, E::WrongSigner { .. }),
        _ => matches!(e, E::BadSignature | E::Malformed(_)),
    }
}

#[test]
fn any_flipped_bit_in_the_signed_accept_is_refused() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let (at_b, accept) = p.respond(&init).unwrap();
    let signed_len = accept.len() - SIGNATURE_LEN;
    for offset in 0..accept.len() {
        let mut bad = accept.clone();
        bad[offset] ^= 0x01;
        let e = p
            .finish(&initiator, &bad)
            .expect_err("tampered accept taken");
        let ok = if offset < signed_len {
            expected_for_accept(offset, &e)
        } else {
            e == HandshakeError::BadSignature
        };
        assert!(ok, "offset {offset}: {e:?}");
    }
    // Forged accepts did not cancel the handshake.
    assert_eq!(p.finish(&initiator, &accept).unwrap().key, at_b.key);
}

#[test]
fn replayed_init_is_refused_until_it_expires() {
    let mut p = Pair::new();
    let (_, init) = p.init();
    p.respond(&init).unwrap();
    assert_eq!(p.respond(&init).unwrap_err(), HandshakeError::Replayed);
    p.b_now += 5;
    assert_eq!(p.respond(&init).unwrap_err(), HandshakeError::Replayed);
    // Past expiry and skew, it is refused as expired and its nonce is forgotten.
    p.b_now = NOW + p.config.lifetime + p.config.max_clock_skew + 1;
    assert!(matches!(
        p.respond(&init).unwrap_err(),
        HandshakeError::Expired { .. }
    ));
    p.a_now = p.b_now;
    p.run().unwrap();
    assert_eq!(
        p.responder.replay_cache_len(),
        1,
        "only the fresh init is remembered"
    );
}

#[test]
fn expired_messages_are_refused() {
    let mut p = Pair::new();
    let skew = p.config.max_clock_skew;
    let lifetime = p.config.lifetime;

    // The init arrives late: fine up to its lifetime and the skew allowance, then expired.
    let (initiator, init) = p.init();
    p.b_now = NOW + lifetime + skew;
    let (at_b, accept) = p.respond(&init).unwrap();
    p.a_now = p.b_now;
    assert_eq!(p.finish(&initiator, &accept).unwrap().key, at_b.key);
    p.a_now = NOW;
    p.b_now = NOW + lifetime + skew + 1;
    let (_, init) = p.init();
    assert_eq!(
        p.respond(&init).unwrap_err(),
        HandshakeError::Expired {
            expires: NOW + lifetime,
            now: NOW + lifetime + skew + 1
        }
    );

    // The initiator's clock is ahead: fine up to the skew, then the expiry is too far out.
    p.b_now = NOW;
    p.a_now = NOW + skew;
    p.run().unwrap();
    p.a_now = NOW + skew + 1;
    let (_, init) = p.init();
    assert_eq!(
        p.respond(&init).unwrap_err(),
        HandshakeError::ExpiryTooFar {
            expires: NOW + skew + 1 + lifetime,
            now: NOW
        }
    );

    // The accept arrives after it (and the init) expired on the initiator's clock.
    p.a_now = NOW;
    let (initiator, init) = p.init();
    let (_, accept) = p.respond(&init).unwrap();
    p.a_now = NOW + lifetime + skew + 1;
    assert!(matches!(
        p.finish(&initiator, &accept).unwrap_err(),
        HandshakeError::Expired { .. }
    ));
}

#[test]
fn clocks_within_the_skew_agree() {
    let mut p = Pair::new();
    let skew = p.config.max_clock_skew;
    for (a, b) in [(NOW + skew, NOW), (NOW, NOW + skew), (NOW - skew, NOW)] {
        p.a_now = a;
        p.b_now = b;
        let (at_a, at_b) = p.run().unwrap();
        assert_eq!(at_a.key, at_b.key, "A at {a}, B at {b}");
    }
}

#[test]
fn wrong_realm_is_refused() {
    // A claims another realm than B's.
    let mut p = Pair::with(Node::new("away", &["dev"]), Node::new("home", &["dev"]));
    // A's copy of B's certificate is what A checks at start: make it agree with A.
    let b_cert_membership = membership("away", &["dev"]);
    let mut out = vec![0; INIT_MAX_LEN];
    let b_as_a_sees_it = Peer {
        membership: &b_cert_membership,
        ..p.b.cert()
    };
    let (_, n) = Initiator::start(
        &p.config,
        &p.a.local(),
        &b_as_a_sees_it,
        StreamId::random(),
        NOW,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        p.respond(&out[..n]).unwrap_err(),
        HandshakeError::WrongRealm {
            local: Realm::new("home").unwrap(),
            peer: Realm::new("away").unwrap(),
        }
    );
    // With B's real certificate, A refuses to start at all.
    assert!(matches!(
        p.try_init().unwrap_err(),
        HandshakeError::WrongRealm { .. }
    ));
}

#[test]
fn incompatible_taints_are_refused() {
    // A is {prod}, B is {dev}: A refuses to start towards B's certificate.
    let mut p = Pair::with(Node::new("home", &["prod"]), Node::new("home", &["dev"]));
    assert_eq!(
        p.try_init().unwrap_err(),
        HandshakeError::IncompatibleTaints {
            local: TaintSet::parse(["prod"]).unwrap(),
            peer: TaintSet::parse(["dev"]).unwrap(),
        }
    );
    // B's taints changed since A read its certificate: B refuses the init.
    p.b.membership = membership("home", &["prod"]);
    let (initiator, init) = p.init();
    p.b.membership = membership("home", &["dev"]);
    assert!(matches!(
        p.respond(&init).unwrap_err(),
        HandshakeError::IncompatibleTaints { .. }
    ));
    // A's taints changed between init and accept: A refuses the accept.
    p.b.membership = membership("home", &["prod"]);
    let (_, accept) = p.respond(&init).unwrap();
    p.a.membership = membership("home", &["test"]);
    assert!(matches!(
        p.finish(&initiator, &accept).unwrap_err(),
        HandshakeError::IncompatibleTaints { .. }
    ));
    // A node without taints talks to no one.
    let p = Pair::with(Node::new("home", &[]), Node::new("home", &["dev"]));
    assert!(matches!(
        p.try_init().unwrap_err(),
        HandshakeError::IncompatibleTaints { .. }
    ));
}

#[test]
fn malformed_bytes_are_refused() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    assert_eq!(
        p.respond(&[]).unwrap_err(),
        HandshakeError::Malformed(WireError::Truncated { need: 2, have: 0 })
    );
    assert!(matches!(
        p.respond(&init[..init.len() - 1]).unwrap_err(),
        HandshakeError::Malformed(WireError::Truncated { .. })
    ));
    assert_eq!(
        p.respond(&[init.as_slice(), &[0]].concat()).unwrap_err(),
        HandshakeError::Malformed(WireError::Trailing)
    );
    let (_, accept) = p.respond(&init).unwrap();
    assert_eq!(
        p.respond(&accept).unwrap_err(),
        HandshakeError::Malformed(WireError::UnknownType(2))
    );
    assert_eq!(
        p.finish(&initiator, &init).unwrap_err(),
        HandshakeError::Malformed(WireError::UnknownType(1))
    );
    assert!(matches!(
        p.finish(&initiator, &accept[..100]).unwrap_err(),
        HandshakeError::Malformed(WireError::Truncated { .. })
    ));
}

#[test]
fn accept_for_another_init_is_refused() {
    let mut p = Pair::new();
    let (first, init1) = p.init();
    let (second, init2) = p.init();
    let (at_b1, accept1) = p.respond(&init1).unwrap();
    let (_, accept2) = p.respond(&init2).unwrap();
    assert_eq!(
        p.finish(&first, &accept2).unwrap_err(),
        HandshakeError::NotOurInit
    );
    assert_eq!(
        p.finish(&second, &accept1).unwrap_err(),
        HandshakeError::NotOurInit
    );
    assert_eq!(p.finish(&first, &accept1).unwrap().key, at_b1.key);
}

#[test]
fn misaddressed_messages_are_refused() {
    let mut p = Pair::new();
    let c = Node::new("home", &["dev"]);
    // An init for C delivered to B.
    let mut out = vec![0; INIT_MAX_LEN];
    let (_, n) = Initiator::start(
        &p.config,
        &p.a.local(),
        &c.cert(),
        StreamId::random(),
        NOW,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        p.respond(&out[..n]).unwrap_err(),
        HandshakeError::NotForUs {
            want: p.b.id,
            got: c.id
        }
    );
    // B looked up C's certificate, but the init is A's.
    let (_, init) = p.init();
    let mut out = vec![0; ACCEPT_MAX_LEN];
    let e = p
        .responder
        .handle_init(&p.b.local(), &c.cert(), &init, NOW, &mut out)
        .unwrap_err();
    assert_eq!(
        e,
        HandshakeError::WrongPeer {
            want: c.id,
            got: p.a.id
        }
    );
}

#[test]
fn full_replay_cache_refuses_until_nonces_expire() {
    let mut p = Pair::new();
    p.config.replay_capacity = 2;
    p.responder = Responder::new(p.config);
    p.run().unwrap();
    p.run().unwrap();
    assert_eq!(p.run().unwrap_err(), HandshakeError::ReplayCacheFull);
    p.a_now = NOW + p.config.lifetime + p.config.max_clock_skew + 1;
    p.b_now = p.a_now;
    p.run().unwrap();
    assert_eq!(p.responder.replay_cache_len(), 1);
}

#[test]
fn short_output_buffer_leaves_the_init_usable() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let mut small = vec![0; 100];
    let e = p
        .responder
        .handle_init(&p.b.local(), &p.a.cert(), &init, NOW, &mut small)
        .unwrap_err();
    assert!(matches!(
        e,
        HandshakeError::Emit(WireError::Truncated { .. })
    ));
    let (at_b, accept) = p.respond(&init).unwrap();
    assert_eq!(p.finish(&initiator, &accept).unwrap().key, at_b.key);

    let e = Initiator::start(
        &p.config,
        &p.a.local(),
        &p.b.cert(),
        StreamId::random(),
        NOW,
        &mut small,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        HandshakeError::Emit(WireError::Truncated { .. })
    ));
}

#[test]
fn debug_output_hides_secrets() {
    let mut p = Pair::new();
    let (initiator, init) = p.init();
    let (at_b, _) = p.respond(&init).unwrap();
    let shown = format!("{initiator:?} {at_b:?}");
    assert!(shown.contains("StreamKey(<redacted>)"), "{shown}");
    assert!(!shown.contains(&hex::encode(&at_b.key.key[..4])), "{shown}");
    assert!(!shown.contains("shared"), "{shown}");
}

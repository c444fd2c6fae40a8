//! The tokio task that drives a [`Node`]: registration, the NATS client, timers, Guardian
//! calls and the local API.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::{Client, Subscriber};
use conflux_shared::cert::GuardianKey;
use conflux_shared::crypto::identity::NodeIdentity;
use conflux_shared::id::NodeId;
use conflux_shared::proto::SignedCertificate;
use conflux_shared::taint::{Taint, TaintSet};
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc, oneshot};
use tonic::Status;
use tracing::{debug, info, warn};

use super::api::{self, ApiRequest};
use super::config::{Config, Enrollment};
use super::core::{Node, NodeParams, Now, Output};
use super::counters::Ignored;
use super::credentials::Credentials;
use super::nats::{self, ConnEvent, DIRECTORY_BUCKET, subjects};
use super::register::{Credential, GuardianClient, GuardianError, RegisterOptions, Registration};
use crate::ctl::proto;

mod exit;
mod gateway;
mod metrics;
mod overlay;
mod underlay;

/// Longest wait between registration attempts while Guardian is unreachable.
const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(30);

/// Why the control process stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The node has no stored credentials and nothing to register with.
    #[error(
        "no credentials in {0} and no registration token: give --registration-token (or \
         registration_token_file / oauth_jwt_file) for the first start"
    )]
    NoCredential(String),
    /// Guardian refused the registration.
    #[error(transparent)]
    Guardian(#[from] GuardianError),
    /// The credentials file could not be read or written.
    #[error(transparent)]
    Credentials(#[from] super::credentials::CredentialsError),
    /// Guardian's certificate for this node is not acceptable.
    #[error("Guardian issued an unusable certificate: {0}")]
    Certificate(#[from] super::core::OwnCertError),
    /// NATS could not be set up.
    #[error(transparent)]
    Nats(#[from] nats::NatsError),
    /// Subscribing failed.
    #[error("NATS subscription to {subject}: {detail}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// What went wrong.
        detail: String,
    },
    /// The local API socket could not be set up.
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// The NATS client closed for good.
    #[error("the NATS connection closed")]
    NatsClosed,
    /// The data plane could not be started or attached.
    #[error(transparent)]
    DataPlane(#[from] crate::overlay::link::LinkError),
    /// The metrics endpoint could not listen.
    #[error("metrics endpoint {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
}

/// The current time on both clocks.
pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64,
    }
}

/// Registers (retrying while Guardian is unreachable) and stores the credentials.
async fn register(
    cfg: &Config,
    guardian: &GuardianClient,
    identity: &NodeIdentity,
) -> Result<Registration, RunError> {
    let stored = Credentials::load(&cfg.data_dir)?;
    // Taints and flags from the config apply to the first registration; afterwards
    // Guardian's record (which `conflux-ctl taint` changes) is what a restart keeps.
    let first = stored.is_none();
    let opts = RegisterOptions {
        realm: cfg.realm.as_ref().map(|r| r.to_string()),
        requested_address: cfg.requested_address.filter(|_| first),
        region: cfg.region.clone(),
        taints: cfg.taints.clone().filter(|_| first),
        portal: Some(cfg.portal).filter(|_| first),
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let credential = match (&stored, &cfg.enrollment) {
            (Some(c), _) => Credential::ConfluxToken(&c.conflux_token),
            (None, Enrollment::RegistrationToken(t)) => Credential::RegistrationToken(t),
            (None, Enrollment::OAuthJwt(jwt)) => Credential::OAuth {
                jwt,
                realm: cfg.realm.as_ref().map_or("", |r| r.as_str()),
            },
            (None, Enrollment::None) => {
                return Err(RunError::NoCredential(cfg.data_dir.display().to_string()));
            }
        };
        match guardian
            .register(credential, identity.public(), &opts)
            .await
        {
            Ok(reg) => {
                if let Some(c) = &stored
                    && c.node_id != reg.node_id
                {
                    warn!(old = %c.node_id, new = %reg.node_id, "Guardian gave this node a new id");
                }
                let conflux_token = match (&reg.conflux_token, &stored) {
                    (Some(t), _) => t.to_string(),
                    (None, Some(c)) => c.conflux_token.clone(),
                    (None, None) => {
                        return Err(RunError::Guardian(GuardianError::BadAnswer {
                            what: "registration",
                            detail: "no conflux token for a new node".into(),
                        }));
                    }
                };
                Credentials {
                    node_id: reg.node_id,
                    realm: reg.realm.clone(),
                    conflux_token,
                    refresh_jwt: reg.refresh_jwt.to_string(),
                }
                .save(&cfg.data_dir)?;
                return Ok(reg);
            }
            Err(e @ GuardianError::Refused { .. }) | Err(e @ GuardianError::BadAnswer { .. }) => {
                return Err(e.into());
            }
            Err(e) => {
                warn!("{e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_REGISTER_BACKOFF);
            }
        }
    }
}

/// What spawned tasks report back to the loop.
enum Internal {
    HandshakeReply {
        peer: NodeId,
        attempt: u64,
        reply: Option<Vec<u8>>,
    },
    Directory {
        node: NodeId,
        record: Option<Vec<u8>>,
    },
    Renewed(Result<SignedCertificate, GuardianError>),
    Keys(Result<Vec<GuardianKey>, GuardianError>),
    TaintsCertified {
        result: Result<SignedCertificate, GuardianError>,
        reply: oneshot::Sender<Result<proto::TaintReply, Status>>,
    },
    SignalReply {
        to: NodeId,
        request: u64,
        reply: Option<Vec<u8>>,
    },
}

struct TaintOp {
    add: bool,
    taint: Taint,
    reply: oneshot::Sender<Result<proto::TaintReply, Status>>,
}

/// State the loop keeps besides the node.
struct Driver {
    node: Node,
    client: Client,
    guardian: Arc<GuardianClient>,
    cfg: Config,
    internal: mpsc::UnboundedSender<Internal>,
    directory: Arc<Mutex<Option<async_nats::jetstream::kv::Store>>>,
    nats_state: &'static str,
    connected_once: bool,
    reconnects: u64,
    registration_ms: u64,
    taint_queue: VecDeque<TaintOp>,
    taint_busy: bool,
    overlay: Option<overlay::OverlayState>,
    /// IPv4 forwarding while this node is a gateway.
    _forwarding: Option<gateway::Forwarding>,
    /// Kernel routes for the LANs behind gateways.
    lan_routes: gateway::KernelRoutes,
    /// A portal's NAT or a rift's policy routing (undone at an orderly stop).
    host_exit: exit::HostExit,
}

async fn subscribe(client: &Client, subject: String) -> Result<Subscriber, RunError> {
    client
        .subscribe(subject.clone())
        .await
        .map_err(|e| RunError::Subscribe {
            subject,
            detail: e.to_string(),
        })
}

/// Runs the control process until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let identity = NodeIdentity::generate();
    let guardian = Arc::new(GuardianClient::new(&cfg.guardian_url)?);
    let t0 = Instant::now();
    let reg = register(&cfg, &guardian, &identity).await?;
    let registration_ms = t0.elapsed().as_millis() as u64;
    info!(
        node = %reg.node_id,
        realm = %reg.realm,
        address = %reg.overlay_address,
        subnet = %reg.subnet,
        registration_ms,
        "registered with Guardian"
    );
    let node = Node::new(
        NodeParams {
            node_id: reg.node_id,
            identity,
            certificate: reg.certificate,
            guardian_keys: reg.guardian_keys,
            timing: cfg.timing,
        },
        now(),
    )?;
    let mut node = node;
    let exits = exits(&node, &cfg, &reg.overlay_address);
    let address6 =
        overlay::tun_address6(node.certificate().overlay_address6, reg.subnet6.as_deref());
    let overlay = overlay::start(
        &cfg.dataplane,
        reg.node_id,
        &reg.overlay_address,
        &reg.subnet,
        address6,
        &exits,
    )
    .await?;
    let host_exit = match &overlay {
        Some(_) => exit::HostExit::start(&cfg, &exits, &reg.subnet),
        None => exit::HostExit::default(),
    };
    node.set_on_demand(overlay.is_some());
    node.set_relay(overlay.is_some() && cfg.dataplane.relay);
    let forwarding = advertise_routes(&mut node, &cfg, overlay.is_some());
    let realm = node.realm().clone();
    let expected_prefix = format!("conflux.{realm}");
    if !reg.subject_prefix.is_empty() && reg.subject_prefix != expected_prefix {
        warn!(
            prefix = %reg.subject_prefix,
            "Guardian's subject prefix differs from {expected_prefix}"
        );
    }

    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let name = format!("conflux-{}", reg.node_id);
    let client = nats::connect(&cfg.nats_urls, &reg.nats, &name, conn_tx).await?;
    let mut presence_sub = subscribe(&client, subjects::presence(&realm)).await?;
    let mut hs_sub = subscribe(&client, subjects::handshake(&realm, reg.node_id)).await?;
    let mut revoked_sub = subscribe(&client, subjects::revoked(&realm)).await?;
    let mut signal_sub = subscribe(&client, subjects::signal(&realm, reg.node_id)).await?;

    let listener = api::bind(&cfg.api_socket)?;
    let (api_tx, mut api_rx) = mpsc::channel(64);
    let (api_stop_tx, api_stop_rx) = oneshot::channel::<()>();
    let api_task = tokio::spawn(api::serve(listener, api_tx, async {
        let _ = api_stop_rx.await;
    }));
    info!(socket = %cfg.api_socket.display(), "local API listening");

    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        node,
        client: client.clone(),
        guardian,
        cfg: cfg.clone(),
        internal: internal_tx,
        directory: Arc::new(Mutex::new(None)),
        nats_state: "pending",
        connected_once: false,
        reconnects: 0,
        registration_ms,
        taint_queue: VecDeque::new(),
        taint_busy: false,
        overlay,
        _forwarding: forwarding,
        lan_routes: gateway::KernelRoutes::new(&cfg.dataplane.tun),
        host_exit,
    };
    let (scrape_tx, mut scrape_rx) = mpsc::channel::<metrics::Scrape>(8);
    let metrics_task = match cfg.dataplane.metrics_address {
        Some(addr) => Some(
            metrics::serve(addr, scrape_tx)
                .await
                .map_err(|e| RunError::Metrics(addr, e))?,
        ),
        None => None,
    };
    let mut reports = d
        .overlay
        .as_mut()
        .map(|o| std::mem::replace(&mut o.link.reports, mpsc::unbounded_channel().1));
    tokio::pin!(shutdown);
    let result = loop {
        d.flush().await;
        let mut next = d.node.poll_timeout();
        if let Some(o) = &d.overlay {
            next = next.min(o.ov.poll_timeout()).min(o.underlay.poll_timeout());
        }
        let deadline = tokio::time::Instant::from_std(next);
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            m = presence_sub.next() => match m {
                Some(m) => d.node.handle_presence(now(), &m.payload),
                None => break Err(RunError::NatsClosed),
            },
            m = hs_sub.next() => match m {
                Some(m) => d.answer_handshake(m).await,
                None => break Err(RunError::NatsClosed),
            },
            m = revoked_sub.next() => match m {
                Some(m) => d.node.handle_revocation(now(), &m.payload),
                None => break Err(RunError::NatsClosed),
            },
            Some(ev) = conn_rx.recv() => d.connection_event(ev),
            Some(i) = internal_rx.recv() => d.internal(i),
            Some(r) = api_rx.recv() => d.api(r),
            Some(s) = scrape_rx.recv() => drop(s.send(d.render_metrics())),
            m = signal_sub.next() => match m {
                Some(m) => d.signal(m).await,
                None => break Err(RunError::NatsClosed),
            },
            Some(r) = async { reports.as_mut()?.recv().await }, if reports.is_some() => d.report(r),
            () = tokio::time::sleep_until(deadline) => {
                d.node.handle_timeout(now());
                d.overlay_timeout();
                d.underlay_timeout().await;
            }
        }
    };
    d.flush().await;
    d.lan_routes.clear();
    d.host_exit.stop();
    if let Some(o) = d.overlay.take() {
        // An orderly stop takes the data plane (and the TUN device) down with it.
        o.link.close(true);
        info!("data plane stopped");
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    let _ = api_stop_tx.send(());
    let _ = api_task.await;
    api::remove(&cfg.api_socket);
    let _ = client.flush().await;
    info!("stopped");
    result
}

/// What this node delivers locally, and whether it is a portal or a rift.
fn exits(node: &Node, cfg: &Config, address: &str) -> overlay::Exits {
    let mut local: Vec<(std::net::IpAddr, u8)> = address
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| (ip, if ip.is_ipv4() { 32 } else { 128 }))
        .into_iter()
        .chain(
            node.certificate()
                .overlay_address6
                .map(|a| (std::net::IpAddr::V6(a), 128)),
        )
        .collect();
    local.extend(
        cfg.dataplane
            .advertise_routes
            .iter()
            .filter_map(|r| crate::node::gateway::parse_prefix(r).ok()),
    );
    let certified = node.certificate().portal;
    if cfg.portal && !certified {
        warn!("portal = true, but Guardian did not certify this node as a portal");
    }
    if cfg.portal && cfg.rift {
        warn!("a portal is its own exit: rift is ignored");
    }
    overlay::Exits {
        local,
        portal: cfg.portal && certified,
        rift: (cfg.rift && !cfg.portal).then_some(cfg.portal_node),
    }
}

/// Advertises the configured LAN prefixes (warning about any Guardian did not authorize:
/// peers ignore those) and switches forwarding on for them.
fn advertise_routes(node: &mut Node, cfg: &Config, dataplane: bool) -> Option<gateway::Forwarding> {
    let routes = &cfg.dataplane.advertise_routes;
    if routes.is_empty() {
        return None;
    }
    if !dataplane {
        warn!("advertise_routes needs a data plane; nothing is advertised");
        return None;
    }
    let authorized: Vec<_> = node
        .certificate()
        .routed_prefixes
        .iter()
        .filter_map(|p| crate::node::gateway::parse_prefix(p).ok())
        .collect();
    for r in routes {
        if crate::node::gateway::parse_prefix(r).is_ok_and(|p| !authorized.contains(&p)) {
            warn!(prefix = %r, "Guardian did not authorize this prefix for this node; peers will ignore it");
        }
    }
    info!(routes = ?routes, "advertising LAN prefixes");
    node.set_routes(routes.clone());
    Some(gateway::Forwarding::for_prefixes(routes))
}

impl Driver {
    /// Carries out everything the node and the overlay asked for.
    async fn flush(&mut self) {
        loop {
            self.flush_node().await;
            if !self.flush_overlay().await {
                return;
            }
        }
    }

    async fn flush_node(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Publish { subject, payload } => {
                    if let Err(e) = self.client.publish(subject, payload.into()).await {
                        debug!("publish: {e}");
                    }
                }
                Output::HandshakeRequest {
                    peer,
                    attempt,
                    subject,
                    payload,
                } => {
                    let client = self.client.clone();
                    let tx = self.internal.clone();
                    let wait = self.cfg.timing.handshake_timeout;
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(wait, client.request(subject, payload.into()))
                            .await;
                        let reply = match r {
                            Ok(Ok(m)) => Some(m.payload.to_vec()),
                            _ => None,
                        };
                        let _ = tx.send(Internal::HandshakeReply {
                            peer,
                            attempt,
                            reply,
                        });
                    });
                }
                Output::LookupDirectory { node } => {
                    let client = self.client.clone();
                    let store = self.directory.clone();
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        let record = lookup(&client, &store, node).await;
                        let _ = tx.send(Internal::Directory { node, record });
                    });
                }
                Output::RenewCertificate => {
                    let g = self.guardian.clone();
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(Internal::Renewed(g.renew_certificate().await));
                    });
                }
                Output::RefreshGuardianKeys => {
                    let g = self.guardian.clone();
                    let tx = self.internal.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(Internal::Keys(g.keys().await));
                    });
                }
                Output::StreamUp {
                    peer,
                    direction,
                    stream_id,
                    key,
                    epoch,
                    replaces,
                } => {
                    if replaces.is_some() {
                        debug!(%peer, direction = direction.as_str(), epoch, "stream rekeyed");
                    } else {
                        info!(%peer, direction = direction.as_str(), "stream up");
                    }
                    // Without a data plane the key is dropped here (and wiped).
                    if let Some(o) = self.overlay.as_mut() {
                        o.ov.stream_up(
                            Instant::now(),
                            peer,
                            direction,
                            stream_id,
                            key,
                            epoch,
                            replaces,
                            &self.node,
                        );
                    }
                }
                Output::StreamDown {
                    peer,
                    direction,
                    replaced,
                    ..
                } => {
                    info!(%peer, direction = direction.as_str(), replaced, "stream down");
                    if let Some(o) = self.overlay.as_mut() {
                        o.ov.stream_down(Instant::now(), peer, direction, replaced);
                    }
                }
            }
        }
    }

    async fn answer_handshake(&mut self, m: async_nats::Message) {
        let Some(reply_to) = m.reply else {
            self.node.ignore(Ignored::Malformed);
            return;
        };
        if let Some(accept) = self.node.handle_handshake_request(now(), &m.payload) {
            // The new key reaches the data plane before the initiator can use it.
            self.flush().await;
            if let Err(e) = self.client.publish(reply_to, accept.into()).await {
                debug!("handshake reply: {e}");
            }
        }
    }

    fn connection_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Connected => {
                if self.connected_once {
                    self.reconnects += 1;
                    info!(reconnects = self.reconnects, "NATS connection back");
                } else {
                    info!("connected to NATS");
                }
                self.connected_once = true;
                self.nats_state = "connected";
                self.node.handle_connected(now());
            }
            ConnEvent::Disconnected => {
                warn!("NATS connection lost; reconnecting (established streams stay up)");
                self.nats_state = "disconnected";
                self.node.handle_disconnected();
            }
            ConnEvent::AuthorizationViolation => {
                // Every reconnection attempt is refused again: say it once.
                if self.nats_state != "refused" {
                    warn!("nats-server refuses this node's credentials (revoked?)");
                }
                self.nats_state = "refused";
            }
            ConnEvent::ServerError(e) => warn!("nats-server: {e}"),
        }
    }

    fn internal(&mut self, i: Internal) {
        match i {
            Internal::HandshakeReply {
                peer,
                attempt,
                reply,
            } => self
                .node
                .handle_handshake_reply(now(), peer, attempt, reply.as_deref()),
            Internal::Directory { node, record } => {
                self.node
                    .handle_directory_record(now(), node, record.as_deref());
            }
            Internal::Renewed(Ok(c)) => match self.node.set_certificate(now(), &c) {
                Ok(()) => info!("certificate renewed"),
                Err(e) => {
                    warn!("renewed certificate unusable: {e}");
                    self.node.renewal_failed(now());
                }
            },
            Internal::Renewed(Err(e)) => {
                warn!("certificate renewal failed: {e}");
                self.node.renewal_failed(now());
            }
            Internal::Keys(Ok(k)) => self.node.set_guardian_keys(k),
            Internal::Keys(Err(e)) => warn!("fetching Guardian's keys failed: {e}"),
            Internal::TaintsCertified { result, reply } => {
                self.taint_busy = false;
                let r = result
                    .map_err(|e| Status::unavailable(e.to_string()))
                    .and_then(|c| {
                        self.node
                            .set_certificate(now(), &c)
                            .map_err(|e| Status::internal(e.to_string()))
                    })
                    .map(|()| {
                        info!(taints = ?self.node.taints(), "taints changed");
                        proto::TaintReply {
                            taints: self.node.taints(),
                        }
                    });
                let _ = reply.send(r);
                self.next_taint_op();
            }
            Internal::SignalReply { to, request, reply } => {
                self.signal_reply(to, request, reply);
            }
        }
    }

    fn api(&mut self, r: ApiRequest) {
        match r {
            ApiRequest::Status(tx) => {
                let mut s = self.node.status(now());
                s.nats_state = self.nats_state.into();
                s.nats_reconnects = self.reconnects;
                s.registration_ms = self.registration_ms;
                if let Some(o) = &self.overlay {
                    if self.cfg.rift && !self.cfg.portal {
                        s.roles.push("rift".into());
                    }
                    s.exit_portal = o.ov.exit().map(|p| p.to_string()).unwrap_or_default();
                    s.exit_denied = o
                        .dp_counters
                        .values()
                        .flat_map(|v| v.iter())
                        .filter(|(k, _)| *k == "exit_denied")
                        .map(|(_, v)| *v)
                        .sum();
                }
                let _ = tx.send(s);
            }
            ApiRequest::Peers(tx) => drop(tx.send(self.node.peers())),
            ApiRequest::Streams(tx) => drop(tx.send(self.node.streams())),
            ApiRequest::Overlay(tx) => drop(tx.send(self.overlay_reply())),
            ApiRequest::Geo { request, reply } => drop(reply.send(self.geo(&request))),
            ApiRequest::TaintList(tx) => drop(tx.send(proto::TaintReply {
                taints: self.node.taints(),
            })),
            ApiRequest::TaintChange { add, taint, reply } => {
                self.taint_queue.push_back(TaintOp { add, taint, reply });
                self.next_taint_op();
            }
        }
    }

    /// Starts the next queued taint change once the previous one is certified, so each
    /// change builds on the last.
    fn next_taint_op(&mut self) {
        while !self.taint_busy {
            let Some(op) = self.taint_queue.pop_front() else {
                return;
            };
            let mut set: TaintSet = self.node.certificate().membership.taints.clone();
            let changed = if op.add {
                match set.insert(op.taint) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = op.reply.send(Err(Status::invalid_argument(e.to_string())));
                        continue;
                    }
                }
            } else {
                set.remove(&op.taint)
            };
            if !changed {
                let _ = op.reply.send(Ok(proto::TaintReply {
                    taints: self.node.taints(),
                }));
                continue;
            }
            self.taint_busy = true;
            let g = self.guardian.clone();
            let tx = self.internal.clone();
            tokio::spawn(async move {
                let result = g.set_taints(&set).await;
                let _ = tx.send(Internal::TaintsCertified {
                    result,
                    reply: op.reply,
                });
            });
        }
    }
}

/// Reads a node's record from the realm directory; `None` when there is none or the
/// directory cannot be reached.
async fn lookup(
    client: &Client,
    store: &Mutex<Option<async_nats::jetstream::kv::Store>>,
    node: NodeId,
) -> Option<Vec<u8>> {
    let kv = {
        let mut guard = store.lock().await;
        if guard.is_none() {
            let js = async_nats::jetstream::new(client.clone());
            match js.get_key_value(DIRECTORY_BUCKET).await {
                Ok(kv) => *guard = Some(kv),
                Err(e) => {
                    debug!("directory bucket: {e}");
                    return None;
                }
            }
        }
        guard.clone()?
    };
    match kv.get(node.to_hex()).await {
        Ok(v) => v.map(|b| b.to_vec()),
        Err(e) => {
            debug!("directory read for {node}: {e}");
            None
        }
    }
}

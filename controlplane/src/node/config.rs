//! The node's configuration: a TOML file, with command-line flags overriding it.
//!
//! ```toml
//! guardian_url = "https://guardian.example:8443"
//! registration_token_file = "/etc/conflux/token"   # first start only
//! realm = "lab"
//! taints = ["dev"]                                   # first registration only; then
//!                                                    # `conflux-ctl taint add|rm`
//! nats_urls = ["nats://nats1.example:4222", "nats://nats2.example:4222"]
//! data_dir = "/var/lib/conflux"                      # holds credentials.json (0600)
//! api_socket = "/run/conflux/conflux.sock"
//! region = "eu-west"
//!
//! dataplane = "spawn"                     # or "attach" (to a running one) or "none"
//! dataplane_socket = "/run/conflux/dataplane.sock"
//! tun = "cfx0"
//! listen = "0.0.0.0:51820"                 # UDP for tethers
//! advertise = ["203.0.113.7:51820"]        # default: every non-loopback IPv4 address
//!                                          # and global/ULA IPv6 address
//! workers = 2                              # default: one per core
//! relay = false                            # relay other nodes' routes
//! routing = "q-routing"                    # or "latency-only"
//! exclude_regions = ["us-east"]            # never relay through these regions
//! prefer_regions = ["eu-west"]             # favour relays here
//! advertise_routes = ["192.168.10.0/24"]   # gateway: LANs Guardian authorized
//! stun_service = true                      # answer STUN (default: relays, portals and
//!                                          # nodes with a public address)
//! stun_servers = ["203.0.113.9:3478"]      # beside those peers announce
//! idle_timeout_ms = 300000
//! rekey_interval_ms = 120000
//! metrics_address = "127.0.0.1:9464"       # Prometheus /metrics, off unless set
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use conflux_shared::taint::{NameError, Realm, TaintSet};
use serde::Deserialize;

/// Where the local API listens when neither the file nor a flag says.
pub const DEFAULT_API_SOCKET: &str = "/run/conflux/conflux.sock";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: Box<toml::de::Error>,
    },
    /// A required setting is missing from both the file and the flags.
    #[error("{0} is required (set it in the config file or with --{flag})", flag = .0.replace('_', "-"))]
    Missing(&'static str),
    /// A realm or taint name is invalid.
    #[error("{what}: {source}")]
    Name {
        /// Which setting.
        what: &'static str,
        /// Why.
        source: NameError,
    },
    /// A setting has a value out of its range.
    #[error("{0}")]
    Invalid(String),
}

/// The settings a TOML config file may hold; every field is optional there.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Guardian's base URL, e.g. `https://guardian.example:8443`.
    #[arg(long)]
    pub guardian_url: Option<String>,
    /// One-time registration token (only needed for the first start).
    #[arg(long, env = "CONFLUX_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: Option<String>,
    /// File holding the registration token.
    #[arg(long)]
    pub registration_token_file: Option<PathBuf>,
    /// File holding an identity provider's JWT to register with (OAuth).
    #[arg(long)]
    pub oauth_jwt_file: Option<PathBuf>,
    /// The realm to join (required with OAuth; checked against Guardian's answer otherwise).
    #[arg(long)]
    pub realm: Option<String>,
    /// Taints asked for at registration (Guardian may impose the token's instead).
    #[arg(long, value_delimiter = ',')]
    pub taints: Option<Vec<String>>,
    /// The overlay address to ask Guardian for.
    #[arg(long)]
    pub requested_address: Option<IpAddr>,
    /// NATS server URLs, e.g. `nats://127.0.0.1:4222` (several for a cluster).
    #[arg(long, value_delimiter = ',')]
    pub nats_urls: Option<Vec<String>>,
    /// Directory holding `credentials.json` (created 0700).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Geographic region to declare.
    #[arg(long)]
    pub region: Option<String>,
    /// Offer this node as an internet exit for its owner's nodes.
    #[arg(long)]
    pub portal: Option<bool>,
    /// The portal a rift uses (node id, hex); default: its owner's best portal.
    #[arg(long)]
    pub portal_node: Option<String>,
    /// Send this node's internet traffic through its owner's portal.
    #[arg(long)]
    pub rift: Option<bool>,
    /// Unix socket of the local API (created 0600).
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// Milliseconds between periodic presence announcements.
    #[arg(long)]
    pub presence_interval_ms: Option<u64>,
    /// Milliseconds without a presence after which a peer is forgotten.
    #[arg(long)]
    pub peer_timeout_ms: Option<u64>,
    /// Milliseconds to wait for a handshake reply.
    #[arg(long)]
    pub handshake_timeout_ms: Option<u64>,
    /// How to reach the data plane: `spawn` (start it unless one runs on the socket),
    /// `attach` (only attach) or `none` (control plane only: no TUN, streams to every
    /// allowed peer, keys never leave the process).
    #[arg(long)]
    pub dataplane: Option<String>,
    /// The `conflux-dataplane` binary (default: next to this one).
    #[arg(long)]
    pub dataplane_bin: Option<PathBuf>,
    /// The data plane's control socket.
    #[arg(long)]
    pub dataplane_socket: Option<PathBuf>,
    /// TUN interface name.
    #[arg(long)]
    pub tun: Option<String>,
    /// UDP address the data plane binds for tethers.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Addresses peers reach this node's data plane at ("ip:port"; default: every
    /// non-loopback IPv4 address and every global or unique-local IPv6 address, with the
    /// listen port; a wildcard listen address serves both families).
    #[arg(long, value_delimiter = ',')]
    pub advertise: Option<Vec<SocketAddr>>,
    /// Data plane workers (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// SO_MARK on the data plane's underlay sockets (0: none).
    #[arg(long)]
    pub mark: Option<u32>,
    /// Relay other nodes' routes through this node.
    #[arg(long)]
    pub relay: Option<bool>,
    /// Milliseconds without traffic after which a stream, route or tether dissolves.
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds between rekeys of a stream in use.
    #[arg(long)]
    pub rekey_interval_ms: Option<u64>,
    /// Address of the Prometheus `/metrics` endpoint (off unless given).
    #[arg(long)]
    pub metrics_address: Option<SocketAddr>,
    /// Framing-free UDP tethers instead of WebRTC (for comparison benchmarks only).
    #[arg(long)]
    pub plain_tethers: Option<bool>,
    /// Route choice: "q-routing" (default: several weighted paths, load and loss aware) or
    /// "latency-only" (one path, the lowest latency).
    #[arg(long)]
    pub routing: Option<String>,
    /// Regions whose nodes never relay this node's traffic.
    #[arg(long, value_delimiter = ',')]
    pub exclude_regions: Option<Vec<String>>,
    /// Regions whose relays are favoured.
    #[arg(long, value_delimiter = ',')]
    pub prefer_regions: Option<Vec<String>>,
    /// LAN prefixes this node makes reachable (gateway), e.g. 192.168.10.0/24; Guardian
    /// must have authorized each for this node, or peers ignore it.
    #[arg(long, value_delimiter = ',')]
    pub advertise_routes: Option<Vec<String>>,
    /// Answer STUN binding requests on the tether ports, so nodes behind NATs learn their
    /// reflexive addresses (default: on for relays and portals).
    #[arg(long)]
    pub stun_service: Option<bool>,
    /// STUN servers to ask beside the ones peers announce, ip:port.
    #[arg(long, value_delimiter = ',')]
    pub stun_servers: Option<Vec<SocketAddr>>,
}

impl Settings {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// `self` with every setting that `flags` has replacing the file's.
    pub fn overridden_by(self, flags: Settings) -> Settings {
        macro_rules! pick {
            ($($f:ident),*) => { Settings { $($f: flags.$f.or(self.$f)),* } };
        }
        pick!(
            guardian_url,
            registration_token,
            registration_token_file,
            oauth_jwt_file,
            realm,
            taints,
            requested_address,
            nats_urls,
            data_dir,
            region,
            portal,
            portal_node,
            rift,
            api_socket,
            presence_interval_ms,
            peer_timeout_ms,
            handshake_timeout_ms,
            dataplane,
            dataplane_bin,
            dataplane_socket,
            tun,
            listen,
            advertise,
            workers,
            mark,
            relay,
            idle_timeout_ms,
            rekey_interval_ms,
            metrics_address,
            plain_tethers,
            routing,
            exclude_regions,
            prefer_regions,
            advertise_routes,
            stun_service,
            stun_servers
        )
    }
}

/// How a node without stored credentials proves it may join.
#[derive(Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// A one-time registration token made by an admin.
    RegistrationToken(String),
    /// An identity provider's JWT.
    OAuthJwt(String),
    /// Nothing: the node can only start if it has stored credentials.
    None,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Enrollment::RegistrationToken(_) => "RegistrationToken(<redacted>)",
            Enrollment::OAuthJwt(_) => "OAuthJwt(<redacted>)",
            Enrollment::None => "None",
        })
    }
}

/// Timings of the control loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between periodic presence announcements.
    pub presence_interval: Duration,
    /// Without a presence, a peer is forgotten after this long.
    pub peer_timeout: Duration,
    /// How long a handshake request waits for its reply.
    pub handshake_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            presence_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(3),
        }
    }
}

/// Where the data plane comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPlaneMode {
    /// Attach to a running one, or start it.
    Spawn,
    /// Only attach to a running one.
    Attach,
    /// No data plane: control plane only.
    None,
}

/// The node's data plane and overlay settings.
#[derive(Debug, Clone)]
pub struct DataPlane {
    /// Where it comes from.
    pub mode: DataPlaneMode,
    /// Its binary.
    pub binary: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// TUN interface name.
    pub tun: String,
    /// UDP bind address.
    pub listen: SocketAddr,
    /// Advertised candidate addresses (empty: discover).
    pub advertise: Vec<SocketAddr>,
    /// Workers (None: one per core).
    pub workers: Option<usize>,
    /// SO_MARK.
    pub mark: u32,
    /// Relay for others.
    pub relay: bool,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Rekey interval.
    pub rekey_interval: Duration,
    /// Prometheus endpoint.
    pub metrics_address: Option<SocketAddr>,
    /// Plain tethers.
    pub plain_tethers: bool,
    /// The router's strategy and tunables.
    pub routing: crate::route::RouterConfig,
    /// Relay regions excluded or preferred.
    pub geo: crate::route::GeoPolicy,
    /// LAN prefixes advertised (gateway), CIDR, checked.
    pub advertise_routes: Vec<String>,
    /// Answer STUN binding requests: `None` decides by the node's addresses (on when one
    /// is public).
    pub stun_service: Option<bool>,
    /// STUN servers asked beside the ones peers announce.
    pub stun_servers: Vec<SocketAddr>,
}

/// The `SO_MARK` of a rift's data plane sockets when the configuration gives none.
pub const DEFAULT_RIFT_MARK: u32 = 0x00c0_f1c5;

/// Data plane workers a node may ask for (one WebRTC association per worker and peer).
pub const MAX_WORKERS: usize = 64;

/// Where the data plane's socket is when neither the file nor a flag says.
pub const DEFAULT_DATAPLANE_SOCKET: &str = "/run/conflux/dataplane.sock";

impl DataPlane {
    fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let mode = match s.dataplane.as_deref().unwrap_or("spawn") {
            "spawn" => DataPlaneMode::Spawn,
            "attach" => DataPlaneMode::Attach,
            "none" => DataPlaneMode::None,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "dataplane must be spawn, attach or none, not {other:?}"
                )));
            }
        };
        let binary = match &s.dataplane_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("conflux-dataplane")))
                .unwrap_or_else(|| PathBuf::from("conflux-dataplane")),
        };
        let ms = |v: Option<u64>, dflt: u64, name: &str| match v {
            Some(0) => Err(ConfigError::Invalid(format!("{name} must be above 0"))),
            v => Ok(Duration::from_millis(v.unwrap_or(dflt))),
        };
        let idle_timeout = ms(s.idle_timeout_ms, 300_000, "idle_timeout_ms")?;
        let rekey_interval = ms(s.rekey_interval_ms, 120_000, "rekey_interval_ms")?;
        if rekey_interval < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "rekey_interval_ms must be at least 1000".into(),
            ));
        }
        let plain_tethers = s.plain_tethers.unwrap_or(false);
        let workers = match s.workers {
            Some(0) => return Err(ConfigError::Invalid("workers must be at least 1".into())),
            Some(n) if n > MAX_WORKERS => {
                return Err(ConfigError::Invalid(format!(
                    "workers = {n}: at most {MAX_WORKERS}"
                )));
            }
            w => w,
        };
        let tun = s.tun.clone().unwrap_or_else(|| "cfx0".into());
        if tun.is_empty() || tun.len() > 15 {
            return Err(ConfigError::Invalid(format!(
                "tun {tun:?}: an interface name has 1 to 15 characters"
            )));
        }
        Ok(Self {
            mode,
            binary,
            socket: s
                .dataplane_socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATAPLANE_SOCKET)),
            tun,
            listen: s
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 51820))),
            advertise: s.advertise.clone().unwrap_or_default(),
            workers,
            // A rift routes everything into the tunnel except what carries this mark.
            mark: match (s.mark, s.rift) {
                (Some(0), Some(true)) => {
                    return Err(ConfigError::Invalid(
                        "rift needs a non-zero mark for the data plane's sockets".into(),
                    ));
                }
                (Some(m), _) => m,
                (None, Some(true)) => DEFAULT_RIFT_MARK,
                (None, _) => 0,
            },
            relay: s.relay.unwrap_or(false),
            idle_timeout,
            rekey_interval,
            metrics_address: s.metrics_address,
            plain_tethers,
            routing: match s.routing.as_deref() {
                None | Some("q-routing") => crate::route::RouterConfig::q_routing(),
                Some("latency-only") => crate::route::RouterConfig::latency_only(),
                Some(other) => {
                    return Err(ConfigError::Invalid(format!(
                        "routing = {other:?}: use \"q-routing\" or \"latency-only\""
                    )));
                }
            },
            geo: geo_policy(
                s.exclude_regions.as_deref().unwrap_or_default(),
                s.prefer_regions.as_deref().unwrap_or_default(),
            )?,
            advertise_routes: s
                .advertise_routes
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    crate::node::gateway::parse_prefix(r)
                        .map(crate::node::gateway::text)
                        .map_err(|e| ConfigError::Invalid(format!("advertise_routes: {e}")))
                })
                .collect::<Result<_, _>>()?,
            stun_service: s
                .stun_service
                .or((s.relay.unwrap_or(false) || s.portal.unwrap_or(false)).then_some(true)),
            stun_servers: s.stun_servers.clone().unwrap_or_default(),
        })
    }
}

/// A geo policy from region names (checked: non-empty, no spaces, at most 64 bytes).
pub fn geo_policy(
    exclude: &[String],
    prefer: &[String],
) -> Result<crate::route::GeoPolicy, ConfigError> {
    let region = |r: &String| {
        if r.is_empty() || r.len() > 64 || r.chars().any(char::is_whitespace) {
            Err(ConfigError::Invalid(format!(
                "region {r:?}: 1 to 64 characters without spaces"
            )))
        } else {
            Ok(crate::route::Region::new(r.clone()))
        }
    };
    let policy = crate::route::GeoPolicy {
        exclude: exclude.iter().map(region).collect::<Result<_, _>>()?,
        prefer: prefer.iter().map(region).collect::<Result<_, _>>()?,
    };
    if let Some(r) = policy.exclude.intersection(&policy.prefer).next() {
        return Err(ConfigError::Invalid(format!(
            "region {r} is both excluded and preferred"
        )));
    }
    Ok(policy)
}

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Guardian's base URL, without a trailing slash.
    pub guardian_url: String,
    /// How to register when no credentials are stored.
    pub enrollment: Enrollment,
    /// The realm asked for, if any.
    pub realm: Option<Realm>,
    /// Taints asked for at registration.
    pub taints: Option<TaintSet>,
    /// Overlay address asked for.
    pub requested_address: Option<IpAddr>,
    /// NATS server URLs.
    pub nats_urls: Vec<String>,
    /// Directory of `credentials.json`.
    pub data_dir: PathBuf,
    /// Region declared to Guardian.
    pub region: Option<String>,
    /// Portal flag.
    pub portal: bool,
    /// Rift flag.
    pub rift: bool,
    /// The portal a rift uses (default: its owner's best).
    pub portal_node: Option<conflux_shared::id::NodeId>,
    /// The local API socket.
    pub api_socket: PathBuf,
    /// Control loop timings.
    pub timing: Timing,
    /// Data plane and overlay.
    pub dataplane: DataPlane,
}

impl Config {
    /// Validates merged settings.
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let dataplane = DataPlane::from_settings(&s)?;
        let guardian_url = s
            .guardian_url
            .ok_or(ConfigError::Missing("guardian_url"))?
            .trim_end_matches('/')
            .to_owned();
        let nats_urls = s.nats_urls.filter(|u| !u.is_empty());
        let nats_urls = nats_urls.ok_or(ConfigError::Missing("nats_urls"))?;
        let data_dir = s.data_dir.ok_or(ConfigError::Missing("data_dir"))?;
        let enrollment = match (
            s.registration_token,
            s.registration_token_file,
            s.oauth_jwt_file,
        ) {
            (Some(t), None, None) => Enrollment::RegistrationToken(t.trim().to_owned()),
            (None, Some(f), None) => Enrollment::RegistrationToken(read_secret(&f)?),
            (None, None, Some(f)) => Enrollment::OAuthJwt(read_secret(&f)?),
            (None, None, None) => Enrollment::None,
            _ => {
                return Err(ConfigError::Invalid(
                    "give at most one of registration_token, registration_token_file and \
                     oauth_jwt_file"
                        .into(),
                ));
            }
        };
        let realm = s
            .realm
            .map(|r| Realm::new(&r))
            .transpose()
            .map_err(|source| ConfigError::Name {
                what: "realm",
                source,
            })?;
        if matches!(enrollment, Enrollment::OAuthJwt(_)) && realm.is_none() {
            return Err(ConfigError::Missing("realm"));
        }
        let taints = s
            .taints
            .map(|t| TaintSet::parse(t.iter().map(String::as_str)))
            .transpose()
            .map_err(|source| ConfigError::Name {
                what: "taints",
                source,
            })?;
        let d = Timing::default();
        let ms = |v: Option<u64>, dflt: Duration, name: &str| -> Result<Duration, ConfigError> {
            match v {
                None => Ok(dflt),
                Some(0) => Err(ConfigError::Invalid(format!("{name} must be above 0"))),
                Some(v) => Ok(Duration::from_millis(v)),
            }
        };
        let timing = Timing {
            presence_interval: ms(
                s.presence_interval_ms,
                d.presence_interval,
                "presence_interval_ms",
            )?,
            peer_timeout: ms(s.peer_timeout_ms, d.peer_timeout, "peer_timeout_ms")?,
            handshake_timeout: ms(
                s.handshake_timeout_ms,
                d.handshake_timeout,
                "handshake_timeout_ms",
            )?,
        };
        if timing.peer_timeout <= timing.presence_interval * 2 {
            return Err(ConfigError::Invalid(
                "peer_timeout_ms must be more than twice presence_interval_ms".into(),
            ));
        }
        Ok(Self {
            guardian_url,
            enrollment,
            realm,
            taints,
            requested_address: s.requested_address,
            nats_urls,
            data_dir,
            region: s.region,
            portal: s.portal.unwrap_or(false),
            rift: s.rift.unwrap_or(false),
            portal_node: s
                .portal_node
                .as_deref()
                .map(|p| {
                    conflux_shared::id::NodeId::from_hex(p).map_err(|_| {
                        ConfigError::Invalid(format!("portal_node {p:?}: 32 hex digits"))
                    })
                })
                .transpose()?,
            api_socket: s
                .api_socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_API_SOCKET)),
            timing,
            dataplane,
        })
    }
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        guardian_url = "http://127.0.0.1:8080/"
        registration_token = "tok"
        realm = "lab"
        taints = ["dev", "stage"]
        nats_urls = ["nats://127.0.0.1:4222"]
        data_dir = "/var/lib/conflux"
        presence_interval_ms = 1000
        peer_timeout_ms = 4000
    "#;

    #[test]
    fn file_then_flags() {
        let file = Settings::from_toml(FILE).unwrap();
        let flags = Settings {
            taints: Some(vec!["prod".into()]),
            region: Some("eu-west".into()),
            ..Settings::default()
        };
        let c = Config::from_settings(file.overridden_by(flags)).unwrap();
        assert_eq!(c.guardian_url, "http://127.0.0.1:8080");
        assert_eq!(c.taints.unwrap().to_string(), "{prod}");
        assert_eq!(c.region.as_deref(), Some("eu-west"));
        assert_eq!(c.realm.unwrap().as_str(), "lab");
        assert_eq!(c.enrollment, Enrollment::RegistrationToken("tok".into()));
        assert_eq!(c.timing.presence_interval, Duration::from_secs(1));
        assert_eq!(c.api_socket, PathBuf::from(DEFAULT_API_SOCKET));
    }

    #[test]
    fn rejects_what_an_operator_would_get_wrong() {
        assert!(
            Settings::from_toml("guardian_urll = \"x\"").is_err(),
            "typo"
        );
        let base = Settings::from_toml(FILE).unwrap();
        let missing = Settings {
            nats_urls: None,
            ..base.clone()
        };
        let e = Config::from_settings(missing).unwrap_err().to_string();
        assert!(e.contains("--nats-urls"), "{e}");
        let bad_taint = Settings {
            taints: Some(vec!["Dev".into()]),
            ..base.clone()
        };
        assert!(matches!(
            Config::from_settings(bad_taint),
            Err(ConfigError::Name { what: "taints", .. })
        ));
        let two_tokens = Settings {
            oauth_jwt_file: Some("/x".into()),
            ..base.clone()
        };
        assert!(matches!(
            Config::from_settings(two_tokens),
            Err(ConfigError::Invalid(_))
        ));
        let many_workers = Settings {
            workers: Some(4),
            ..base.clone()
        };
        assert_eq!(
            Config::from_settings(many_workers)
                .unwrap()
                .dataplane
                .workers,
            Some(4)
        );
        let too_many = Settings {
            workers: Some(65),
            ..base.clone()
        };
        let e = Config::from_settings(too_many).unwrap_err().to_string();
        assert!(e.contains("at most 64"), "{e}");
        let no_workers = Settings {
            workers: Some(0),
            ..base.clone()
        };
        let e = Config::from_settings(no_workers).unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        let bad_mode = Settings {
            dataplane: Some("on".into()),
            ..base.clone()
        };
        assert!(matches!(
            Config::from_settings(bad_mode),
            Err(ConfigError::Invalid(_))
        ));
        let tight = Settings {
            peer_timeout_ms: Some(1500),
            ..base
        };
        assert!(matches!(
            Config::from_settings(tight),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn ipv6_literals_in_urls_and_addresses() {
        let text = r#"
            guardian_url = "http://[fd00::1]:8080/"
            registration_token = "tok"
            nats_urls = ["nats://[fd00::1]:4222"]
            data_dir = "/var/lib/conflux"
            listen = "[::]:51820"
            advertise = ["[fd00::10]:51820", "10.0.0.10:51820"]
        "#;
        let c = Config::from_settings(Settings::from_toml(text).unwrap()).unwrap();
        assert_eq!(c.guardian_url, "http://[fd00::1]:8080");
        assert_eq!(c.nats_urls, ["nats://[fd00::1]:4222"]);
        assert_eq!(
            c.dataplane.listen,
            "[::]:51820".parse::<SocketAddr>().unwrap()
        );
        assert!(c.dataplane.advertise[0].is_ipv6() && c.dataplane.advertise[1].is_ipv4());
        // A bracketless IPv6 address with a port is not a socket address.
        assert!(Settings::from_toml("advertise = [\"fd00::10:51820\"]").is_err());
    }

    #[test]
    fn enrollment_debug_hides_the_token() {
        let e = Enrollment::RegistrationToken("s3cret".into());
        assert!(!format!("{e:?}").contains("s3cret"));
    }
}

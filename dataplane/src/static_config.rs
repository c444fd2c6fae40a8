//! The static driver's configuration file: tethers, streams, routes, relay entries and
//! policy for one data plane, so data planes can carry traffic before a control process
//! runs them (see [`crate::driver`]).
//!
//! ```toml
//! socket = "/run/conflux/a.sock"   # the data plane's control socket
//! rekey_interval_s = 60            # keys rotate every interval (default 60)
//!
//! [[tether]]                       # plain: one sealed packet per datagram
//! id = 1
//! peer = "10.99.0.2:51820"
//!
//! [[tether]]                       # WebRTC: ICE, DTLS 1.2, SCTP data channels
//! id = 2
//! peer = "10.98.0.2:51820"         # the peer worker's address (the ICE candidate)
//! kind = "webrtc"
//! controlling = true               # exactly one end: ICE controlling, DTLS client
//! fingerprint = "sha-256 <32 hex bytes>"  # the peer's (`conflux-dataplane snapshot`)
//!
//! [[stream]]                       # A → B, sealed here
//! id = "00112233445566778899aabbccddeeff"
//! direction = "egress"
//! label = 7                        # the label B chose for it
//! peer = "100.64.0.2"              # B's overlay address
//! secret = "<64 hex digits>"       # shared with B's ingress entry for the same stream
//!
//! [[stream]]                       # B → A, opened here
//! id = "ffeeddccbbaa99887766554433221100"
//! direction = "ingress"
//! label = 8
//! peer = "100.64.0.2"
//! secret = "<64 hex digits>"
//! allowed = ["192.168.7.0/24"]     # B may also send from here
//!
//! [[route]]
//! prefix = "100.64.0.2/32"
//! hops = [{ tether = 1, label = 7, weight = 1 }]
//!
//! [[relay]]                        # on a relay: in-label → tether, out-label
//! in_label = 7
//! tether = 2
//! out_label = 9
//!
//! [policy]
//! relay = true
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use conflux_shared::id::StreamId;
use conflux_shared::proto::TetherOpen;
use conflux_shared::wire::record::IpPrefix;
use serde::Deserialize;

use crate::hop::open::OpenRequest;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The TOML did not parse or has unknown fields.
    #[error("parsing {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    /// A value is out of its domain.
    #[error("{0}")]
    Invalid(String),
}

/// A whole static configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// The data plane's control socket.
    pub socket: PathBuf,
    /// Seconds between key generations.
    #[serde(default = "default_rekey")]
    pub rekey_interval_s: u64,
    /// Tethers.
    #[serde(default)]
    pub tether: Vec<TetherConfig>,
    /// Streams.
    #[serde(default)]
    pub stream: Vec<StreamConfig>,
    /// Routes.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
    /// Relay entries.
    #[serde(default)]
    pub relay: Vec<RelayConfig>,
    /// Policy (defaults when absent).
    pub policy: Option<PolicyConfig>,
}

fn default_rekey() -> u64 {
    60
}

fn default_weight() -> u16 {
    1
}

/// How a tether frames packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TetherKind {
    /// One sealed packet per datagram (an `InstallTether` record).
    #[default]
    Plain,
    /// WebRTC data channels (a `TetherOpen` signal).
    Webrtc,
}

/// A tether.
///
/// A WebRTC tether's ICE credentials default to fixed values per role (tether ids are each
/// node's own, so the two ends of a link may name it differently); they only pair the two
/// agents, while the DTLS fingerprint is what authenticates the peer. The driver opens a WebRTC tether on worker 0 only: with
/// several workers, the others count and drop packets routed to it (see
/// [`crate::hop`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TetherConfig {
    /// Tether id.
    pub id: u32,
    /// Peer's UDP address.
    pub peer: SocketAddr,
    /// Plain (default) or WebRTC.
    #[serde(default)]
    pub kind: TetherKind,
    /// WebRTC: the peer's DTLS fingerprint, `"sha-256 AA:BB:…"`.
    pub fingerprint: Option<String>,
    /// WebRTC: this end is ICE controlling and the DTLS client.
    #[serde(default)]
    pub controlling: bool,
    /// WebRTC: data channels (default 4).
    pub channels: Option<u16>,
    /// WebRTC: this end's ICE username fragment.
    pub ice_ufrag: Option<String>,
    /// WebRTC: this end's ICE password.
    pub ice_pwd: Option<String>,
    /// WebRTC: the peer's ICE username fragment.
    pub peer_ice_ufrag: Option<String>,
    /// WebRTC: the peer's ICE password.
    pub peer_ice_pwd: Option<String>,
}

impl TetherConfig {
    fn default_ufrag(&self, controlling: bool) -> String {
        if controlling { "cfxc" } else { "cfxa" }.to_string()
    }

    fn default_pwd(&self, controlling: bool) -> String {
        let role = if controlling { "c" } else { "a" };
        format!("confluxstatictetherpassword{role}")
    }

    /// The `TetherOpen` a WebRTC entry stands for (checked as the worker will).
    pub fn open_message(&self) -> Result<TetherOpen, ConfigError> {
        let c = self.controlling;
        let m = TetherOpen {
            tether: self.id,
            candidates: vec![self.peer.to_string()],
            controlling: c,
            local_ufrag: self
                .ice_ufrag
                .clone()
                .unwrap_or_else(|| self.default_ufrag(c)),
            local_pwd: self.ice_pwd.clone().unwrap_or_else(|| self.default_pwd(c)),
            remote_ufrag: self
                .peer_ice_ufrag
                .clone()
                .unwrap_or_else(|| self.default_ufrag(!c)),
            remote_pwd: self
                .peer_ice_pwd
                .clone()
                .unwrap_or_else(|| self.default_pwd(!c)),
            remote_fingerprint: self.fingerprint.clone().ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "tether {}: a WebRTC tether needs fingerprint",
                    self.id
                ))
            })?,
            channels: self.channels.map_or(0, u32::from),
        };
        OpenRequest::from_message(&m)
            .map_err(|e| ConfigError::Invalid(format!("tether {}: {e}", self.id)))?;
        Ok(m)
    }
}

/// Which way a stream runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamDirection {
    /// Sealed here.
    Egress,
    /// Opened here.
    Ingress,
}

/// A stream and its static secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// 32 hex digits.
    pub id: String,
    /// Egress or ingress.
    pub direction: StreamDirection,
    /// Egress: the first hop's label; ingress: this node's.
    pub label: u32,
    /// Egress: the destination's overlay address; ingress: the source's.
    pub peer: IpAddr,
    /// 64 hex digits shared by both ends of the stream; keys are derived from it.
    pub secret: String,
    /// Ingress: further source prefixes.
    #[serde(default)]
    pub allowed: Vec<String>,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("id", &self.id)
            .field("direction", &self.direction)
            .field("label", &self.label)
            .field("peer", &self.peer)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A route's next hop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopConfig {
    /// Tether id.
    pub tether: u32,
    /// The next hop's label.
    pub label: u32,
    /// Share of flows.
    #[serde(default = "default_weight")]
    pub weight: u16,
}

/// A route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `address/length`.
    pub prefix: String,
    /// Deliver here instead of forwarding.
    #[serde(default)]
    pub local: bool,
    /// Next hops when forwarding.
    #[serde(default)]
    pub hops: Vec<HopConfig>,
}

/// A relay entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Label packets arrive with.
    pub in_label: u32,
    /// Tether they leave on.
    pub tether: u32,
    /// Label they leave with.
    pub out_label: u32,
}

/// Policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Relay for others.
    #[serde(default = "yes")]
    pub relay: bool,
    /// Upper bound on key lifetime.
    #[serde(default = "default_lifetime")]
    pub max_key_lifetime_s: u32,
    /// Relayed packets per second per worker (0: no limit).
    #[serde(default)]
    pub relay_rate_pps: u32,
}

fn yes() -> bool {
    true
}

fn default_lifetime() -> u32 {
    180
}

/// Parses `a.b.c.d/len` or `x::y/len` (a bare address is a host prefix).
pub fn parse_prefix(s: &str) -> Result<IpPrefix, ConfigError> {
    let bad = || ConfigError::Invalid(format!("bad prefix {s:?}"));
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    match len {
        None => Ok(IpPrefix::host(ip)),
        Some(l) => IpPrefix::new(ip, l.parse().map_err(|_| bad())?).map_err(|_| bad()),
    }
}

impl StreamConfig {
    /// The stream id.
    pub fn stream_id(&self) -> Result<StreamId, ConfigError> {
        StreamId::from_hex(&self.id).map_err(|_| {
            ConfigError::Invalid(format!("stream id {:?} is not 32 hex digits", self.id))
        })
    }

    /// The 32-byte secret.
    pub fn secret_bytes(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, ConfigError> {
        let mut b = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&self.secret, &mut b[..]).map_err(|_| {
            ConfigError::Invalid(format!("stream {}: secret is not 64 hex digits", self.id))
        })?;
        Ok(b)
    }
}

impl StaticConfig {
    /// Reads and checks a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks every value that the types do not.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.rekey_interval_s < 2 || self.rekey_interval_s > 3600 {
            return Err(ConfigError::Invalid(
                "rekey_interval_s must be 2..=3600".into(),
            ));
        }
        for t in &self.tether {
            if t.kind == TetherKind::Webrtc {
                t.open_message()?;
            }
        }
        for s in &self.stream {
            s.stream_id()?;
            s.secret_bytes()?;
            for p in &s.allowed {
                parse_prefix(p)?;
            }
        }
        for r in &self.route {
            parse_prefix(&r.prefix)?;
            if !r.local
                && (r.hops.is_empty() || r.hops.len() > conflux_shared::wire::record::MAX_NEXT_HOPS)
            {
                return Err(ConfigError::Invalid(format!(
                    "route {}: 1 to 4 hops",
                    r.prefix
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let doc = include_str!("static_config.rs");
        let example: String = doc
            .lines()
            .filter_map(|l| l.strip_prefix("//! "))
            .skip_while(|l| !l.starts_with("socket"))
            .take_while(|l| !l.starts_with("```"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("<64 hex digits>", &"ab".repeat(32))
            .replace("<32 hex bytes>", &["AB"; 32].join(":"));
        let cfg: StaticConfig = toml::from_str(&example).unwrap();
        cfg.check().unwrap();
        assert_eq!(
            (
                cfg.tether.len(),
                cfg.stream.len(),
                cfg.route.len(),
                cfg.relay.len()
            ),
            (2, 2, 1, 1)
        );
        assert_eq!(
            cfg.tether[0].kind,
            TetherKind::Plain,
            "plain is the default"
        );
        let open = cfg.tether[1].open_message().unwrap();
        assert!(open.controlling);
        // The peer's entry (same id, other role) names the same credentials crosswise.
        let mut peer = cfg.tether[1].clone();
        peer.controlling = false;
        let back = peer.open_message().unwrap();
        assert_eq!(
            (open.local_ufrag, open.local_pwd),
            (back.remote_ufrag, back.remote_pwd)
        );
        assert!(
            !format!("{:?}", cfg.stream[0]).contains("abab"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn refuses_bad_values() {
        assert!(toml::from_str::<StaticConfig>("socket = \"/x\"\nbogus = 1").is_err());
        assert!(parse_prefix("10.0.0.1/33").is_err());
        assert!(parse_prefix("10.0.0.1/24").is_err(), "host bits set");
        assert!(parse_prefix("10.0.0.0/24").is_ok());
        let no_fingerprint: StaticConfig = toml::from_str(
            "socket = \"/x\"\n[[tether]]\nid = 1\npeer = \"10.0.0.1:1\"\nkind = \"webrtc\"",
        )
        .unwrap();
        assert!(no_fingerprint.check().is_err());
    }
}

//! ICE by the library: `rtc-ice`'s full agent with one host candidate per side.
//!
//! Connectivity checks, nomination and consent are rare and subtle, so the agent does them
//! all; the tether only hands it STUN datagrams and learns the selected remote address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc_ice::agent::agent_config::AgentConfig;
use rtc_ice::candidate::candidate_host::CandidateHostConfig;
use rtc_ice::candidate::{CandidateConfig, CandidateType};
use rtc_ice::mdns::MulticastDnsMode;
use rtc_ice::network_type::NetworkType;
use rtc_ice::state::ConnectionState;
use rtc_ice::{Agent, Event};
use rtc_shared::{TransportContext, TransportMessage, TransportProtocol};
use sansio::Protocol;

use super::config::TetherConfig;

/// How long a controlling agent waits before it nominates a pair with a peer-reflexive
/// remote (host pairs on one link answer within milliseconds).
const PRFLX_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// ICE could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ICE set-up failed: {0}")]
pub struct IceError(pub String);

fn host_candidate(addr: SocketAddr) -> Result<rtc_ice::candidate::Candidate, IceError> {
    CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(|e| IceError(e.to_string()))
}

/// The tether's ICE agent.
pub(crate) struct Ice {
    agent: Agent,
    local: SocketAddr,
    selected: Option<SocketAddr>,
    failed: bool,
}

impl Ice {
    pub(crate) fn new(now: Instant, cfg: &TetherConfig) -> Result<Self, IceError> {
        let provider = rtc_ice::crypto::default_provider().map_err(|e| IceError(e.to_string()))?;
        let agent_cfg = AgentConfig {
            local_ufrag: cfg.local_ice.ufrag.clone(),
            local_pwd: cfg.local_ice.pwd.clone(),
            is_controlling: cfg.ice_controlling,
            multicast_dns_mode: MulticastDnsMode::Disabled,
            // A peer behind a NAT is first seen as a peer-reflexive address; the library's
            // one-second wait for something better costs set-up time our candidate lists
            // (host, then reflexive) never win back.
            prflx_acceptance_min_wait: Some(PRFLX_WAIT),
            candidate_types: vec![CandidateType::Host],
            network_types: vec![NetworkType::Udp4, NetworkType::Udp6],
            ..Default::default()
        };
        let mut agent =
            Agent::new(now, Arc::new(agent_cfg), provider).map_err(|e| IceError(e.to_string()))?;
        agent
            .add_local_candidate(host_candidate(cfg.local_addr)?)
            .map_err(|e| IceError(e.to_string()))?;
        for r in &cfg.remote_candidates {
            agent
                .add_remote_candidate(host_candidate(*r)?)
                .map_err(|e| IceError(e.to_string()))?;
        }
        agent
            .start_connectivity_checks(
                now,
                cfg.ice_controlling,
                cfg.remote_ice.ufrag.clone(),
                cfg.remote_ice.pwd.clone(),
            )
            .map_err(|e| IceError(e.to_string()))?;
        Ok(Self {
            agent,
            local: cfg.local_addr,
            selected: None,
            failed: false,
        })
    }

    fn context(&self, peer: SocketAddr) -> TransportContext {
        TransportContext {
            local_addr: self.local,
            peer_addr: peer,
            transport_protocol: TransportProtocol::UDP,
            ecn: None,
        }
    }

    /// Feeds one STUN datagram; a malformed or unauthenticated one is dropped by the agent.
    pub(crate) fn handle_stun(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        let msg = TransportMessage {
            now,
            transport: self.context(from),
            message: BytesMut::from(data),
        };
        let ok = self.agent.handle_read(msg).is_ok();
        self.drain_events();
        ok
    }

    /// Whether non-STUN traffic from `from` comes over a checked pair.
    pub(crate) fn validates(&mut self, now: Instant, from: SocketAddr) -> bool {
        let ctx = self.context(from);
        self.agent.is_valid_non_stun_traffic(now, ctx)
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.agent.poll_event() {
            match ev.event {
                Event::SelectedCandidatePairChange(_, remote) => {
                    self.selected = Some(remote.addr());
                }
                Event::ConnectionStateChange(ConnectionState::Failed) => self.failed = true,
                _ => {}
            }
        }
    }

    /// Adds a remote candidate after the start (trickle); a duplicate changes nothing.
    pub(crate) fn add_remote(&mut self, addr: SocketAddr) -> Result<(), IceError> {
        self.agent
            .add_remote_candidate(host_candidate(addr)?)
            .map(|_| ())
            .map_err(|e| IceError(e.to_string()))
    }

    /// The remote address of the selected pair.
    pub(crate) fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Connectivity checks failed for good.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Copies the next STUN datagram into `buf`; returns (destination, length).
    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        loop {
            let msg = self.agent.poll_write()?;
            let n = msg.message.len();
            if n <= buf.len() {
                buf[..n].copy_from_slice(&msg.message);
                return Some((msg.transport.peer_addr, n));
            }
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let _ = self.agent.handle_timeout(now);
        self.drain_events();
    }

    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        self.agent.poll_timeout()
    }
}

impl super::Tether {
    /// Adds remote candidates learned after the open (trickle ICE); checks start at once.
    pub fn add_remote_candidates(&mut self, now: Instant, cands: &[SocketAddr]) {
        for c in cands {
            if self.cfg.remote_candidates.contains(c) {
                continue;
            }
            match self.ice.add_remote(*c) {
                Ok(()) => self.cfg.remote_candidates.push(*c),
                Err(e) => tracing::debug!(candidate = %c, "remote candidate refused: {e}"),
            }
        }
        self.ice.handle_timeout(now);
    }
}

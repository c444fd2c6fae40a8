//! Protobuf signals between the control process and a worker beside `TetherOpen`: trickled
//! candidates, the STUN service switch and queries in; learned reflexive addresses out.

use std::net::SocketAddr;
use std::time::Instant;

use conflux_shared::proto::{Reflexive, StunControl, TetherCandidates};
use prost::Message;

use super::Worker;
use crate::control::{MAX_SIGNAL_ADDRESSES, SIGNAL_REFLEXIVE};
use crate::hop::HopTransport;

/// Parses a signal's address list: every entry an `ip:port`, at most
/// [`MAX_SIGNAL_ADDRESSES`].
fn addresses(list: &[String]) -> Result<Vec<SocketAddr>, String> {
    if list.len() > MAX_SIGNAL_ADDRESSES {
        return Err(format!(
            "{} addresses (at most {MAX_SIGNAL_ADDRESSES})",
            list.len()
        ));
    }
    list.iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("{s:?} is not ip:port"))
        })
        .collect()
}

impl<T: HopTransport> Worker<T> {
    /// Applies a `TetherCandidates` signal; a bad one is logged and counted.
    pub(super) fn tether_candidates(&mut self, now: Instant, bytes: &[u8]) {
        let res = TetherCandidates::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|c| Ok((c.tether, addresses(&c.candidates)?)))
            .and_then(|(t, cands)| {
                if self.transport.add_candidates(now, t, &cands) {
                    Ok((t, cands.len()))
                } else {
                    Err(format!("tether {t} is not open here"))
                }
            });
        match res {
            Ok((t, n)) => {
                tracing::debug!(
                    worker = self.index,
                    tether = t,
                    n,
                    "remote candidates added"
                )
            }
            Err(e) => {
                self.opens.refused += 1;
                tracing::warn!(worker = self.index, "tether candidates refused: {e}");
            }
        }
    }

    /// Applies a `StunControl` signal; a bad one is logged and counted.
    pub(super) fn stun_control(&mut self, now: Instant, bytes: &[u8]) {
        match StunControl::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|c| Ok((c.service, addresses(&c.servers)?)))
        {
            Ok((service, servers)) => {
                self.transport.set_stun_service(service);
                self.transport.stun_query(now, &servers);
            }
            Err(e) => {
                self.opens.refused += 1;
                tracing::warn!(worker = self.index, "STUN control refused: {e}");
            }
        }
    }

    /// Tells the control process every reflexive address a STUN server reported.
    pub(super) fn report_reflexive(&mut self) {
        while let Some((server, mapped)) = self.transport.poll_reflexive() {
            let msg = Reflexive {
                worker: u32::from(self.index),
                server: server.to_string(),
                mapped: mapped.to_string(),
            }
            .encode_to_vec();
            // A full ring loses this answer; the control process asks again.
            if !matches!(
                self.rings.signals_out.send(SIGNAL_REFLEXIVE, &msg),
                Ok(true)
            ) {
                tracing::debug!(worker = self.index, "signals ring full: reflexive dropped");
            }
        }
    }
}

//! Gateways: LAN prefixes a node makes reachable through the overlay.
//!
//! Guardian authorizes the prefixes a node may route (its certificate's `routed_prefixes`);
//! the node advertises the ones it serves in its signed presence (`advertise_routes`).
//! A peer accepts an advertised prefix only when the gateway's certificate lists it, so a
//! node cannot claim a LAN it was not given; anything else is ignored and counted. Peers
//! then route the accepted prefixes to the gateway's stream (kernel routes on their TUN
//! device, data plane routes sealed for the gateway), and take packets from those
//! prefixes only on the gateway's stream. The gateway forwards between TUN and LAN.

use std::net::IpAddr;

use super::trust::TrustedCert;

/// A prefix in CIDR notation, e.g. `192.168.10.0/24`: `(network, length)`.
pub type Prefix = (IpAddr, u8);

/// Parses `a.b.c.d/len` (or IPv6): no host bits may be set.
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (ip, len) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: not CIDR (address/length)"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?}: {ip:?} is not an address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("{s:?}: {len:?} is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("{s:?}: length {len} is past {max}"));
    }
    if network(ip, len) != ip {
        return Err(format!("{s:?}: host bits are set"));
    }
    Ok((ip, len))
}

/// `ip` with every bit past `len` cleared.
fn network(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v) & mask))
        }
        IpAddr::V6(v) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v) & mask))
        }
    }
}

/// Whether `prefix` contains `ip`.
pub fn contains(prefix: Prefix, ip: IpAddr) -> bool {
    prefix.0.is_ipv4() == ip.is_ipv4() && network(ip, prefix.1) == prefix.0
}

/// The CIDR text of a prefix.
pub fn text(p: Prefix) -> String {
    format!("{}/{}", p.0, p.1)
}

/// The advertised prefixes `cert` authorizes, and how many it does not.
pub fn accepted(cert: &TrustedCert, advertised: &[String]) -> (Vec<Prefix>, u64) {
    let allowed: Vec<Prefix> = cert
        .routed_prefixes
        .iter()
        .filter_map(|p| parse_prefix(p).ok())
        .collect();
    let mut out = Vec::new();
    let mut refused = 0;
    for a in advertised.iter().take(64) {
        match parse_prefix(a) {
            Ok(p) if allowed.contains(&p) => {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            _ => refused += 1,
        }
    }
    refused += advertised.len().saturating_sub(64) as u64;
    (out, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_strictly() {
        assert_eq!(
            parse_prefix("192.168.10.0/24"),
            Ok(("192.168.10.0".parse().unwrap(), 24))
        );
        assert!(
            parse_prefix("192.168.10.1/24")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_prefix("192.168.10.0/33").is_err());
        assert!(parse_prefix("192.168.10.0").is_err());
        assert!(parse_prefix("lan/24").is_err());
        assert_eq!(
            parse_prefix("0.0.0.0/0"),
            Ok(("0.0.0.0".parse().unwrap(), 0))
        );
        assert!(parse_prefix("fd00::/8").is_ok());
        let p = parse_prefix("10.1.0.0/16").unwrap();
        assert!(contains(p, "10.1.200.3".parse().unwrap()));
        assert!(!contains(p, "10.2.0.1".parse().unwrap()));
        assert!(!contains(p, "::1".parse().unwrap()));
    }
}

//! What a tether is set up with: addresses, ICE credentials, roles, certificates, sizes.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::digest;
use conflux_shared::crypto::aead::Backend;
use rtc_dtls::crypto::Certificate;

use super::record::RECORD_OVERHEAD;
use super::sctp::AssocConfig;
use super::sctp::wire::{COMMON_HEADER_LEN, DATA_HEADER_LEN};

/// Path MTU the underlay is assumed to carry.
pub const UNDERLAY_MTU: usize = 1500;
/// IPv6 + UDP headers: the larger of the two address families, so one size serves both.
pub const IP_UDP_OVERHEAD: usize = 48;
/// Largest UDP payload a tether sends: one datagram never fragments on a 1,500-byte path.
/// Path MTU discovery searches up to it.
pub const MAX_DATAGRAM: usize = UNDERLAY_MTU - IP_UDP_OVERHEAD;
/// UDP payload every path is assumed to carry before probing: IPv6's minimum link MTU
/// (1,280 bytes, RFC 8200 §5) less the IPv6 and UDP headers. A tether starts there, and
/// falls back to it after a black hole.
pub const BASE_DATAGRAM: usize = 1280 - IP_UDP_OVERHEAD;
/// Largest SCTP packet: a datagram less the DTLS record's header, explicit nonce and tag.
pub const MAX_SCTP_PACKET: usize = MAX_DATAGRAM - RECORD_OVERHEAD;
/// Largest message (inner packet) a tether carries as one DATA chunk in one datagram.
///
/// 1,452-byte datagram − 37 (DTLS record) − 12 (SCTP common header) − 16 (DATA chunk header)
/// = 1,387, rounded down to 1,384 so the chunk's 4-byte padding still fits. The libraries'
/// defaults (rtc-sctp ≈1,160, str0m ≈1,062 bytes of payload) would split a full-size inner
/// packet into two chunks, and on an unreliable channel losing either loses the packet.
pub const MAX_MESSAGE: usize = (MAX_SCTP_PACKET - COMMON_HEADER_LEN - DATA_HEADER_LEN) & !3;
/// TUN MTU that follows: [`MAX_MESSAGE`] less the stream header and tag (32 bytes).
pub const TUN_MTU: usize = MAX_MESSAGE - conflux_shared::wire::data::OVERHEAD;

/// ICE username fragment and password of one side.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// Username fragment.
    pub ufrag: String,
    /// Password.
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

impl IceCredentials {
    /// Fresh random credentials (24-bit+ ufrag, 128-bit+ password, as RFC 8445 asks).
    pub fn random() -> Self {
        Self {
            ufrag: rtc_ice::rand::generate_ufrag(),
            pwd: rtc_ice::rand::generate_pwd(),
        }
    }
}

/// SHA-256 fingerprint of a DTLS certificate (RFC 8122).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        let d = digest::digest(&digest::SHA256, der);
        let mut f = [0u8; 32];
        f.copy_from_slice(d.as_ref());
        Self(f)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint string was not 32 colon-separated hex bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fingerprint must be 32 colon-separated hex bytes")]
pub struct FingerprintParseError;

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        let mut n = 0;
        for part in s.split(':') {
            if n == 32 || part.len() != 2 {
                return Err(FingerprintParseError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| FingerprintParseError)?;
            n += 1;
        }
        if n != 32 {
            return Err(FingerprintParseError);
        }
        Ok(Self(out))
    }
}

/// The DTLS certificate a node presents on its tethers (self-signed, ECDSA P-256).
#[derive(Clone)]
pub struct LocalCertificate {
    pub(crate) cert: Certificate,
    fingerprint: Fingerprint,
}

impl fmt::Debug for LocalCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCertificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A certificate could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DTLS certificate generation failed: {0}")]
pub struct CertificateError(String);

impl LocalCertificate {
    /// Generates a fresh self-signed certificate.
    pub fn generate() -> Result<Self, CertificateError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| CertificateError(e.to_string()))?;
        let cert = Certificate::generate_self_signed(vec!["conflux".to_owned()], provider.crypto())
            .map_err(|e| CertificateError(e.to_string()))?;
        let fingerprint = Fingerprint::of_der(cert.certificate[0].as_ref());
        Ok(Self { cert, fingerprint })
    }

    /// The fingerprint peers must expect.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// Everything one tether needs; the control process fills it from signalling.
#[derive(Debug, Clone)]
pub struct TetherConfig {
    /// The worker socket's address (the one host candidate).
    pub local_addr: SocketAddr,
    /// The peer's candidates.
    pub remote_candidates: Vec<SocketAddr>,
    /// This side's ICE credentials.
    pub local_ice: IceCredentials,
    /// The peer's ICE credentials.
    pub remote_ice: IceCredentials,
    /// This side nominates the ICE pair.
    pub ice_controlling: bool,
    /// This side is the DTLS client and the SCTP initiator.
    pub dtls_client: bool,
    /// This side's certificate.
    pub certificate: LocalCertificate,
    /// The peer's certificate fingerprint, as signed over the control channel.
    pub expected_fingerprint: Fingerprint,
    /// Negotiated channels, SCTP streams `0..channels`; packets are spread over them.
    pub channels: u16,
    /// Owned SCTP data path tunables.
    pub assoc: AssocConfig,
    /// Silence after which the tether is reported dead.
    pub dead_after: Duration,
    /// Longest set-up (ICE, DTLS, SCTP) before the tether gives up.
    pub setup_timeout: Duration,
    /// AES-GCM implementation of the record path.
    pub backend: Backend,
}

impl TetherConfig {
    /// A configuration with the defaults for everything but the parties.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local_addr: SocketAddr,
        remote_candidates: Vec<SocketAddr>,
        local_ice: IceCredentials,
        remote_ice: IceCredentials,
        controlling: bool,
        certificate: LocalCertificate,
        expected_fingerprint: Fingerprint,
    ) -> Self {
        Self {
            local_addr,
            remote_candidates,
            local_ice,
            remote_ice,
            ice_controlling: controlling,
            dtls_client: controlling,
            certificate,
            expected_fingerprint,
            channels: 4,
            assoc: AssocConfig::default(),
            dead_after: Duration::from_millis(1500),
            setup_timeout: Duration::from_secs(15),
            backend: Backend::AwsLc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_one_datagram() {
        assert_eq!(MAX_MESSAGE, 1384);
        assert_eq!(TUN_MTU, 1352);
        let packet = COMMON_HEADER_LEN + ((DATA_HEADER_LEN + MAX_MESSAGE + 3) & !3);
        assert!(packet + RECORD_OVERHEAD <= MAX_DATAGRAM);
    }

    #[test]
    fn fingerprint_text_roundtrip_and_rejects() {
        let f = Fingerprint::of_der(b"cert");
        let s = f.to_string();
        assert_eq!(s.len(), 32 * 3 - 1);
        assert_eq!(s.parse::<Fingerprint>().unwrap(), f);
        assert!("AB:CD".parse::<Fingerprint>().is_err());
        assert!(s.replace(':', "").parse::<Fingerprint>().is_err());
    }
}

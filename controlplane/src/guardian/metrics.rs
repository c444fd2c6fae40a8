//! Guardian's counters, served as Prometheus text at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type Labeled = Family<[(&'static str, &'static str); 1], Counter>;

/// Every counter Guardian keeps.
pub struct Metrics {
    registry: Registry,
    rejections: Labeled,
    registrations: Labeled,
    certificates: Counter,
    revocations: Counter,
    nats_pushes: Labeled,
    directory_writes: Labeled,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn ok_or_failed(ok: bool) -> [(&'static str, &'static str); 1] {
    [("result", if ok { "ok" } else { "failed" })]
}

impl Metrics {
    /// Registers every counter.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("guardian");
        let rejections = Labeled::default();
        let registrations = Labeled::default();
        let certificates = Counter::default();
        let revocations = Counter::default();
        let nats_pushes = Labeled::default();
        let directory_writes = Labeled::default();
        registry.register(
            "rejections",
            "Requests refused, by error code",
            rejections.clone(),
        );
        registry.register(
            "registrations",
            "Successful registrations, by credential",
            registrations.clone(),
        );
        registry.register(
            "certificates_issued",
            "Node certificates signed",
            certificates.clone(),
        );
        registry.register("revocations", "Nodes revoked", revocations.clone());
        registry.register(
            "nats_account_pushes",
            "Account JWTs pushed to nats-server, by result",
            nats_pushes.clone(),
        );
        registry.register(
            "directory_writes",
            "Directory records written to JetStream KV, by result",
            directory_writes.clone(),
        );
        Self {
            registry,
            rejections,
            registrations,
            certificates,
            revocations,
            nats_pushes,
            directory_writes,
        }
    }

    /// Counts a request refused with error `code`.
    pub fn rejected(&self, code: &'static str) {
        self.rejections.get_or_create(&[("reason", code)]).inc();
    }

    /// Requests refused with error `code` so far.
    pub fn rejections(&self, code: &'static str) -> u64 {
        self.rejections.get_or_create(&[("reason", code)]).get()
    }

    /// Counts a registration made with `credential`.
    pub fn registered(&self, credential: &'static str) {
        self.registrations
            .get_or_create(&[("credential", credential)])
            .inc();
    }

    /// Counts a signed certificate.
    pub fn certificate_issued(&self) {
        self.certificates.inc();
    }

    /// Counts a revocation.
    pub fn revoked(&self) {
        self.revocations.inc();
    }

    /// Counts an account JWT push.
    pub fn nats_push(&self, ok: bool) {
        self.nats_pushes.get_or_create(&ok_or_failed(ok)).inc();
    }

    /// Counts a directory write.
    pub fn directory_write(&self, ok: bool) {
        self.directory_writes.get_or_create(&ok_or_failed(ok)).inc();
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition() {
        let m = Metrics::new();
        m.rejected("token_expired");
        m.rejected("token_expired");
        m.registered("registration_token");
        let text = m.render();
        assert!(
            text.contains(r#"guardian_rejections_total{reason="token_expired"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"guardian_registrations_total{credential="registration_token"} 1"#)
        );
        assert_eq!(m.rejections("token_expired"), 2);
        assert_eq!(m.rejections("bad_json"), 0);
    }
}

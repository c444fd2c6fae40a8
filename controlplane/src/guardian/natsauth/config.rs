//! `guardian nats-config`: the operator's and system account's keys plus a nats-server
//! configuration in operator mode with a full account resolver and JetStream.
//!
//! Re-running it keeps the existing keys (realm accounts signed by the operator stay valid)
//! and rewrites the configuration.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::OperatorKeys;

/// What the written server configuration says.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Directory for keys, JWTs, the config and (by default) server state.
    pub dir: PathBuf,
    /// Client listen address, `host:port`.
    pub listen: String,
    /// JetStream storage directory; default `<dir>/jetstream`.
    pub jetstream_dir: Option<PathBuf>,
    /// Server name (JetStream needs a stable one).
    pub server_name: String,
}

/// The files [`write_server_config`] wrote.
#[derive(Debug, Clone)]
pub struct WrittenConfig {
    /// The nats-server configuration file.
    pub config: PathBuf,
    /// The operator's public key.
    pub operator: String,
    /// The system account's public key.
    pub system_account: String,
}

/// Quotes a string for the nats-server configuration format.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Writes keys (0600) and `nats-server.conf` into `opts.dir`; `now` is unix seconds.
pub fn write_server_config(opts: &ServerOptions, now: u64) -> anyhow::Result<WrittenConfig> {
    let dir = abs(&opts.dir)?;
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let keys = OperatorKeys::load_or_create(&dir)?;
    let resolver = dir.join("resolver");
    std::fs::create_dir_all(&resolver)?;
    let jetstream = abs(&opts
        .jetstream_dir
        .clone()
        .unwrap_or_else(|| dir.join("jetstream")))?;
    std::fs::create_dir_all(&jetstream)?;

    let operator_jwt = keys.operator_jwt(now)?;
    let system_jwt = keys.system_account_jwt(now)?;
    let system = keys.system_public();
    let text = format!(
        "# nats-server configuration for Conflux, written by `guardian nats-config`.\n\
         # Operator mode: Guardian creates one account per realm at runtime and pushes its\n\
         # JWT to the full resolver below through the system account.\n\
         server_name: {name}\n\
         listen: {listen}\n\
         operator: {operator_jwt}\n\
         system_account: {system_q}\n\
         resolver: {{\n  type: full\n  dir: {resolver}\n  allow_delete: true\n  interval: \"2m\"\n}}\n\
         resolver_preload: {{\n  {system}: {system_jwt}\n}}\n\
         jetstream: {{\n  store_dir: {jetstream}\n}}\n",
        name = quoted(&opts.server_name),
        system_q = quoted(&system),
        listen = quoted(&opts.listen),
        operator_jwt = quoted(&operator_jwt),
        resolver = quoted(&resolver.to_string_lossy()),
        system_jwt = quoted(&system_jwt),
        jetstream = quoted(&jetstream.to_string_lossy()),
    );
    let config = dir.join("nats-server.conf");
    std::fs::write(&config, text)?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("operator.jwt"), &operator_jwt)?;
    Ok(WrittenConfig {
        config,
        operator: keys.operator_public(),
        system_account: system,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerunning_keeps_the_keys_and_seeds_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ServerOptions {
            dir: dir.path().join("nats"),
            listen: "127.0.0.1:4222".into(),
            jetstream_dir: None,
            server_name: "conflux-test".into(),
        };
        let first = write_server_config(&opts, 1).unwrap();
        let second = write_server_config(&opts, 2).unwrap();
        assert_eq!(first.operator, second.operator);
        assert_eq!(first.system_account, second.system_account);
        for f in [
            super::super::OPERATOR_SEED_FILE,
            super::super::SYSTEM_SEED_FILE,
            "nats-server.conf",
        ] {
            let mode = std::fs::metadata(opts.dir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let text = std::fs::read_to_string(&second.config).unwrap();
        assert!(text.contains(&format!("system_account: \"{}\"", second.system_account)));
        assert!(text.contains("type: full"));
        assert!(text.contains("listen: \"127.0.0.1:4222\""));
    }
}

//! The `guardian` binary itself: plain HTTP on loopback and HTTPS with a certificate, the
//! admin token from a file, and a clean exit on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "bin-test-admin-token-0123456789";

/// A running guardian, killed when dropped.
struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let token = dir.join("admin-token");
        std::fs::write(&token, format!("{ADMIN}\n")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--admin-token-file")
            .arg(&token)
            .args(extra)
            .env_remove("GUARDIAN_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("guardian listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "guardian exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "guardian did not exit on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn create_realm(client: &reqwest::Client, base: &str) -> reqwest::StatusCode {
    client
        .post(format!("{base}/v1/realms"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "lab", "subnet": "10.80.0.0/16"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn plain_http_on_loopback_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let g = Running::start(dir.path(), &[]);
    assert!(g.base.starts_with("http://127.0.0.1:"), "{}", g.base);
    let client = reqwest::Client::new();
    let health: serde_json::Value = client
        .get(format!("{}/healthz", g.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(
        create_realm(&client, &g.base).await,
        reqwest::StatusCode::CREATED
    );
    let metrics = client
        .get(format!("{}/metrics", g.base))
        .send()
        .await
        .unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    g.terminate();
}

/// Runs openssl in `dir` with the concatenated argument lists.
fn openssl(dir: &Path, args: &[&[&str]]) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args(args.concat())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "openssl is needed to make test certificates (tests/setup.sh installs it)"
    );
}

#[tokio::test]
async fn https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key, ca) = (d.join("cert.pem"), d.join("key.pem"), d.join("ca.pem"));
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A test CA, and a server certificate for 127.0.0.1 signed by it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        d,
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ],
    );
    openssl(
        d,
        &[
            &["req"],
            &ec[..],
            &[
                "-subj",
                "/CN=guardian.test",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ],
    );
    openssl(
        d,
        &[
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
            ],
            &["-days", "1", "-extfile", "ext", "-out", "cert.pem"],
        ],
    );
    let g = Running::start(
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(g.base.starts_with("https://"), "{}", g.base);
    let root = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    assert_eq!(
        create_realm(&client, &g.base).await,
        reqwest::StatusCode::CREATED
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = g.base.replacen("https://", "http://", 1);
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err());
    // A client that does not trust the certificate is refused.
    assert!(reqwest::get(format!("{}/healthz", g.base)).await.is_err());
    g.terminate();
}

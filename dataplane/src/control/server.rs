//! The Unix socket a control process attaches through.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conflux_shared::ring::fdpass::send_fds;
use crossbeam::channel::{Sender, bounded};

use super::snapshot::{Snapshot, WorkerSnapshot};
use super::{Hello, PROTOCOL_VERSION, WORKER_FD_NAMES, WorkerFdSet, WorkerFds};

/// A request from the socket thread to a worker, answered on the channel it carries.
#[derive(Debug)]
pub enum Command {
    /// Describe your tables and counters.
    Snapshot(Sender<WorkerSnapshot>),
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or preparing the socket path failed.
    #[error("control socket {path}: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Listens for control processes and hands them the rings.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    sets: Vec<WorkerFdSet>,
    workers: Vec<Sender<Command>>,
    attached: Option<UnixStream>,
    dtls_fingerprint: String,
    /// Control processes that attached so far.
    pub attaches: u64,
}

impl Server {
    /// Binds `path` with mode 0600 (replacing a stale socket there).
    pub fn bind(
        path: &Path,
        sets: Vec<WorkerFdSet>,
        workers: Vec<Sender<Command>>,
    ) -> Result<Self, ServerError> {
        let err = |source| ServerError::Bind {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        // The socket file is created by bind; a restrictive umask closes the window before
        // the chmod below.
        // SAFETY: umask has no memory-safety preconditions.
        let old = unsafe { libc::umask(0o177) };
        let listener = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = listener.map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(Self {
            listener,
            path: path.to_owned(),
            sets,
            workers,
            attached: None,
            dtls_fingerprint: String::new(),
            attaches: 0,
        })
    }

    /// Sets the DTLS fingerprint `Hello` and snapshots announce (`"sha-256 AA:BB:…"`).
    pub fn set_dtls_fingerprint(&mut self, fingerprint: String) {
        self.dtls_fingerprint = fingerprint;
    }

    /// Serves until `stop` is set: accepts one control process at a time, hands it the
    /// rings and a snapshot, and notices when it goes away.
    pub fn serve(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll_once(Duration::from_millis(200));
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Waits up to `timeout` for a connection or for the attached process to leave.
    pub fn poll_once(&mut self, timeout: Duration) {
        let mut fds = [
            libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.attached.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
        if n <= 0 {
            return;
        }
        if fds[1].revents != 0 {
            self.check_attached();
        }
        if fds[0].revents & libc::POLLIN != 0 {
            self.accept();
        }
    }

    fn check_attached(&mut self) {
        let Some(s) = self.attached.as_mut() else {
            return;
        };
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            // The control process sends nothing on this socket; end of stream means it left.
            Ok(0) | Err(_) => {
                tracing::info!("control process detached; workers keep forwarding");
                self.attached = None;
            }
            Ok(_) => {}
        }
    }

    fn accept(&mut self) {
        let Ok((stream, _)) = self.listener.accept() else {
            return;
        };
        if self.attached.is_some() {
            self.check_attached();
        }
        if self.attached.is_some() {
            tracing::warn!("a second control process tried to attach; refused");
            return;
        }
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        match self.hand_over(&stream) {
            Ok(()) => {
                tracing::info!("control process attached");
                self.attaches += 1;
                self.attached = Some(stream);
            }
            Err(e) => tracing::warn!("hand-over to a control process failed: {e}"),
        }
    }

    /// Every worker's snapshot (waits up to a second for each).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            dtls_fingerprint: self.dtls_fingerprint.clone(),
            ..Default::default()
        };
        for (i, w) in self.workers.iter().enumerate() {
            let (tx, rx) = bounded(1);
            let got = w
                .send(Command::Snapshot(tx))
                .ok()
                .and_then(|()| rx.recv_timeout(Duration::from_secs(1)).ok());
            snap.workers.push(got.unwrap_or_else(|| WorkerSnapshot {
                worker: i as u16,
                ..Default::default()
            }));
        }
        snap
    }

    fn hand_over(&self, stream: &UnixStream) -> Result<(), Box<dyn std::error::Error>> {
        let snapshot = serde_json::to_vec(&self.snapshot())?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            workers: self.sets.len() as u16,
            snapshot_len: snapshot.len() as u32,
            dtls_fingerprint: self.dtls_fingerprint.clone(),
        };
        send_fds(stream.as_fd(), &serde_json::to_vec(&hello)?, &[])?;
        for (i, set) in self.sets.iter().enumerate() {
            let desc = WorkerFds {
                worker: i as u16,
                fds: WORKER_FD_NAMES.iter().map(|s| s.to_string()).collect(),
            };
            let fds: Vec<BorrowedFd<'_>> = set.fds.iter().map(|f| f.as_fd()).collect();
            send_fds(stream.as_fd(), &serde_json::to_vec(&desc)?, &fds)?;
        }
        (&*stream).write_all(&snapshot)?;
        Ok(())
    }
}

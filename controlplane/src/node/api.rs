//! The local API server: `conflux.v1.Control` (tonic) on a Unix socket with mode 0600.
//!
//! Each call becomes an [`ApiRequest`] for the driver, which owns the node's state and
//! answers on a oneshot channel; the server holds no state of its own.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use conflux_shared::taint::Taint;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::ctl::proto::{
    self,
    control_server::{Control, ControlServer},
};

/// A local API call for the driver to answer.
#[derive(Debug)]
pub enum ApiRequest {
    /// `Status`.
    Status(oneshot::Sender<proto::StatusReply>),
    /// `Peers`.
    Peers(oneshot::Sender<proto::PeersReply>),
    /// `Streams`.
    Streams(oneshot::Sender<proto::StreamsReply>),
    /// `TaintList`.
    TaintList(oneshot::Sender<proto::TaintReply>),
    /// `Overlay`.
    Overlay(oneshot::Sender<proto::OverlayReply>),
    /// `Geo`: show, or replace when the request says `set`.
    Geo {
        /// The request.
        request: proto::GeoRequest,
        /// The policy in force afterwards, or why it was refused.
        reply: oneshot::Sender<Result<proto::GeoReply, Status>>,
    },
    /// `TaintAdd` (`add`) or `TaintRemove`.
    TaintChange {
        /// Add rather than remove.
        add: bool,
        /// The taint.
        taint: Taint,
        /// Where the outcome goes once Guardian has answered.
        reply: oneshot::Sender<Result<proto::TaintReply, Status>>,
    },
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Another process already serves this socket.
    #[error("{0} is in use by a running node")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Creating, binding or setting permissions failed.
    #[error("local API socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// Binds the socket at `path` with mode 0600, replacing a stale socket left by a crash.
///
/// The socket is bound under a temporary name, restricted, then renamed into place, so it
/// is never reachable with wider permissions.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let io = |source| ApiError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io)?;
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(ApiError::NotASocket(path.to_owned())),
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ApiError::InUse(path.to_owned()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io)?;
    let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    requests: mpsc::Sender<ApiRequest>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ControlServer::new(Service { requests }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
}

/// Removes the socket file (at shutdown).
pub fn remove(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = fs::remove_file(path);
    }
}

/// Whether a node answers on `path` (for tools and tests).
pub async fn is_listening(path: &Path) -> bool {
    UnixStream::connect(path).await.is_ok()
}

struct Service {
    requests: mpsc::Sender<ApiRequest>,
}

impl Service {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        rx.await
            .map_err(|_| Status::unavailable("the node is shutting down"))
    }

    async fn change(&self, add: bool, taint: &str) -> Result<Response<proto::TaintReply>, Status> {
        let taint = Taint::new(taint)
            .map_err(|e| Status::invalid_argument(format!("taint {taint:?}: {e}")))?;
        self.ask(|reply| ApiRequest::TaintChange { add, taint, reply })
            .await?
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl Control for Service {
    async fn status(
        &self,
        _: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        self.ask(ApiRequest::Status).await.map(Response::new)
    }

    async fn peers(
        &self,
        _: Request<proto::PeersRequest>,
    ) -> Result<Response<proto::PeersReply>, Status> {
        self.ask(ApiRequest::Peers).await.map(Response::new)
    }

    async fn streams(
        &self,
        _: Request<proto::StreamsRequest>,
    ) -> Result<Response<proto::StreamsReply>, Status> {
        self.ask(ApiRequest::Streams).await.map(Response::new)
    }

    async fn overlay(
        &self,
        _: Request<proto::OverlayRequest>,
    ) -> Result<Response<proto::OverlayReply>, Status> {
        self.ask(ApiRequest::Overlay).await.map(Response::new)
    }

    async fn geo(
        &self,
        r: Request<proto::GeoRequest>,
    ) -> Result<Response<proto::GeoReply>, Status> {
        let request = r.into_inner();
        self.ask(|reply| ApiRequest::Geo { request, reply })
            .await?
            .map(Response::new)
    }

    async fn taint_list(
        &self,
        _: Request<proto::TaintListRequest>,
    ) -> Result<Response<proto::TaintReply>, Status> {
        self.ask(ApiRequest::TaintList).await.map(Response::new)
    }

    async fn taint_add(
        &self,
        r: Request<proto::TaintChange>,
    ) -> Result<Response<proto::TaintReply>, Status> {
        self.change(true, &r.into_inner().taint).await
    }

    async fn taint_remove(
        &self,
        r: Request<proto::TaintChange>,
    ) -> Result<Response<proto::TaintReply>, Status> {
        self.change(false, &r.into_inner().taint).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::client;

    /// A stand-in for the driver: answers every request from fixed state.
    async fn fake_driver(mut rx: mpsc::Receiver<ApiRequest>) {
        let mut taints = vec!["a".to_owned()];
        while let Some(r) = rx.recv().await {
            match r {
                ApiRequest::Status(tx) => {
                    let _ = tx.send(proto::StatusReply {
                        node_id: "ab".repeat(16),
                        ..Default::default()
                    });
                }
                ApiRequest::TaintChange { add, taint, reply } => {
                    if add {
                        taints.push(taint.to_string());
                    } else {
                        taints.retain(|t| t != taint.as_str());
                    }
                    let _ = reply.send(Ok(proto::TaintReply {
                        taints: taints.clone(),
                    }));
                }
                ApiRequest::TaintList(tx) => {
                    let _ = tx.send(proto::TaintReply {
                        taints: taints.clone(),
                    });
                }
                ApiRequest::Peers(tx) => drop(tx.send(Default::default())),
                ApiRequest::Streams(tx) => drop(tx.send(Default::default())),
                ApiRequest::Overlay(tx) => drop(tx.send(Default::default())),
                ApiRequest::Geo { reply, .. } => drop(reply.send(Ok(Default::default()))),
            }
        }
    }

    #[tokio::test]
    async fn socket_is_private_and_serves_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/conflux.sock");
        let listener = bind(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let (tx, rx) = mpsc::channel(8);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(fake_driver(rx));
        let server = tokio::spawn(serve(listener, tx, async {
            let _ = stop_rx.await;
        }));
        assert!(matches!(bind(&path), Err(ApiError::InUse(_))));

        let mut c = client::connect(&path).await.unwrap();
        let st = c
            .status(proto::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.node_id, "ab".repeat(16));
        let t = c
            .taint_add(proto::TaintChange { taint: "b".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.taints, ["a", "b"]);
        let err = c
            .taint_add(proto::TaintChange {
                taint: "Not Valid".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let t = c
            .taint_remove(proto::TaintChange { taint: "a".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.taints, ["b"]);

        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
        remove(&path);
        assert!(!path.exists());
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        fs::write(&path, b"x").unwrap();
        assert!(matches!(bind(&path), Err(ApiError::NotASocket(_))));
    }
}

//! A client of the local API over the node's Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::proto::control_client::ControlClient;

/// Why the node's local API could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (or it cannot be opened).
    #[error("cannot connect to the node's API at {path}: {source} (is conflux running?)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The gRPC channel could not be set up.
    #[error("local API transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Connects to the node listening on `socket`.
pub async fn connect(socket: &Path) -> Result<ControlClient<Channel>, ClientError> {
    // Fail early with the socket's own error rather than a generic transport one.
    let probe = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    drop(probe);
    let path = socket.to_owned();
    // The URI is required by the API but unused: every connection goes to the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(ControlClient::new(channel))
}

//! The operator's side of the local API: the generated service, a client over the node's
//! Unix socket, and rendering as tables or JSON for `conflux-ctl`.

pub mod client;
pub mod render;

/// The local API service `conflux.v1.Control`, generated from `shared/proto/ctl.proto`.
pub mod proto {
    // Generated code: field docs come from the .proto comments where there are any.
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("conflux.v1");
}

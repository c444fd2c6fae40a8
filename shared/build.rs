//! Compiles `proto/conflux.proto` into Rust (prost messages; tonic services behind the
//! `grpc` feature) with a vendored `protoc`, so building needs no system protobuf compiler.

use std::error::Error;

const PROTO: &str = "proto/conflux.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .client_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .server_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .compile_with_config(config, &[PROTO], &["proto"])?;
    Ok(())
}

//! Compiles `proto/conflux.proto` and `proto/overlay.proto` into Rust (prost messages; tonic services behind the
//! `grpc` feature) with a vendored `protoc`, so building needs no system protobuf compiler.

use std::error::Error;

const PROTOS: [&str; 2] = ["proto/conflux.proto", "proto/overlay.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .client_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .server_mod_attribute(".", "#[cfg(feature = \"grpc\")]")
        .compile_with_config(config, &PROTOS, &["proto"])?;
    Ok(())
}

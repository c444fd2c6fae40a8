//! Generates the local API (`shared/proto/ctl.proto`) with tonic, using a vendored `protoc`
//! so no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../shared/proto/ctl.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .btree_map(".")
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_with_config(config, &[proto], &["../shared/proto"])?;
    Ok(())
}

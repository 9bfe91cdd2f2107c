//! Compiles every `.proto` under `mirai/` once, with the vendored `protoc` (no system protoc is
//! needed), and writes the descriptor set used by gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut protos = Vec::new();
    for area in [
        "user",
        "stock",
        "prediction",
        "analytics",
        "notification",
        "events",
    ] {
        let dir = root.join("mirai").join(area).join("v1");
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "proto") {
                protos.push(path);
            }
        }
    }
    protos.sort();

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("mirai_descriptor.bin"))
        .compile_with_config(config, &protos, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed=mirai");
    Ok(())
}

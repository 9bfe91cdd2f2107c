//! Compiles every `.proto` under `mirai/` once, for the whole workspace.
//!
//! - `protoc` comes from the `protoc-bin-vendored` crate, so no system install is needed. Its
//!   path is handed to prost-build through `Config::protoc_executable` rather than the `PROTOC`
//!   environment variable: `std::env::set_var` is `unsafe` in edition 2024 and the workspace
//!   forbids unsafe code (and disallows the method outright).
//! - tonic-prost-build generates messages, clients and servers for every service.
//! - The encoded `FileDescriptorSet` of all packages is written to `$OUT_DIR/mirai_descriptor.bin`
//!   for gRPC server reflection (`mirai_proto::FILE_DESCRIPTOR_SET`).

use std::io;
use std::path::{Path, PathBuf};

/// Root of the `.proto` tree, relative to this crate; also the include path, so imports read
/// `import "mirai/stock/v1/stock.proto";`.
const PROTO_ROOT: &str = "mirai";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut protos = Vec::new();
    collect_protos(&manifest_dir.join(PROTO_ROOT), &mut protos)?;
    // A stable order keeps the generated code and the descriptor set reproducible.
    protos.sort();

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    // The crate root first (our imports), then the vendored well-known types
    // (`google/protobuf/*.proto`), so nothing depends on what the machine has installed.
    let includes = [manifest_dir, protoc_bin_vendored::include_path()?];

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs a service has not implemented yet answer UNIMPLEMENTED instead of failing to
        // compile, so each service grows one RPC at a time.
        .generate_default_stubs(true)
        .file_descriptor_set_path(out_dir.join("mirai_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;

    // Rebuild when any file in the tree (including a new one) changes, or this script does.
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}

/// Every `*.proto` file below `dir`, recursively, so a new package (`mirai/stock/v2/`) is
/// picked up without touching this script.
fn collect_protos(dir: &Path, protos: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, protos)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "proto")
        {
            protos.push(path);
        }
    }
    Ok(())
}

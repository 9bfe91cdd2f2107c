//! Compiles every `.proto` under `mirai/` once, for the whole workspace.
//!
//! - `protoc` comes from the `protoc-bin-vendored` crate, so no system install is needed. Its
//!   path is handed to prost-build through `Config::protoc_executable` rather than the `PROTOC`
//!   environment variable: `std::env::set_var` is `unsafe` in edition 2024 and the workspace
//!   forbids unsafe code (and disallows the method outright).
//! - tonic-prost-build generates messages, clients and servers for every service.
//! - The encoded `FileDescriptorSet` of all packages is written to `$OUT_DIR/mirai_descriptor.bin`
//!   for gRPC server reflection (`mirai_proto::FILE_DESCRIPTOR_SET`).
//! - That descriptor set is then decoded again and every method of every service is written to
//!   `$OUT_DIR/methods.rs` (`mirai_proto::methods::ALL`): its gRPC path, its
//!   `idempotency_level` method option and whether it streams. The client retry layer reads
//!   that table, so the `.proto` options are the only place where idempotency is decided.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message as _;
use prost_types::method_options::IdempotencyLevel;

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

    let descriptor_path = out_dir.join("mirai_descriptor.bin");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // RPCs a service has not implemented yet answer UNIMPLEMENTED instead of failing to
        // compile, so each service grows one RPC at a time.
        .generate_default_stubs(true)
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, &protos, &includes)?;

    let descriptors = prost_types::FileDescriptorSet::decode(&*std::fs::read(&descriptor_path)?)?;
    std::fs::write(out_dir.join("methods.rs"), methods_table(&descriptors)?)?;

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

/// The source of `methods.rs`: the value of `methods::ALL`, a slice expression with one `Method`
/// per RPC of every service in `set`, sorted by path (byte order, as `str::cmp`, so
/// `methods::lookup` can binary-search it).
fn methods_table(set: &prost_types::FileDescriptorSet) -> Result<String, String> {
    let mut rows = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let service_name = if package.is_empty() {
                service.name().to_owned()
            } else {
                format!("{package}.{}", service.name())
            };
            for method in &service.method {
                let idempotency = match method
                    .options
                    .as_ref()
                    .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                        o.idempotency_level()
                    }) {
                    IdempotencyLevel::IdempotencyUnknown => "Unknown",
                    IdempotencyLevel::NoSideEffects => "NoSideEffects",
                    IdempotencyLevel::Idempotent => "Idempotent",
                };
                rows.push((
                    format!("/{service_name}/{}", method.name()),
                    idempotency,
                    method.client_streaming(),
                    method.server_streaming(),
                ));
            }
        }
    }
    rows.sort();
    if let Some(pair) = rows.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("method {} is described twice", pair[0].0));
    }
    let mut out = String::from(
        "// @generated by mirai-proto's build.rs from the `idempotency_level` options of the\n\
         // `.proto` files; included as the value of `mirai_proto::methods::ALL`. Do not edit:\n\
         // change the option in the `.proto` instead.\n\
         &[\n",
    );
    for (path, idempotency, client_streaming, server_streaming) in &rows {
        // Debug formatting of a `str` is a valid Rust string literal.
        writeln!(
            out,
            "    Method {{ path: {path:?}, idempotency: Idempotency::{idempotency}, \
             client_streaming: {client_streaming}, server_streaming: {server_streaming} }},"
        )
        .map_err(|e| e.to_string())?;
    }
    out.push_str("]\n");
    Ok(out)
}

//! Compiles `proto/` with protox (no system `protoc`) into prost/tonic code,
//! and writes the encoded descriptor set that reflection, the REST gateway and
//! the scope table read at run time.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "posthorn/v1/options.proto",
    "posthorn/v1/email.proto",
    "posthorn/v1/send.proto",
    "posthorn/v1/messages.proto",
    "posthorn/v1/contacts.proto",
    "posthorn/v1/suppressions.proto",
    "posthorn/v1/templates.proto",
    "posthorn/v1/webhooks.proto",
    // Served through reflection so clients can decode error details.
    "google/rpc/error_details.proto",
    "google/rpc/code.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;

    // `encode_file_descriptor_set` keeps extension options such as
    // `google.api.http`; re-encoding `file_descriptor_set()` would drop them.
    std::fs::write(
        out_dir.join("posthorn_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, but a request that does not decode is answered
        // INVALID_ARGUMENT naming the field, not INTERNAL.
        .codec_path("crate::api::codec::ProtoCodec")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

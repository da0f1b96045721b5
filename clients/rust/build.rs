//! Compiles the repository's `proto/` (no system `protoc`: protox) into the
//! messages and tonic clients, without the servers.

const PROTOS: &[&str] = &[
    "posthorn/v1/send.proto",
    "posthorn/v1/messages.proto",
    "posthorn/v1/contacts.proto",
    "posthorn/v1/suppressions.proto",
    "posthorn/v1/templates.proto",
    "posthorn/v1/webhooks.proto",
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../../proto");
    let mut compiler = protox::Compiler::new(["../../proto"])?;
    compiler.include_imports(true);
    compiler.open_files(PROTOS)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

//! Compiles proto/ with `protox` (a pure-Rust protobuf compiler), so a fresh
//! machine builds without a system `protoc`, and writes the descriptor set that
//! gRPC server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "vigil/v1/common.proto",
    "vigil/v1/auth_gateway.proto",
    "vigil/v1/admin.proto",
    "vigil/events/v1/envelope.proto",
    "vigil/events/v1/events.proto",
    "vigil/rpc/v1/challenge.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=vigil");
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("vigil_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(cfg!(feature = "client"))
        .build_server(cfg!(feature = "server"))
        .compile_fds(fds)?;
    Ok(())
}

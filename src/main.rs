use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    posthorn::cli::run().await
}

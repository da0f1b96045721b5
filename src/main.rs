use std::process::ExitCode;

// glibc's allocator spends much of an accept's CPU consolidating and
// unlinking chunks freed on other threads; mimalloc's per-thread heaps do
// not (BENCHMARKS.md, B1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    posthorn::cli::run().await
}

use std::process::ExitCode;

// glibc's allocator spends much of an accept's CPU consolidating and
// unlinking chunks freed on other threads; mimalloc's per-thread heaps do
// not (BENCHMARKS.md, B1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    without_transparent_huge_pages();
    with_open_files_raised();
    // Before anything opens a database (see the module).
    posthorn::storage::prepare_sqlite();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(posthorn::cli::run())
}

/// Where the kernel backs memory with transparent huge pages by default,
/// every 2 MB region mimalloc touches becomes resident whole: an idle
/// server held 27 MB of anonymous memory instead of 8 (BENCHMARKS.md, B7).
/// Turned off for this process before the runtime's threads allocate.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only; it sets a
    // flag on this process and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// A server holds a descriptor for every client connection (each watch
/// stream keeps one), SMTP connection and database file; the soft limit
/// many systems start a process with, 1,024, is reached by a thousand
/// watchers, and then connections wait in the kernel's queue unanswered.
/// Raised to the hard limit, as Go's runtime does for every program.
fn with_open_files_raised() {
    #[cfg(target_os = "linux")]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write only the struct
        // they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

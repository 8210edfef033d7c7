//! `clawdesk`: the headless command line and its benchmarks. Glue only: parse, call the
//! runtime and the libraries, print. Nothing depends on this crate.

mod bench;
mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    yield_idle_cpu_workers();
    fix_thread_count();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,enigo=error")),
        )
        .init();
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    }
}

/// The exit status a script can branch on: 3 when the guard refused an action (nothing was
/// sent: a disallowed app, a password field, a person's no, the stop key), 1 for any other
/// error, 2 for a command line clap could not read.
fn exit_code(error: &anyhow::Error) -> std::process::ExitCode {
    use clawdesk_desktop::DesktopError;
    use clawdesk_desktop::guard::Refusal;
    use clawdesk_runtime::RuntimeError;
    // The stop key mid-action is the desktop's own error, which the runtime wraps whole.
    let refused = error.chain().any(|cause| {
        cause.downcast_ref::<Refusal>().is_some()
            || cause
                .downcast_ref::<DesktopError>()
                .is_some_and(DesktopError::is_stop)
            || matches!(
                cause.downcast_ref::<RuntimeError>(),
                Some(RuntimeError::Desktop(d)) if d.is_stop()
            )
    });
    if refused {
        std::process::ExitCode::from(3)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Model passes allocate and free many tensors of a few MB each. glibc returns such blocks to
/// the kernel with munmap and maps them afresh, so every tensor paid page faults and page
/// clearing (about a tenth of a CPU train step, measured with perf). Keep them in the heap.
fn keep_freed_memory() {
    const KEEP: libc::c_int = 512 * 1024 * 1024;
    // SAFETY: mallopt only adjusts allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
    }
}

/// candle's CPU worker pool spins 25,000 times before sleeping when idle. On a 2-core machine the
/// spinning worker takes the core the matrix kernels' threads need: perf showed a spinning
/// `candle-bp-0` in 15% of a train step's samples, and a limit of 100 raised prefill throughput
/// by about a quarter on the small bench shape. A value the user set is kept.
fn yield_idle_cpu_workers() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: called first thing in main, before any thread is spawned.
        unsafe { std::env::set_var(VAR, "100") };
    }
}

/// Unless `RAYON_NUM_THREADS` is set, candle works out its thread count on every CPU matrix
/// product by reading `/proc/cpuinfo`: strace counted 64,694 opens in 40 s of `bench learn`,
/// and the kernel's time generating that file exceeded the model's own user time. Setting the
/// variable to the count rayon uses anyway makes each answer an environment lookup. A value
/// the user set is kept.
fn fix_thread_count() {
    const VAR: &str = "RAYON_NUM_THREADS";
    if std::env::var_os(VAR).is_none() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: called first thing in main, before any thread is spawned.
        unsafe { std::env::set_var(VAR, threads.to_string()) };
    }
}

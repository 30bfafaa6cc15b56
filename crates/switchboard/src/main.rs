//! The `switchboard` binary: load the configuration (exit 64 when invalid, before binding
//! anything), start logging, bind, serve until SIGINT/SIGTERM, drain, exit 0.

use std::process::ExitCode;

use switchboard::config::{Config, LoadError, LogFormat};
use switchboard::{AppState, Listeners, Shutdown};
use tracing_subscriber::EnvFilter;

/// Profiling builds count allocations (`--features count-alloc`, used by scripts/profile.sh).
#[cfg(feature = "count-alloc")]
#[global_allocator]
static ALLOCATOR: switchboard::alloc_count::Counting = switchboard::alloc_count::Counting;

/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        // --help, --version, or a flag clap cannot read: clap prints and picks the status.
        Err(LoadError::Cli(e)) => e.exit(),
        Err(LoadError::Invalid(e)) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_tracing(&config);
    switchboard::metrics::count_panics();
    // Every peer is a socket: lift the soft descriptor limit to the hard one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    if config.print_config {
        let budget = switchboard::tcp::Budget::current();
        print!(
            "{}",
            switchboard::config::file::render(&config, budget.sockets)
        );
        println!(
            "# descriptor limit {}: {} connections, {} of them WebSocket/Socket.io by default",
            budget.descriptors, budget.connections, budget.sockets
        );
        return ExitCode::SUCCESS;
    }
    // One worker per core the process may use (`taskset`, affinity masks): more workers
    // than cores only adds context switches to every relayed message.
    let workers = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listeners = match Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let http = listeners.http.local_addr().ok();
        let signaling = listeners.signaling.local_addr().ok();
        let socketio = listeners.socketio.local_addr().ok();
        tracing::info!(
            http = ?http,
            signaling = ?signaling,
            socketio = ?socketio,
            production = config.is_production(),
            "switchboard listening"
        );
        // A plain line for scripts and tests that start the binary on port 0.
        if let (Some(h), Some(s), Some(io)) = (http, signaling, socketio) {
            println!("listening http={h} signaling={s} socketio={io}");
        }
        let app = AppState::new(config, Shutdown::new());
        // Serve from a worker thread, not from `block_on` on the main thread: accepted
        // connections are then spawned on the worker that accepted them instead of being
        // handed across threads (a wake-up and a context switch per connection).
        let served = tokio::spawn(switchboard::serve(
            app,
            listeners,
            switchboard::shutdown::signal(),
        ))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(format!(
        "{level},tower_http=warn,socketioxide=warn,engineioxide=warn",
        level = config.log_level
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.effective_log_format() {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text | LogFormat::Auto => builder.init(),
    }
}

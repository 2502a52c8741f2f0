//! The `beorg-hotfolder` command: a thin layer over the library (see `lib.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use beorg_emulator::{self as emulator, EmulatorConfig};
use beorg_hotfolder::cli::check;
use beorg_hotfolder::config::Config;
use beorg_hotfolder::logging::{self, LogFormat};

/// Watches scanner hot folders, sends each scan to the Beorg recognition API, and writes a
/// JSON sidecar beside the original in a done or failed folder.
#[derive(Parser)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Shape of log lines on stderr (RUST_LOG sets the level).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT.
    Run {
        /// The TOML config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show what the running daemon is doing: files waiting, in flight, finished today,
    /// the account's standing and the last error.
    Status {
        /// The TOML config file the daemon runs with.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what happened to a file: one line per transition from the journal (claimed,
    /// hashed, preflight, submits, polls, where it was finished, deliveries, requeues).
    /// Exit status 1 if nothing matches.
    Explain {
        /// The original's path (in done/, review/, failed/, the inbox or its work folder),
        /// its name as the scanner wrote it (every match, newest first), or a document id.
        query: String,
        /// The TOML config file the daemon runs with.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Print a JSON array (one object per file, with its history) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put originals (files or set folders) from an inbox's failed/ or review/ folder back
    /// into that inbox, to be sent again as new; their sidecars are removed (kept in the
    /// journal's history). Exit status 1 if any path was refused (each refusal says why).
    Requeue {
        /// Originals in failed/ or review/ (not their sidecars).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The TOML config file the daemon runs with.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage the review station's reviewers (the users file of `[review_station]`).
    Reviewer {
        #[command(subcommand)]
        action: ReviewerAction,
    },
    /// Serve the local stand-in for the Beorg API (for trying a config without a contract).
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8089", value_name = "ADDR")]
        listen: SocketAddr,
        /// Token the emulator accepts.
        #[arg(long, default_value = "emulator-token")]
        token: String,
        /// machine_uid the emulator accepts.
        #[arg(long, default_value = "emulator-machine")]
        machine_uid: String,
        /// Multiplies the vendor's processing times (1.0 = as documented).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
    },
    /// Check a config the way `run` would, plus its folders (and with --online, the
    /// credentials): one line per finding, exit status 1 if anything would stop files.
    Check {
        /// The TOML config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Also ask the API whether the token and machine_uid are accepted (one request,
        /// no document is created).
        #[arg(long)]
        online: bool,
        /// Check the folders against this systemd unit's sandbox (default: the installed
        /// unit, if it runs this config).
        #[arg(long, value_name = "UNIT_FILE")]
        unit: Option<PathBuf>,
    },
    /// Run the emulator and the daemon together over DIR, with sample scans.
    Demo {
        /// Folder for the demo's inboxes, results, state and config.
        #[arg(default_value = "demo")]
        dir: PathBuf,
    },
    /// Write the man pages and shell completions into DIR (for the package; see
    /// `src/cli/docs.rs`).
    #[command(hide = true)]
    GenerateDocs {
        /// Folder to write `man/` and `completions/` into.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReviewerAction {
    /// Add a reviewer, or set a new password for one: asks for it twice on a terminal, or
    /// reads one line from stdin.
    Add {
        /// The reviewer's login name.
        name: String,
        /// The users file (`review_station.users_file`).
        #[arg(long, value_name = "FILE")]
        users_file: PathBuf,
    },
    /// Remove a reviewer.
    Remove {
        /// The reviewer's login name.
        name: String,
        /// The users file (`review_station.users_file`).
        #[arg(long, value_name = "FILE")]
        users_file: PathBuf,
    },
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(command())
}

/// At most two glibc malloc arenas, before any thread starts. glibc gives a thread that
/// meets a busy arena a new one (up to 8 per core) and keeps what each arena freed, so a
/// daemon whose journal calls briefly fan out over tokio's blocking threads held memory by
/// the number of arenas, not by its work: 36 MB against 25 MB in the soak's workload on a
/// big journal, more on a server with more cores. Two arenas keep the intake thread and the
/// runtime from waiting on one lock.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's <malloc.h>: `int mallopt(int param, int value)`, M_ARENA_MAX = -8.
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_ARENA_MAX: std::ffi::c_int = -8;
        // SAFETY: called once at start, before any other thread exists; mallopt only sets a
        // malloc parameter.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

async fn command() -> ExitCode {
    beorg_hotfolder::store::journal::fail_points::setup_from_env();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // A panic anywhere ends the process non-zero (after an ERROR line): systemd restarts it,
    // rather than a dead task leaving files stuck in a daemon that looks healthy. (The
    // emulator alone answers a panic in a handler with a 500 and carries on.)
    if !matches!(cli.command, Command::Emulator { .. }) {
        logging::exit_on_panic();
    }
    let result = match cli.command {
        Command::Run { config } => run(config).await,
        Command::Status { config, json } => status(config, json),
        Command::Explain {
            query,
            config,
            json,
        } => return finish(explain(config, &query, json)),
        Command::Requeue { paths, config } => return finish(requeue(config, &paths).await),
        Command::Reviewer { action } => reviewer(action),
        Command::Check {
            config,
            online,
            unit,
        } => {
            let options = check::Options { online, unit };
            let report = check::check(&config, &options).await;
            print!("{}", report.render());
            return check::exit_code(&report);
        }
        Command::Emulator {
            listen,
            token,
            machine_uid,
            time_scale,
        } => {
            let config = EmulatorConfig {
                token,
                machine_uid,
                time_scale,
                ..EmulatorConfig::default()
            };
            emulator::serve_forever(config, listen).await
        }
        Command::Demo { dir } => beorg_hotfolder::cli::demo::run(dir).await,
        Command::GenerateDocs { dir } => {
            beorg_hotfolder::cli::docs::write_all(Cli::command(), &dir)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("beorg-hotfolder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&config_path)?;
    let (reload_tx, reloads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(reload_on_sighup(config_path, reload_tx));
    beorg_hotfolder::daemon::run_reloadable(config, reloads, shutdown_signal()).await
}

/// SIGHUP (`systemctl reload`): read the config again; a bad one is refused with an ERROR that
/// names the key, and the running config stays.
async fn reload_on_sighup(path: PathBuf, reloads: tokio::sync::mpsc::UnboundedSender<Config>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by restarting the service");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
        match Config::load(&path) {
            Ok(config) => {
                if reloads.send(config).is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("the new config is refused ({e}); the running one stays"),
        }
    }
}

/// The exit status of a command that answers found / not found: 0, 1, or 1 after an error.
fn finish(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("beorg-hotfolder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the stories of the files `query` names; false (and says so) if it names none.
fn explain(config_path: PathBuf, query: &str, json: bool) -> anyhow::Result<bool> {
    use beorg_hotfolder::cli::explain;
    let config = Config::load_without_token(&config_path)?;
    let stories = explain::explain(&config, query)?;
    let text = if json {
        format!("{}\n", serde_json::to_string_pretty(&stories)?)
    } else {
        explain::render(&config, &stories)
    };
    // A reader that stops early (`| head`) is no error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    if stories.is_empty() {
        eprintln!("beorg-hotfolder: {}", explain::unknown(&config, query));
    }
    Ok(!stories.is_empty())
}

/// Requeues `paths`, one line each; false if any was refused.
async fn requeue(config_path: PathBuf, paths: &[PathBuf]) -> anyhow::Result<bool> {
    let config = Config::load_without_token(&config_path)?;
    let answers = beorg_hotfolder::cli::requeue::requeue(&config, paths).await?;
    let mut all = true;
    for answer in answers {
        match answer {
            Ok(done) => println!("{done}"),
            Err(refused) => {
                all = false;
                eprintln!("beorg-hotfolder: {refused}");
            }
        }
    }
    Ok(all)
}

/// `reviewer add|remove`: one line saying what changed.
fn reviewer(action: ReviewerAction) -> anyhow::Result<()> {
    use beorg_hotfolder::cli::reviewer;
    let done = match action {
        ReviewerAction::Add { name, users_file } => reviewer::add(&users_file, &name)?,
        ReviewerAction::Remove { name, users_file } => reviewer::remove(&users_file, &name)?,
    };
    println!("{done}");
    Ok(())
}

fn status(config_path: PathBuf, json: bool) -> anyhow::Result<()> {
    let config = Config::load_without_token(&config_path)?;
    let report = beorg_hotfolder::cli::status::report(&config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", beorg_hotfolder::cli::status::render(&report));
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

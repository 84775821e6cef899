//! `squall`: the command line of a Squall cluster (Storm's `storm`
//! command): daemons, topology submission and control.

mod client;
mod dev_zookeeper;
mod logs;
mod monitor;

use anyhow::Context;
use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// Squall: a Storm-model stream processor.
#[derive(Parser)]
#[command(name = "squall", version, about)]
struct Cli {
    /// Config file (Storm key names); default `squall.yaml` when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override a config key: `-c key=value` (repeatable; before or
    /// after the subcommand, see [`parse_cli`]).
    #[arg(short = 'c', value_name = "KEY=VALUE")]
    conf: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Nimbus (master) daemon.
    Nimbus,
    /// Run a supervisor (host agent) daemon.
    Supervisor,
    /// Upload a topology binary and run it to submit its topology.
    Jar {
        /// The topology binary.
        binary: PathBuf,
        /// Arguments for it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Kill a topology: deactivate, wait, remove.
    Kill {
        /// The topology's name.
        name: String,
        /// Seconds to wait between deactivation and removal (default: its
        /// message timeout).
        #[arg(short = 'w', long = "wait")]
        wait: Option<u64>,
    },
    /// List live topologies.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a topology's executors, stats and errors.
    Info {
        /// The topology's name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Resume a topology's spouts.
    Activate {
        /// The topology's name.
        name: String,
    },
    /// Pause a topology's spouts.
    Deactivate {
        /// The topology's name.
        name: String,
    },
    /// Spread a topology over new worker or executor counts.
    Rebalance {
        /// The topology's name.
        name: String,
        /// Seconds to wait after deactivating (default: message timeout).
        #[arg(short = 'w', long = "wait")]
        wait: Option<u64>,
        /// New number of workers.
        #[arg(short = 'n', long = "num-workers")]
        workers: Option<u32>,
        /// New executor count of a component: `-e component=N` (repeatable).
        #[arg(short = 'e', long = "executor", value_name = "COMPONENT=N")]
        executors: Vec<String>,
    },
    /// Change a running topology's log levels for a while, without a
    /// restart (Storm's `set_log_level`); prints the overrides in force.
    #[command(name = "set_log_level", alias = "set-log-level")]
    SetLogLevel {
        /// The topology's name.
        name: String,
        /// Set a logger: `-l LOGGER=LEVEL[:TIMEOUT_SECS]` (repeatable).
        /// LOGGER is `ROOT` or a target such as `my_crate::module`; LEVEL
        /// TRACE, DEBUG, INFO, WARN, ERROR or OFF; without a timeout the
        /// level stays until removed.
        #[arg(short = 'l', value_name = "LOGGER=LEVEL[:TIMEOUT_SECS]")]
        set: Vec<String>,
        /// Remove a logger's override (repeatable).
        #[arg(short = 'r', value_name = "LOGGER")]
        remove: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a topology's worker logs through its supervisors' log
    /// viewers: the last bytes of each, then (with -f) what they write.
    Logs {
        /// The topology's name.
        name: String,
        /// Only the workers running this component (`-c COMPONENT` works
        /// too: a `-c` without `=` names the component).
        #[arg(long = "component")]
        component: Option<String>,
        /// Keep printing new lines until interrupted.
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Bytes of each log's tail printed first.
        #[arg(long, default_value_t = 10_000)]
        bytes: u64,
        /// A bearer token for log viewers with security on (default:
        /// $SQUALL_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
    /// Sample a running topology's emitted tuples (Storm's event logger):
    /// on for the topology or one component at a percentage, or off. The
    /// samples are written beside each worker's log (`events-<port>.log`);
    /// the UI's component page links to them.
    Debug {
        /// The topology's name.
        name: String,
        /// Only this component (default: the whole topology).
        #[arg(long)]
        component: Option<String>,
        /// Percentage of emitted tuples sampled, in (0, 100].
        #[arg(long, default_value_t = 10.0)]
        pct: f64,
        /// Turn sampling off.
        #[arg(long)]
        off: bool,
    },
    /// Print Squall's version and its RPC protocol version.
    Version,
    /// Print a setting as this command sees it (defaults, the config file,
    /// then `-c`); without KEY, every setting (Storm's `getconf`).
    Getconf {
        /// The Storm key name, e.g. `nimbus.seeds`.
        key: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The workers' latest heartbeats, as the leading Nimbus holds them.
    Heartbeats {
        #[command(subcommand)]
        command: HeartbeatsCommand,
    },
    /// The topology binaries in Nimbus's blob store.
    Blobstore {
        #[command(subcommand)]
        command: BlobstoreCommand,
    },
    /// Stop every worker this host's supervisor runs (its supervisor
    /// starts them again); run on the supervisor's host with its config.
    #[command(name = "kill_workers", alias = "kill-workers")]
    KillWorkers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the web UI, Storm's REST API and Prometheus `/metrics` on
    /// `ui.host`:`ui.port` (default 127.0.0.1:8080).
    Ui,
    /// Print a component's throughput on a stream every interval (Storm's
    /// `storm monitor`).
    Monitor {
        /// The topology's name.
        name: String,
        /// Seconds between rows.
        #[arg(short = 'i', long = "interval", default_value_t = 4)]
        interval: u64,
        /// The component (without it, the components are listed).
        #[arg(short = 'm', long = "component")]
        component: Option<String>,
        /// The stream.
        #[arg(short = 's', long = "stream", default_value = "default")]
        stream: String,
        /// What to count.
        #[arg(short = 'w', long = "watch", value_enum, default_value = "emitted")]
        watch: monitor::Watch,
        /// Stop after this many rows (default: run until interrupted).
        #[arg(short = 'n', long = "count")]
        count: Option<u64>,
    },
    /// Create a CA, daemon and user certificates and config files that turn
    /// security on (mutual TLS, Nimbus authorization) in DIR.
    SecureInit {
        /// The folder (made if missing; refused if it holds a CA).
        dir: PathBuf,
        /// A user to make a certificate for (repeatable; default `admin`);
        /// the first is a Nimbus admin.
        #[arg(long = "user")]
        users: Vec<String>,
        /// A host name or IP address daemons serve at besides `localhost`
        /// and `127.0.0.1` (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// Print a bearer token for USER (the REST API and the UI with
    /// security on), signed with the key in `squall.token.key.path`.
    Token {
        /// The principal the token names.
        user: String,
        /// Days it stays valid.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Run a throwaway ZooKeeper (Debian's `zookeeper` package) on loopback.
    DevZookeeper {
        /// Client port (default `storm.zookeeper.port`).
        #[arg(long)]
        port: Option<u16>,
        /// Data directory (default: a fresh temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run a topology binary in a LocalCluster for a while.
    Local {
        /// Seconds to run (default 20).
        #[arg(long, default_value_t = 20)]
        ttl: u64,
        /// The topology binary.
        binary: PathBuf,
        /// Arguments for it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `squall heartbeats ...`.
#[derive(Subcommand)]
enum HeartbeatsCommand {
    /// One row per worker: topology, slot, last beat, uptime, executors.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `squall blobstore ...`.
#[derive(Subcommand)]
enum BlobstoreCommand {
    /// One row per binary: key (sha256), size, the topologies running it.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A daemon's logging: stderr, and `<storm.local.dir>/logs/<daemon>.log`
/// rotated like a worker's log (`worker.log.max.file.bytes`,
/// `worker.log.max.files`), which its host's log viewer serves.
fn init_daemon_logging(c: &squall::ClusterConfig, daemon: &str) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let file = squall_worker::logging::LogFile {
        path: PathBuf::from(&c.local_dir)
            .join("logs")
            .join(format!("{daemon}.log")),
        max_file_bytes: c.worker_log_max_file_bytes,
        max_files: c.worker_log_max_files,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match file.open() {
        Ok(out) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr.and(out))
                .try_init();
        }
        Err(e) => {
            init_logging();
            tracing::warn!("logging to stderr only: {e}");
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<i32> {
    if let Command::Logs { component, .. } = &mut cli.command {
        // `squall logs NAME -c COMPONENT`: the global `-c` takes KEY=VALUE.
        let (named, conf): (Vec<String>, Vec<String>) =
            cli.conf.drain(..).partition(|c| !c.contains('='));
        cli.conf = conf;
        match (named.as_slice(), &component) {
            ([], _) => {}
            ([one], None) => *component = Some(one.clone()),
            _ => anyhow::bail!("squall logs follows one component at most, not {named:?}"),
        }
    }
    let default = PathBuf::from("squall.yaml");
    let path = cli
        .config
        .clone()
        .or_else(|| default.is_file().then_some(default));
    let config = squall::load_config(path.as_deref(), &cli.conf)?;
    let c = &config.cluster;
    match cli.command {
        Command::Nimbus => {
            init_daemon_logging(c, "nimbus");
            squall_nimbus::run(c)?;
            Ok(0)
        }
        Command::Supervisor => {
            init_daemon_logging(c, "supervisor");
            // The log viewer is Storm's separate daemon; a supervisor runs
            // it, and without one still runs its workers.
            let logviewer = match squall_ui::logviewer::start(c) {
                Ok(port) => Some(port),
                Err(e) => {
                    tracing::error!("log viewer not serving (logviewer.port): {e}");
                    None
                }
            };
            squall_supervisor::run(c, logviewer)?;
            Ok(0)
        }
        Command::Ui => {
            init_daemon_logging(c, "ui");
            squall_ui::run(c)?;
            Ok(0)
        }
        Command::Monitor {
            name,
            interval,
            component,
            stream,
            watch,
            count,
        } => monitor::run(
            c,
            &monitor::Options {
                name,
                interval,
                component,
                stream,
                watch,
                count,
            },
        ),
        Command::Jar { binary, args } => client::jar(c, &cli.conf, &binary, &args),
        Command::Kill { name, wait } => client::kill(c, &name, wait),
        Command::List { json } => client::list(c, json),
        Command::Info { name, json } => client::info(c, &name, json),
        Command::Version => {
            println!("Squall {}", env!("CARGO_PKG_VERSION"));
            println!("RPC protocol {}", squall_cluster::frame::PROTOCOL_VERSION);
            Ok(0)
        }
        Command::Getconf { key, json } => client::getconf(&config, key.as_deref(), json),
        Command::Heartbeats {
            command: HeartbeatsCommand::List { json },
        } => client::heartbeats(c, json),
        Command::Blobstore {
            command: BlobstoreCommand::List { json },
        } => client::blobs(c, json),
        Command::KillWorkers { json } => client::kill_workers(c, json),
        Command::Debug {
            name,
            component,
            pct,
            off,
        } => client::debug(c, &name, component.as_deref(), !off, pct),
        Command::Logs {
            name,
            component,
            follow,
            bytes,
            token,
        } => logs::logs(
            c,
            &logs::LogsArgs {
                name: &name,
                component: component.as_deref(),
                bytes,
                follow,
                token: token.as_deref(),
            },
        ),
        Command::SetLogLevel {
            name,
            set,
            remove,
            json,
        } => client::set_log_level(c, &name, &set, &remove, json),
        Command::Activate { name } => client::activate(c, &name, true),
        Command::Deactivate { name } => client::activate(c, &name, false),
        Command::Rebalance {
            name,
            wait,
            workers,
            executors,
        } => client::rebalance(c, &name, wait, workers, &executors),
        Command::SecureInit { dir, users, hosts } => {
            let files = squall::secure_init::secure_init(&dir, &users, &hosts)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(0)
        }
        Command::Token { user, days } => {
            let path = c.token_key_path.as_deref().context(
                "squall.token.key.path is not set (daemon.yaml of `squall secure-init` sets it)",
            )?;
            let key = squall_ui::token::TokenKey::load(std::path::Path::new(path))
                .map_err(|e| anyhow::anyhow!(e))?;
            let expires = squall_cluster::now_ms() / 1000 + days.saturating_mul(86_400);
            println!("{}", key.issue(&user, expires));
            Ok(0)
        }
        Command::DevZookeeper { port, dir } => {
            dev_zookeeper::run(port.unwrap_or(c.zookeeper_port), dir)
        }
        Command::Local { ttl, binary, args } => {
            let status = std::process::Command::new(&binary)
                .args(&args)
                .env(squall::submitter::env::LOCAL_TTL, ttl.to_string())
                .env(squall::submitter::env::JAR_CONF, cli.conf.join("\n"))
                .status()
                .with_context(|| format!("cannot run {}", binary.display()))?;
            Ok(status.code().unwrap_or(1))
        }
    }
}

/// The id of the `-c` every subcommand takes.
const CONF_AFTER: &str = "conf_after";

/// Gives `cmd` and its subcommands, at every depth, a `-c KEY=VALUE`.
fn with_conf_after(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|s| {
        with_conf_after(s).arg(
            Arg::new(CONF_AFTER)
                .short('c')
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("Override a config key (repeatable)"),
        )
    })
}

/// The command line, with every `-c` kept: those before the subcommand
/// first, then those after it, in order. (A clap global argument given on
/// both sides keeps only the subcommand's.)
fn parse_cli() -> Cli {
    let matches = with_conf_after(Cli::command()).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut level = matches.subcommand();
    while let Some((_, m)) = level {
        if let Some(values) = m.get_many::<String>(CONF_AFTER) {
            cli.conf.extend(values.cloned());
        }
        level = m.subcommand();
    }
    cli
}

fn main() {
    let cli = parse_cli();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("squall: {}", msg.replace('\n', " "));
            std::process::exit(1)
        }
    }
}

//! The `plugboard` command line: a thin layer over the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plugboard::config::{Config, LogFormat};
use plugboard::services::app::App;

/// Omnichannel messaging host with WebAssembly channel and routing plugins.
#[derive(Parser)]
#[command(name = "plugboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host. Without --config it runs the embedded default (one demo SMS channel).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and the plugins it names, then exit.
    Check {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the embedded default configuration (a starting point for your own).
    DefaultConfig,
    /// Bring the storage's schema up to date, then exit (`serve` does it too, at start).
    Migrate {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Operate on one configured channel.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Run one channel plugin's handle-webhook on one recorded request, or a recorded corpus
    /// against a baseline (golden replay); print the outcome as JSON.
    Replay(Box<plugboard::cli::replay::ReplayArgs>),
    /// Run a candidate router over a queue's recorded routing decisions and report how its
    /// decisions differ from the recorded ones (or a baseline router's); exits 1 when they do.
    Simulate(Box<plugboard::cli::simulate::SimulateArgs>),
    /// Ask the running host to redrive the webhooks CHANNEL kept when its plugin failed
    /// (through the plugin as it is now); exits 1 when some fail again.
    Redrive {
        /// The channel instance's name.
        #[arg(long)]
        channel: String,
        /// The TOML configuration file of the running host (its listen address, admin token).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List or inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Start a plugin crate: `plugboard new channel my-provider`.
    New {
        /// What to start.
        template: plugboard::cli::scaffold::Template,
        /// The plugin's name (its file becomes NAME.wasm).
        name: String,
        /// Where to create the crate's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The sdk/ directory of a Plugboard checkout (default: the one this binary was built
        /// from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every plugin a host would load (bundled, and plugins_dir's with --config): world, kind,
    /// version, contract, SHA-256, settings and what uses them; and the files refused.
    List {
        /// The TOML configuration file (its plugins_dir and limits).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One component file: its manifest, contract, imports and exports, size, memory at start,
    /// and whether this host can load it (if not, why).
    Inspect {
        /// The component.
        file: PathBuf,
        /// The TOML configuration file (its limits).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Check the channel's provider credentials with a harmless authenticated request.
    Test {
        /// The channel instance's name.
        name: String,
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    })
}

/// Starts the log on standard error in `format`: JSON lines, or plain lines with colour only
/// on a terminal. The filter comes from `RUST_LOG` (default `info`).
fn init_log(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => log.json().flatten_event(true).init(),
        LogFormat::Plain => log.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The log format of the configuration `cli` names (plain when it cannot be read: the error
/// is told once the log is up).
fn log_format(cli: &Cli) -> LogFormat {
    let path = match &cli.command {
        Command::Serve { config } | Command::Migrate { config } => config.as_ref(),
        Command::Check { config } => Some(config),
        _ => None,
    };
    match path {
        Some(p) => Config::load(p)
            .map(|c| c.server.log_format)
            .unwrap_or_default(),
        None => LogFormat::Plain,
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_log(log_format(&cli));
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugboard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { config } => runtime.block_on(async {
            // First, so SIGHUP, SIGINT or SIGTERM during start-up is never a kill.
            let signals = plugboard::http::server::Signals::install()?;
            let app = App::build(load(config.as_ref())?).await?;
            let app = match config {
                Some(path) => app.with_config_file(path),
                None => app,
            };
            plugboard::http::server::serve_with(app, signals).await
        }),
        Command::Migrate { config } => runtime.block_on(async {
            let config = load(config.as_ref())?;
            println!("{}", plugboard::services::app::migrate_storage(&config).await?);
            Ok(())
        }),
        Command::Check { config } => runtime.block_on(async {
            let config = load(Some(&config))?;
            let scratch = Scratch::new()?;
            let app = App::build_detached(config, scratch.path()).await?;
            let catalog = app.catalog();
            for r in &catalog.plugins.refused {
                println!("refused {} ({}): {}", r.name, r.source, r.error);
            }
            println!(
                "ok: {} channel(s), {} queue(s), {} agent(s); plugins: {} channel, {} router, {} refused",
                catalog.channels.len(),
                catalog.queues.len(),
                app.config().agents.len(),
                catalog.plugins.channels.len(),
                catalog.plugins.routers.len(),
                catalog.plugins.refused.len()
            );
            for reason in catalog.unavailable.values() {
                println!("unavailable: {reason}");
            }
            if !catalog.unavailable.is_empty() {
                anyhow::bail!(
                    "{} channel(s) cannot serve: their plugin was refused (see the lines above); `serve` would start and answer 503 for them",
                    catalog.unavailable.len()
                );
            }
            Ok(())
        }),
        Command::Channel {
            command: ChannelCommand::Test { name, config },
        } => runtime.block_on(async {
            let config = load(Some(&config))?;
            let scratch = Scratch::new()?;
            let app = App::build_detached(config, scratch.path()).await?;
            let channel = app
                .catalog()
                .channels
                .get(&name)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no channel named {name:?} in the configuration"))?;
            let client = plugboard::runtime::provider_http::ProviderClient::new(
                app.config().limits.provider_timeout(),
            )?;
            let outcome = plugboard::services::credential::check(&app.sandbox, &client, &channel).await;
            println!("{}", serde_json::json!({"channel": name, "outcome": outcome}));
            if outcome == plugboard::services::credential::CheckOutcome::Ok {
                return Ok(());
            }
            drop(app);
            drop(scratch);
            std::process::exit(1);
        }),
        Command::Redrive { channel, config } => runtime.block_on(async {
            let config = load(config.as_ref())?;
            let (report, done) = plugboard::cli::redrive::run(&config, &channel).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !done {
                std::process::exit(1);
            }
            Ok(())
        }),
        Command::Replay(args) => report_and_exit(plugboard::cli::replay::run(&args)),
        Command::Simulate(args) => report_and_exit(plugboard::cli::simulate::run(&args)),
        Command::Plugins {
            command: PluginsCommand::List { config, json },
        } => {
            let config = config.as_deref().map(Config::load).transpose()?;
            let listing = plugboard::cli::plugins::list(config.as_ref())?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&listing)?),
                false => plugboard::cli::plugins::print_listing(&listing),
            }
            Ok(())
        }
        Command::Plugins {
            command: PluginsCommand::Inspect { file, config, json },
        } => {
            let limits = match config {
                Some(path) => Config::load(&path)?.limits,
                None => Default::default(),
            };
            let inspection = plugboard::cli::plugins::inspect(&file, limits)?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&inspection)?),
                false => plugboard::cli::plugins::print_inspection(&inspection),
            }
            if !inspection.loadable {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::New {
            template,
            name,
            dir,
            sdk,
        } => {
            let sdk = sdk
                .or_else(plugboard::cli::scaffold::default_sdk)
                .ok_or_else(|| anyhow::anyhow!("pass --sdk PATH: the sdk/ directory of a Plugboard checkout"))?;
            let root = plugboard::cli::scaffold::create(template, &name, &dir, &sdk)?;
            println!("created {}", root.display());
            println!("next: cd {} && cargo test && cargo build --release --target wasm32-wasip2", root.display());
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{}", plugboard::config::EMBEDDED_DEFAULT);
            Ok(())
        }
    }
}

/// A throwaway data directory for commands that do not touch the real data, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "plugboard-cli-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints a tool's JSON report and exits with its status; a tool that could not run says why
/// on stderr and exits `EXIT_CANNOT_RUN`.
fn report_and_exit(result: anyhow::Result<(serde_json::Value, i32)>) -> ! {
    match result {
        Ok((output, code)) => {
            match serde_json::to_string_pretty(&output) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("plugboard: {e}"),
            }
            std::process::exit(code);
        }
        Err(e) => {
            eprintln!("plugboard: {e:#}");
            std::process::exit(plugboard::cli::replay::EXIT_CANNOT_RUN);
        }
    }
}

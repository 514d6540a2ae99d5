//! The `plugboard` command line: a thin layer over the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use plugboard::app::App;
use plugboard::config::Config;

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
    /// Run one channel plugin's handle-webhook on one recorded request; print the outcome as JSON.
    Replay(plugboard::replay::ReplayArgs),
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match config {
        Some(path) => Config::load(path)?,
        None => Config::embedded_default()?,
    })
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
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
            let config = load(config.as_ref())?;
            let app = App::build(config)?;
            plugboard::server::serve(app).await
        }),
        Command::Check { config } => runtime.block_on(async {
            let config = load(Some(&config))?;
            let app = App::build(config)?;
            for r in &app.plugins.refused {
                println!("refused {} ({}): {}", r.name, r.source, r.error);
            }
            println!(
                "ok: {} channel(s), {} queue(s), {} agent(s); plugins: {} channel, {} router, {} refused",
                app.channels.len(),
                app.queues.len(),
                app.config.agents.len(),
                app.plugins.channels.len(),
                app.plugins.routers.len(),
                app.plugins.refused.len()
            );
            Ok(())
        }),
        Command::Replay(args) => {
            let (output, code) = plugboard::replay::run(&args)?;
            println!("{}", serde_json::to_string_pretty(&output)?);
            std::process::exit(code);
        }
        Command::DefaultConfig => {
            print!("{}", plugboard::config::EMBEDDED_DEFAULT);
            Ok(())
        }
    }
}

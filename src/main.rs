//! The `ringway` command line: `run`, `check` and `config --defaults`. anyhow lives here
//! and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringway::compiled::Compiled;
use ringway::config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringway",
    version,
    about = "Thread-per-core HTTP/1.1, HTTP/2 and gRPC API gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGTERM/SIGINT, then drain in-flight requests and exit.
    Run {
        /// Config file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Binary upgrade: take the listening sockets of the process serving
        /// `server.upgrade_socket`, which then drains and exits.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate and compile the config; print a summary or every error.
    Check {
        /// Config file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print configuration information.
    Config {
        /// Print the complete default configuration as TOML: every section and field with
        /// its default (see docs/configuration.md).
        #[arg(long, required = true)]
        defaults: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Config { defaults: _ } => match config::default_config_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, upgrade } => {
            ringway::logger::init();
            match run(&config, upgrade) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let file = path.display().to_string();
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let built = Compiled::build(&cfg, &file).and_then(|c| {
        ringway::tls::build(&cfg, &file)?;
        Ok(c)
    });
    match built {
        Ok(c) => {
            let servers: usize = c.upstreams.iter().map(|u| u.servers.len()).sum();
            println!(
                "{file}: ok: {} listener(s), {} worker(s), {} upstream(s) with {servers} server(s), {} route(s)",
                c.listen.len(),
                c.workers,
                c.upstreams.len(),
                c.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, upgrade: bool) -> anyhow::Result<()> {
    let file = path.display().to_string();
    let cfg = config::load(path)?;
    ringway::runtime::run_with(&cfg, &file, ringway::runtime::Options { upgrade })?;
    Ok(())
}

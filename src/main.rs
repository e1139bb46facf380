//! The `kiln` binary: no subcommand opens the window; subcommands run headless.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiln::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    init_logging();
    let cli = match Cli::try_parse_from(cli::args::packer_style(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap: 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    // Unlocked handles: each write takes the lock briefly, so other threads (the Ctrl-C
    // handler, tracing) can still write to the terminal while a command runs.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let name = match &cli.command {
        Some(Command::Validate(_)) => "validate",
        Some(Command::Inspect(_)) => "inspect",
        Some(Command::Build(_)) => "build",
        Some(Command::Publish(_)) => "publish",
        Some(Command::Doctor(_)) => "doctor",
        Some(Command::Seed(_)) => "seed",
        Some(Command::Templates(_)) => "templates",
        Some(Command::Credentials(_)) => "credentials",
        Some(Command::Keys(_)) => "keys",
        Some(Command::History(_)) => "history",
        Some(Command::Cache(_)) => "cache",
        Some(Command::Completions(_)) => "completions",
        Some(Command::Man(_)) => "man",
        None => "",
    };
    let result = match &cli.command {
        Some(Command::Validate(args)) => cli::validate::run(args, &mut out, &mut err),
        Some(Command::Inspect(args)) => cli::inspect::run(args, &mut out, &mut err),
        Some(Command::Build(args)) => cli::build::run(args, &mut out, &mut err),
        Some(Command::Publish(args)) => cli::publish::run(args, &mut out, &mut err),
        Some(Command::Doctor(args)) => cli::doctor::run(args, &mut out, &mut err),
        Some(Command::Seed(args)) => cli::seed::run(args, &mut out, &mut err),
        Some(Command::Templates(args)) => cli::templates::run(args, &mut out, &mut err),
        Some(Command::Credentials(args)) => cli::credentials::run(args, &mut out, &mut err),
        Some(Command::Keys(args)) => cli::keys::run(args, &mut out, &mut err),
        Some(Command::History(args)) => cli::history::run(args, &mut out, &mut err),
        Some(Command::Cache(args)) => cli::cache::run(args, &mut out, &mut err),
        Some(Command::Completions(args)) => cli::completions::run(args, &mut out, &mut err),
        Some(Command::Man(args)) => cli::man::run(args, &mut out, &mut err),
        None => run_window(started),
    };
    let result: anyhow::Result<i32> = result.with_context(|| format!("kiln {name}"));
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let _ = writeln!(err, "{e:#}");
            ExitCode::from(1)
        }
    }
}

/// Opens the window on a tokio runtime that lives as long as it; exit 0 when it is closed.
fn run_window(started: std::time::Instant) -> std::io::Result<i32> {
    let runtime = tokio::runtime::Runtime::new()?;
    kiln::gui::run(kiln::gui::default_config(runtime.handle().clone(), started)).map_err(|e| {
        std::io::Error::other(format!(
            "cannot open the window (is DISPLAY set?): {e}; without a desktop, use the subcommands (`kiln build RECIPE`, `kiln --help`)"
        ))
    })?;
    Ok(0)
}

/// Logs go to standard error; `KILN_LOG` sets the filter (e.g. `KILN_LOG=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

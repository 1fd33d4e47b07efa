//! `wasmgate-testkit run <plugin.wasm> <scenario.json>...`: run scenario files against a plugin
//! in the simulated gateway (see `wasmgate_testkit::scenario` for the format). Exit status 0
//! when every scenario passes, 1 otherwise; one line per scenario on standard error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasmgate-testkit",
    about = "Test a wasmgate plugin against a simulated gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files against a plugin component.
    Run {
        /// The plugin component (`wasmgate:plugin@0.2.0`).
        plugin: PathBuf,
        /// Scenario files (JSON).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

#[allow(clippy::print_stderr)]
fn main() -> anyhow::Result<ExitCode> {
    let Command::Run { plugin, scenarios } = Cli::parse().command;
    let mut failed = 0;
    for path in &scenarios {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let scenario: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        match wasmgate_testkit::scenario::run(&plugin, &scenario) {
            Ok(steps) => eprintln!("ok    {} ({steps} steps)", path.display()),
            Err(e) => {
                failed += 1;
                eprintln!("FAIL  {}: {e}", path.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

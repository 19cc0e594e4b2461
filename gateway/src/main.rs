use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    match gateway::cli::main(gateway::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

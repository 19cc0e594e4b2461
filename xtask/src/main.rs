//! `cargo xtask`: the project's tasks, in Rust so they run wherever cargo does.
//!
//! - `setup`: install (idempotently) what the build and the tests need.
//! - `test`: every check and test, as CI runs them.
//! - `lab`: the demo lab (hub and spokes in network namespaces).

mod lab;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "The project's tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install what the build and the tests need (apt packages, nightly's
    /// rust-src, bpf-linker) and check the kernel facts; idempotent.
    Setup,
    /// Run everything CI runs: setup, rustfmt, clippy, build, cargo test.
    Test(test::TestArgs),
    /// Start the demo lab: the hub and spokes in network namespaces.
    Lab(LabArgs),
}

/// Options of `cargo xtask lab` (run by `lab::run`).
#[derive(Args, Debug)]
pub struct LabArgs {
    /// Leave the lab running until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Task::Setup => setup::run(),
        Task::Test(args) => test::run(args),
        Task::Lab(args) => lab::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_args_pass_the_rest_to_cargo_test() {
        let cli = Cli::try_parse_from([
            "xtask",
            "test",
            "--no-clippy",
            "--",
            "ike::",
            "--",
            "--nocapture",
        ])
        .expect("valid command line");
        let Task::Test(args) = cli.command else {
            panic!("not the test task: {cli:?}");
        };
        assert!(args.no_clippy && !args.skip_setup);
        assert_eq!(args.passthrough, ["ike::", "--", "--nocapture"]);
        // Without `--`, a stray word is an error rather than a silent filter.
        assert!(Cli::try_parse_from(["xtask", "test", "ike::"]).is_err());
    }

    #[test]
    fn lab_keep() {
        let cli = Cli::try_parse_from(["xtask", "lab", "--keep"]).expect("valid command line");
        assert!(matches!(cli.command, Task::Lab(LabArgs { keep: true })));
    }
}

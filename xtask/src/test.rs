//! `cargo xtask test`: the one command that runs every check and test (CI
//! runs it through `.ci/run`): setup, rustfmt, clippy, build, `cargo test`,
//! and last the VM tier (`cargo xtask vm-test`: the kernel datapath smoke
//! test under a Debian kernel in qemu, about 15 s here), skipped only when
//! qemu and busybox cannot be installed (`--no-vm` skips it too).
//!
//! `gateway-ebpf` is excluded from the host-target cargo commands: it is a
//! `#![no_std]` bpfel-unknown-none program that cannot be built for the host;
//! `gateway/build.rs` builds it (with nightly) as part of building `gateway`.

use std::{process::Command, time::Instant};

use anyhow::bail;
use clap::Args;

use crate::{
    setup,
    util::{self, Step},
    vm,
};

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Do not run `setup` first (it is quick when everything is there).
    #[arg(long)]
    pub skip_setup: bool,
    /// Skip clippy, for quick local loops.
    #[arg(long)]
    pub no_clippy: bool,
    /// Skip the VM tier (`cargo xtask vm-test`), for quick local loops.
    #[arg(long)]
    pub no_vm: bool,
    /// Passed on to `cargo test` after `--`: a test name filter, or
    /// `-- --nocapture` for the test binaries.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub passthrough: Vec<String>,
}

/// Workspace members never built for the host (see the module docs).
const HOST_EXCLUDED: &[&str] = &["gateway-ebpf"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Skipped,
}

struct StepResult {
    name: String,
    outcome: Outcome,
    seconds: String,
}

struct Runner {
    results: Vec<StepResult>,
}

impl Runner {
    /// Runs one step: announces it, times it, records and prints the outcome.
    fn step(&mut self, name: &str, body: impl FnOnce() -> anyhow::Result<()>) -> bool {
        let step = Step::new("test", name);
        println!("test: {name} ...");
        let result = body();
        let seconds = util::human(step.elapsed());
        let outcome = match &result {
            Ok(()) => {
                println!("test: {name} ... ok in {seconds}");
                Outcome::Ok
            }
            Err(error) => {
                println!("test: {name} ... FAILED in {seconds}: {error:#}");
                Outcome::Failed
            }
        };
        self.results.push(StepResult {
            name: step.name().to_owned(),
            outcome,
            seconds,
        });
        outcome == Outcome::Ok
    }

    fn skip(&mut self, name: &str, why: &str) {
        println!("test: {name} ... skipped ({why})");
        self.results.push(StepResult {
            name: name.to_owned(),
            outcome: Outcome::Skipped,
            seconds: String::new(),
        });
    }

    fn failed(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .map(|r| r.name.as_str())
            .collect()
    }

    fn summary(&self) -> String {
        self.results
            .iter()
            .map(|r| match r.outcome {
                Outcome::Ok => format!("{} ok {}", r.name, r.seconds),
                Outcome::Failed => format!("{} FAILED {}", r.name, r.seconds),
                Outcome::Skipped => format!("{} skipped", r.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `cargo <subcommand> --workspace --exclude gateway-ebpf ...`
fn cargo_workspace(subcommand: &str) -> Command {
    let mut cmd = util::command("cargo");
    cmd.args([subcommand, "--workspace"]);
    for package in HOST_EXCLUDED {
        cmd.args(["--exclude", package]);
    }
    cmd
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut runner = Runner {
        results: Vec::new(),
    };

    // Nothing else can be trusted without the prerequisites: stop here.
    if args.skip_setup {
        runner.skip("setup", "--skip-setup");
    } else if !runner.step("setup", setup::run) {
        return finish(&runner, started);
    }

    // fmt and clippy findings do not stop the build and the tests: one run
    // reports everything.
    runner.step("fmt", || {
        util::run(util::command("cargo").args(["fmt", "--all", "--", "--check"]))
    });
    if args.no_clippy {
        runner.skip("clippy", "--no-clippy");
    } else {
        runner.step("clippy", || {
            util::run(cargo_workspace("clippy").args(["--all-targets", "--", "-D", "warnings"]))
        });
    }
    let built = runner.step("build", || {
        util::run(cargo_workspace("build").arg("--all-targets"))
    });
    if built {
        runner.step("test", || {
            util::run(cargo_workspace("test").args(&args.passthrough))
        });
    } else {
        runner.skip("test", "the build failed");
    }
    // The kernel datapath tier, in a VM (vm.rs): it runs host binaries, so
    // it comes after the build.
    if args.no_vm {
        runner.skip("vm", "--no-vm");
    } else if !built {
        runner.skip("vm", "the build failed");
    } else if let Some(why) = vm::cannot_run() {
        runner.skip("vm", &format!("the VM tier cannot run here: {why}"));
    } else {
        runner.step("vm", || {
            vm::run_step(&vm::VmArgs {
                command: vm::kernel_tier_command()?,
                timeout: vm::KERNEL_TIER_TIMEOUT,
                ..vm::VmArgs::default()
            })
        });
    }
    finish(&runner, started)
}

fn finish(runner: &Runner, started: Instant) -> anyhow::Result<()> {
    println!("test: summary: {}", runner.summary());
    let failed = runner.failed();
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    println!(
        "test: all steps passed in {}",
        util::human(started.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_commands_leave_out_the_bpf_program() {
        let line = util::command_line(cargo_workspace("clippy").args(["--all-targets"]));
        assert_eq!(
            line,
            "cargo clippy --workspace --exclude gateway-ebpf --all-targets"
        );
    }

    #[test]
    fn summary_lists_every_step() {
        let mut runner = Runner {
            results: Vec::new(),
        };
        runner.skip("setup", "--skip-setup");
        assert!(runner.step("fmt", || Ok(())));
        assert!(!runner.step("clippy", || bail!("boom")));
        let summary = runner.summary();
        assert!(summary.starts_with("setup skipped, fmt ok "), "{summary}");
        assert!(summary.contains(", clippy FAILED "), "{summary}");
        assert_eq!(runner.failed(), ["clippy"]);
    }
}

//! `cargo xtask`: the project's tasks, in Rust so they run wherever cargo does.
//!
//! - `setup`: install (idempotently) what the build and the tests need.
//! - `test`: every check and test, as CI runs them.
//! - `demo`: the FlexVPN lab end to end (hub, own spokes, a strongSwan
//!   spoke, traffic through the userspace datapath).
//! - `lab`: the XDP and IKE lab (hub and spokes in network namespaces).
//! - `bench-throughput`: TCP through our hub and spoke vs strongSwan's.
//! - `bench-scale`: N BGP dynamic neighbors against the hub's speaker.
//! - `vm-test`: the kernel datapath tier, a command in a Debian kernel under
//!   qemu (default: the GRE-over-ESP smoke test).

mod bench;
mod bench_bgp;
mod bench_ike;
mod demo;
mod lab;
mod setup;
mod test;
mod util;
mod vm;

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
    /// The FlexVPN lab end to end: a hub, two own spokes and a strongSwan
    /// spoke in network namespaces, traffic between their LANs.
    Demo(demo::DemoArgs),
    /// The XDP and IKE lab: the hub's uplink filter and strongSwan spokes
    /// dialling in.
    Lab(LabArgs),
    /// TCP throughput spoke LAN -> hub LAN through our gateways and through
    /// strongSwan, in one lab run (for BENCHMARKS.md).
    BenchThroughput(bench::BenchArgs),
    /// N BGP dynamic neighbors up and one prefix each exchanged with the
    /// hub's speaker over loopback (for BENCHMARKS.md).
    BenchScale(bench::ScaleArgs),
    /// N simulated spokes (`loadgen`) dialling our hub and strongSwan's
    /// charon over UDP in namespaces: SAs/s, setup times, CPU and memory
    /// per SA, side by side (for BENCHMARKS.md).
    BenchIkeScale(bench_ike::IkeScaleArgs),
    /// N simulated BGP spokes (`loadgen-bgp`) peering with our hub and
    /// FRR's bgpd in namespaces, every one a route-reflector client: time
    /// to Established and to the full table, CPU and memory per peer, side
    /// by side (for BENCHMARKS.md).
    BenchBgpScale(bench_bgp::BgpScaleArgs),
    /// The XDP filter against a forged-SPI ESP flood, with and without it,
    /// in the VM (release builds): the drop rates and their ratio.
    BenchXdpFlood,
    /// N spokes' GRE links, XFRM states and policies and routes created and
    /// removed through the kernel datapath, in the VM: time per batch and
    /// memory per spoke.
    BenchKernelScale(vm::KernelScaleArgs),
    /// Run a command in a VM with a Debian kernel (ip_gre, esp4, AES-GCM),
    /// the host's root shared read-only; default: the GRE-over-ESP smoke
    /// test. Exits with the command's status.
    VmTest(vm::VmArgs),
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
    if let Task::VmTest(args) = &cli.command {
        // The command's own exit status, as far as a process status goes.
        return match vm::run(args) {
            Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
            Err(error) => {
                eprintln!("xtask: error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match &cli.command {
        Task::Setup => setup::run(),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Lab(args) => lab::run(args),
        Task::BenchThroughput(args) => bench::run(args),
        Task::BenchScale(args) => bench::run_scale(args),
        Task::BenchIkeScale(args) => bench_ike::run(args),
        Task::BenchBgpScale(args) => bench_bgp::run(args),
        Task::BenchXdpFlood => vm::bench_xdp_flood(),
        Task::BenchKernelScale(args) => vm::bench_kernel_scale(args),
        Task::VmTest(_) => unreachable!("handled above"),
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
        assert!(args.no_clippy && !args.skip_setup && !args.no_vm);
        assert_eq!(args.passthrough, ["ike::", "--", "--nocapture"]);
        // Without `--`, a stray word is an error rather than a silent filter.
        assert!(Cli::try_parse_from(["xtask", "test", "ike::"]).is_err());
    }

    #[test]
    fn demo_and_bench_options() {
        let cli = Cli::try_parse_from(["xtask", "demo", "--keep"]).expect("valid command line");
        let Task::Demo(args) = cli.command else {
            panic!("not the demo task: {cli:?}");
        };
        assert!(args.keep && !args.release);
        assert_eq!((args.lifetime_scale, args.soak), (1, None));
        let cli = Cli::try_parse_from(["xtask", "demo", "--lifetime-scale", "100", "--soak", "1h"])
            .expect("valid command line");
        let Task::Demo(args) = cli.command else {
            panic!("not the demo task: {cli:?}");
        };
        assert_eq!(
            (args.lifetime_scale, args.soak),
            (100, Some(std::time::Duration::from_hours(1)))
        );
        for bad in [["--lifetime-scale", "0"], ["--soak", "1x"]] {
            assert!(Cli::try_parse_from(["xtask", "demo", bad[0], bad[1]]).is_err());
        }
        let cli = Cli::try_parse_from(["xtask", "bench-throughput", "--seconds", "5"])
            .expect("valid command line");
        let Task::BenchThroughput(args) = cli.command else {
            panic!("not the bench task: {cli:?}");
        };
        assert_eq!((args.seconds, args.streams, args.debug), (5, 1, false));
        let cli = Cli::try_parse_from(["xtask", "bench-scale", "--n", "1000", "--mode", "summary"])
            .expect("valid command line");
        let Task::BenchScale(args) = cli.command else {
            panic!("not the bench-scale task: {cli:?}");
        };
        assert_eq!(
            (args.n.as_str(), args.runs, args.mode.as_str()),
            ("1000", 3, "summary")
        );
    }

    #[test]
    fn vm_test_command() {
        let cli = Cli::try_parse_from(["xtask", "vm-test"]).expect("valid command line");
        let Task::VmTest(args) = cli.command else {
            panic!("not the vm-test task: {cli:?}");
        };
        assert!(args.command.is_empty() && args.accel == vm::AccelArg::Auto);
        let cli = Cli::try_parse_from([
            "xtask",
            "vm-test",
            "--accel",
            "tcg",
            "--",
            "target/debug/deps/x-0123",
            "--test-threads=1",
        ])
        .expect("valid command line");
        let Task::VmTest(args) = cli.command else {
            panic!("not the vm-test task: {cli:?}");
        };
        assert_eq!(args.accel, vm::AccelArg::Tcg);
        assert_eq!(
            args.command,
            ["target/debug/deps/x-0123", "--test-threads=1"]
        );
    }

    #[test]
    fn lab_keep() {
        let cli = Cli::try_parse_from(["xtask", "lab", "--keep"]).expect("valid command line");
        assert!(matches!(cli.command, Task::Lab(LabArgs { keep: true })));
    }
}

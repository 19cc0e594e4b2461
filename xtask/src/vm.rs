//! `cargo xtask vm-test [-- COMMAND...]`: the VM test tier (DESIGN.md,
//! "Testing tiers", 5), for the kernel datapath the host kernel lacks (no
//! ip_gre, no esp4, no kernel AES-GCM, no loadable modules here).
//!
//! It installs `qemu-system-x86` and `busybox-static` when they are missing
//! (they are in `setup`'s list too), then hands over to
//! [`integration::vm::run_in_vm`]: the Debian kernel `linux-image-amd64`
//! depends on is fetched with `apt-get download` and unpacked (never
//! installed) into the cache (`/var/cache/gateway-vm` as root), an initramfs
//! is built with busybox and the modules (ip_gre, esp4, xfrm_user, the
//! crypto templates, 9p, overlay and their dependencies), and qemu boots it
//! with the host's root shared read-only over 9p under a tmpfs overlay, so
//! host binaries and the workspace are usable in the VM at their host paths.
//!
//! Without a command it runs `integration/vm/smoke.sh`: ip_gre over ESP
//! transport mode (AES-GCM one way, AES-CBC + HMAC-SHA256 the other) between
//! two network namespaces, a ping, and the SA counters. With one, it runs
//! that (for instance a test binary built on the host:
//! `cargo xtask vm-test -- target/debug/deps/datapath_kernel-<hash>
//! --test-threads=1`). The exit status is the command's.
//!
//! Measured here (2 cores, no usable KVM, so TCG emulation), with the
//! kernel and initramfs cached: boot 6-8 s, smoke test and power-off
//! 6-10 s, 14-16 s in all (17-20 s for the whole `cargo xtask vm-test`);
//! the first run adds about 10 s to fetch the kernel and build the
//! initramfs.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use integration::vm::{self, Accel, VmOptions};

use crate::{
    setup,
    util::{self, Step},
};

const PREFIX: &str = "vm-test";

/// The default command: the kernel datapath smoke test.
pub const SMOKE_SCRIPT: &str = "integration/vm/smoke.sh";

/// The bound on the kernel tier of `cargo xtask test` in the VM, in
/// seconds: the smoke test, the library's kernel tests and three labs, all
/// under emulation (TCG) on a machine other builds share. A functional
/// bound (a VM that hangs is killed), not a speed target: `run_step`
/// prints how long the run took.
pub const KERNEL_TIER_TIMEOUT: u64 = 20 * 60;

#[derive(Args, Debug)]
pub struct VmArgs {
    /// Kill the VM after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// kvm, tcg (software emulation), or auto: KVM when it works.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Show the VM's serial console (kernel and /init messages) on stderr.
    #[arg(long)]
    pub console: bool,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// The command to run in the VM, in the current directory (default: the
    /// kernel datapath smoke test, integration/vm/smoke.sh).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

impl From<AccelArg> for Accel {
    fn from(arg: AccelArg) -> Self {
        match arg {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }
    }
}

impl Default for VmArgs {
    fn default() -> Self {
        Self {
            timeout: 300,
            accel: AccelArg::Auto,
            console: false,
            memory: 1024,
            command: Vec::new(),
        }
    }
}

/// Why the VM tier cannot run here even after installing its packages, or
/// `None`: for `cargo xtask test`, which skips the tier in that case only.
pub fn cannot_run() -> Option<String> {
    if let Err(error) = setup::ensure_apt_packages("vm packages", setup::VM_APT_PACKAGES) {
        return Some(format!("cannot install qemu and busybox: {error:#}"));
    }
    vm::missing_prerequisite()
}

/// Runs the command in the VM; `Ok` with its exit status (non-zero after
/// printing the VM's console), `Err` when the VM gave no verdict.
pub fn run(args: &VmArgs) -> anyhow::Result<i32> {
    setup::ensure_apt_packages("vm packages", setup::VM_APT_PACKAGES)?;
    if let Some(why) = vm::missing_prerequisite() {
        bail!("the VM tier cannot run: {why}");
    }

    let step = Step::new(PREFIX, "kernel and initramfs");
    let image = vm::prepare_image().context("preparing the VM's kernel and initramfs")?;
    step.say(format_args!(
        "{} (cache {}) in {}",
        image.kernel_release,
        vm::cache_dir().display(),
        util::human(step.elapsed())
    ));

    let command = if args.command.is_empty() {
        vec![
            util::workspace_root()
                .join(SMOKE_SCRIPT)
                .to_string_lossy()
                .into_owned(),
        ]
    } else {
        args.command.clone()
    };
    let step = Step::new(PREFIX, "run");
    step.say(format_args!("{} ...", command.join(" ")));
    let options = VmOptions {
        timeout: Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        accel: args.accel.into(),
        stream_output: true,
        show_console: args.console,
        ..VmOptions::default()
    };
    let run = vm::run_in_vm(&command, &options)?;
    let boot = run.boot.map_or_else(|| "?".to_owned(), util::human);
    step.say(format_args!(
        "kernel {} under {}: exit status {}; boot {boot}, total {} (boot, command, power-off)",
        run.kernel,
        run.accel.name().to_uppercase(),
        run.exit_code,
        util::human(run.total)
    ));
    if !run.success() {
        if !args.console {
            eprintln!("vm-test: the VM's console:\n{}", run.console.trim_end());
        }
        eprintln!(
            "vm-test: `{}` failed in the VM with exit status {}",
            command.join(" "),
            run.exit_code
        );
    }
    Ok(run.exit_code)
}

/// What `cargo xtask test` runs in the VM, in one boot: the smoke test,
/// then the tests that need a kernel with ip_gre and esp4 (the netlink and
/// XFRM ones of the gateway library, `integration/tests/kernel_datapath.rs`
/// and `kernel_datapath_strongswan.rs`, and the kernel-datapath tests of
/// `nhrp_lab.rs` and `rekey_lab.rs`),
/// with `GATEWAY_REQUIRE_KERNEL_DATAPATH=1` so that they fail rather than
/// skip if the kernel lacks something.
pub fn kernel_tier_command() -> anyhow::Result<Vec<String>> {
    let gateway_lib = test_executable(&["-p", "gateway", "--lib"])?;
    let kernel_datapath = test_executable(&["-p", "integration", "--test", "kernel_datapath"])?;
    let strongswan =
        test_executable(&["-p", "integration", "--test", "kernel_datapath_strongswan"])?;
    let nhrp = test_executable(&["-p", "integration", "--test", "nhrp_lab"])?;
    let rekey = test_executable(&["-p", "integration", "--test", "rekey_lab"])?;
    let smoke = util::workspace_root().join(SMOKE_SCRIPT);
    let script = format!(
        "set -e; {smoke}; export GATEWAY_REQUIRE_KERNEL_DATAPATH=1; \
         {gateway_lib} --test-threads=1 when_the_kernel_has; \
         {kernel_datapath} --test-threads=1 --nocapture; \
         {strongswan} --test-threads=1; \
         {nhrp} --test-threads=1 --nocapture kernel_datapath_; \
         {rekey} --test-threads=1 --nocapture kernel_datapath_",
        smoke = smoke.display(),
    );
    Ok(vec!["sh".into(), "-c".into(), script])
}

/// `cargo xtask bench-xdp-flood`: `benches/benches/xdp_flood.rs` with the
/// release gateway, in the VM (whose kernel has esp4, so the flood without
/// XDP goes all the way to XFRM).
pub fn bench_xdp_flood() -> anyhow::Result<()> {
    setup::run()?;
    let gateway = util::build_gateway(true)?;
    let bench = cargo_executable("bench", &["-p", "benches", "--bench", "xdp_flood"])?;
    run_step(&VmArgs {
        command: vec![
            "env".into(),
            format!("GATEWAY_BIN={}", gateway.display()),
            bench,
            "--bench".into(),
        ],
        ..VmArgs::default()
    })
}

/// `cargo xtask bench-kernel-scale`: `benches/benches/kernel_scale.rs`
/// (release) in the VM, whose kernel has ip_gre, esp4 and AES-GCM: N
/// spokes' links, SA pairs and routes created and removed through the
/// kernel datapath, per batch.
pub fn bench_kernel_scale(args: &KernelScaleArgs) -> anyhow::Result<()> {
    setup::run()?;
    let bench = cargo_executable("bench", &["-p", "benches", "--bench", "kernel_scale"])?;
    run_step(&VmArgs {
        command: vec![
            "env".into(),
            format!("KERNEL_SCALE_N={}", args.n),
            format!("KERNEL_SCALE_BATCH={}", args.batch),
            bench,
            "--bench".into(),
        ],
        timeout: 900,
        memory: 2048,
        ..VmArgs::default()
    })
}

/// Options of `cargo xtask bench-kernel-scale`.
#[derive(clap::Args, Debug)]
pub struct KernelScaleArgs {
    /// Spokes to create and remove.
    #[arg(long, default_value_t = 1000)]
    pub n: u32,
    /// Spokes per timed batch.
    #[arg(long, default_value_t = 100)]
    pub batch: u32,
}

/// Builds a test target (`cargo test --no-run`) and returns its executable.
fn test_executable(target: &[&str]) -> anyhow::Result<String> {
    cargo_executable("test", target)
}

/// Builds a test or bench target without running it and returns its
/// executable.
fn cargo_executable(subcommand: &str, target: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .current_dir(util::workspace_root())
        .args([subcommand, "--no-run", "--message-format=json"])
        .args(target)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cargo test --no-run {}", target.join(" ")))?;
    if !output.status.success() {
        bail!("cargo test --no-run {} failed", target.join(" "));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["profile"]["test"] == true)
        .find_map(|v| v["executable"].as_str().map(str::to_owned))
        .with_context(|| format!("no test executable for {}", target.join(" ")))
}

/// [`run`] as a step of `cargo xtask test`: a non-zero status is an error.
pub fn run_step(args: &VmArgs) -> anyhow::Result<()> {
    match run(args)? {
        0 => Ok(()),
        code => bail!("the command in the VM exited with status {code}"),
    }
}

//! The VM test tier: commands run under a Debian kernel in qemu, for the
//! kernel datapath (ip_gre, esp4, AES-GCM) that the host kernel lacks.
//!
//! [`run_in_vm`] boots a virtme-style VM: no disk image is built. The host's
//! root is shared read-only over 9p and an overlay with a tmpfs upper layer
//! makes it writable inside the VM (fresh tmpfs on `/tmp` and `/run`), so
//! the gateway, strongSwan, iproute2 and test binaries built on the host run
//! in the VM from their host paths. What it needs:
//!
//! - `qemu-system-x86_64` and a static busybox (`qemu-system-x86` and
//!   `busybox-static`, installed by `cargo xtask setup`);
//! - the Debian kernel that `linux-image-amd64` depends on
//!   (`linux-image-6.1.0-NN-amd64`), fetched once with `apt-get download`
//!   into the cache ([`cache_dir`]) and unpacked with `dpkg-deb -x` into a
//!   temporary directory; it is never installed on the host;
//! - an initramfs ([`VM_MODULES`] and their dependencies from the modules'
//!   `.modinfo`, busybox and an `/init` script), built once per kernel and
//!   module list and cached beside the kernel.
//!
//! The `/init` script loads the modules, mounts the host's root and the
//! overlay, mounts a second 9p share (a host temporary directory, `/vm` in
//! the VM) that carries the command in (`/vm/cmd.sh`) and its output and exit
//! status out (`/vm/output`, `/vm/rc`), runs the command in the host's
//! working directory with `lo` up, and powers the VM off through
//! `isa-debug-exit`, whose exit code repeats the command's status. qemu is
//! killed when the run exceeds its time bound.
//!
//! KVM is used when a kernel boots under it (see `kvm_works`); otherwise qemu
//! emulates the CPU (TCG). On the project's 2-core machines `/dev/kvm`
//! opens but the guest hangs entering long mode, so it is TCG: qemu to
//! `/init` running the command 6-8 s (kernel boot about 3 s, the 42 modules
//! and mounts about 3 s), the GRE-over-ESP smoke test
//! (`integration/vm/smoke.sh`) and power-off 6-10 s, 14-16 s in all; a
//! trivial command about 8 s. The first run adds about 10 s: the kernel
//! package download (70 MB), `dpkg-deb -x`, the initramfs, the KVM probe.
//!
//! The code, by concern: `image` (the kernel package, unpacked and cached),
//! `modules` (the modules the VM loads and their dependencies), `initramfs`
//! (the cpio archive with busybox, the modules and `/init`), `qemu` (the
//! machine, the KVM probe, the exit code protocol) and `run` (a command
//! into the VM, its output and status out, within a time bound).

mod image;
mod initramfs;
mod modules;
mod qemu;
mod run;

use std::{
    env, fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail, ensure};

pub use image::prepare_image;
pub use modules::Module;

use qemu::QEMU;
use run::boot;

/// The kernel modules loaded in the VM (with their dependencies), in this
/// order. The first group is what the VM itself needs (9p, overlay); the rest
/// is the kernel datapath and the tools of the integration tests. A module
/// built into the kernel is skipped; one that does not exist is an error.
pub const VM_MODULES: &[&str] = &[
    // The VM: virtio PCI, 9p over virtio, overlayfs.
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    // Links.
    "veth",
    "tun",
    "bridge",
    // GRE.
    "ip_gre",
    // tc: the clsact qdisc and BPF classifiers, for the hairpin detector
    // on the virtual-access links (kernels before 6.6 have no TCX).
    "sch_ingress",
    "cls_bpf",
    // nftables for the kernel datapath's TCP MSS clamp (the meta, cmp,
    // bitwise, payload, exthdr and immediate expressions and the filter
    // chains are built into nf_tables). Its libcrc32c asks the crypto API
    // for crc32c when loaded (a softdep the closure does not follow).
    "crc32c_generic",
    "nf_tables",
    // ESP, XFRM netlink (and PF_KEY for tools that still use it).
    "esp4",
    "xfrm_user",
    "xfrm_interface",
    "af_key",
    // The AEAD and cipher templates ESP asks the crypto API for.
    "gcm",
    "ghash_generic",
    "ctr",
    "authenc",
    "seqiv",
    "echainiv",
    // The default RNG (stdrng) the IV generators seed from: drbg with
    // hmac(sha512), seeded by jitterentropy, which hashes with sha3-256.
    "sha512_generic",
    "sha3_generic",
    "jitterentropy_rng",
    "drbg",
    "cbc",
    "hmac",
];

/// Modules loaded when the CPU has what they need (AES-NI, PCLMULQDQ): a
/// failed `insmod` of one of these is not reported.
pub const VM_OPTIONAL_MODULES: &[&str] = &["aesni_intel", "ghash_clmulni_intel"];

/// Where the static busybox is (package `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";

/// How to run a command in the VM.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Kill qemu after this long (boot included).
    pub timeout: Duration,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// KVM or emulation; `Auto` uses KVM when it works.
    pub accel: Accel,
    /// The working directory of the command in the VM (a host path, which
    /// the VM sees as it is); default: the current directory.
    pub cwd: Option<PathBuf>,
    /// Extra environment for the command, on top of `PATH`, `HOME`,
    /// `RUST_BACKTRACE`, `RUST_LOG` and `CARGO_TARGET_DIR` from the host.
    pub env: Vec<(String, String)>,
    /// Copy the command's output to this process's stdout while it runs.
    pub stream_output: bool,
    /// Copy the VM's serial console (kernel and `/init` messages) to stderr.
    pub show_console: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_mins(5),
            memory_mib: 1024,
            cpus: 2,
            accel: Accel::Auto,
            cwd: None,
            env: Vec::new(),
            stream_output: false,
            show_console: false,
        }
    }
}

/// qemu's accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `/dev/kvm` works (checked once per process), else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What a VM run gave back.
#[derive(Debug, Clone)]
pub struct VmRun {
    /// The command's exit status (126/127 from the shell when it could not
    /// be run; statuses above 100 read back from `/vm/rc`).
    pub exit_code: i32,
    /// The command's stdout and stderr, interleaved.
    pub output: String,
    /// The serial console: kernel messages and the `/init` script's lines.
    pub console: String,
    /// The accelerator used (`kvm` or `tcg`).
    pub accel: Accel,
    /// The kernel release that ran (`6.1.0-57-amd64`).
    pub kernel: String,
    /// From qemu's start to the command's start (boot, modules, mounts).
    pub boot: Option<Duration>,
    /// From qemu's start to its exit.
    pub total: Duration,
}

impl VmRun {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A kernel and an initramfs ready to boot.
#[derive(Debug, Clone)]
pub struct VmImage {
    pub kernel_release: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// Why the VM tier cannot run on this machine, or `None` when it can: the
/// tools [`run_in_vm`] needs are missing (`cargo xtask setup` installs them).
pub fn missing_prerequisite() -> Option<String> {
    let mut missing = Vec::new();
    if find_program(QEMU).is_none() {
        missing.push(format!("{QEMU} (package qemu-system-x86)"));
    }
    if !Path::new(BUSYBOX).is_file() {
        missing.push(format!("{BUSYBOX} (package busybox-static)"));
    }
    for (tool, package) in [("apt-get", "apt"), ("dpkg-deb", "dpkg")] {
        if find_program(tool).is_none() {
            missing.push(format!("{tool} (package {package})"));
        }
    }
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The cache for the kernel package, the kernel and the initramfs:
/// `$GATEWAY_VM_CACHE`, else `/var/cache/gateway-vm` when it can be created
/// (root), else `vm/` in the cargo target directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("GATEWAY_VM_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let system = PathBuf::from("/var/cache/gateway-vm");
    if fs::create_dir_all(&system).is_ok() && is_writable(&system) {
        return system;
    }
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        },
        PathBuf::from,
    );
    target.join("vm")
}

fn is_writable(dir: &Path) -> bool {
    tempfile::tempfile_in(dir).is_ok()
}

/// Runs `argv` in a VM (see the module docs) and returns its exit status and
/// output. An error means the VM could not give a verdict (no kernel, qemu
/// failed, the time bound passed, the VM crashed); a failing command is an
/// `Ok` with a non-zero [`VmRun::exit_code`].
pub fn run_in_vm<S: AsRef<str>>(argv: &[S], options: &VmOptions) -> Result<VmRun> {
    ensure!(!argv.is_empty(), "no command to run in the VM");
    if let Some(why) = missing_prerequisite() {
        bail!("the VM tier cannot run: {why} (`cargo xtask setup` installs them)");
    }
    let image = prepare_image()?;
    boot(&image, argv, options)
}

fn memchr(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the running kernel lacks for the kernel datapath, as the gateway
/// detects it (`datapath::select`): ip_gre makes `gre0` in every
/// namespace, esp4 shows in /sys/module once loaded.
pub fn missing_kernel_datapath_features() -> Vec<&'static str> {
    let has = |p: &str| std::path::Path::new(p).exists();
    let mut missing = Vec::new();
    if !has("/sys/class/net/gre0") && !has("/sys/module/ip_gre") {
        missing.push("ip_gre");
    }
    if !has("/sys/module/esp4") {
        missing.push("esp4");
    }
    missing
}

/// For a test that needs the kernel datapath: true when it may run here.
/// Otherwise it says which features are missing and returns false (skip),
/// or panics where `GATEWAY_REQUIRE_KERNEL_DATAPATH` is set (the VM tier),
/// so that the test cannot pass there without running.
pub fn kernel_datapath_available() -> bool {
    let missing = missing_kernel_datapath_features();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("GATEWAY_REQUIRE_KERNEL_DATAPATH").is_none(),
        "the kernel lacks {missing:?} where the kernel datapath is required"
    );
    eprintln!(
        "SKIPPED: this kernel lacks {}; the VM tier (cargo xtask vm-test) runs this test",
        missing.join(" and ")
    );
    false
}

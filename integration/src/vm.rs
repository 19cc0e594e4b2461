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

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    env,
    fmt::Write as _,
    fs,
    hash::{Hash as _, Hasher as _},
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::cmd::{command_line, run_checked};

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

/// The Debian metapackage whose dependency names the kernel package.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// Where the static busybox is (package `busybox-static`).
const BUSYBOX: &str = "/bin/busybox";
const QEMU: &str = "qemu-system-x86_64";
/// The `isa-debug-exit` port; the VM writes `status + 1` to it.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The highest command status passed through the exit code as is.
const MAX_STATUS: i32 = 100;

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

// ---- the kernel ---------------------------------------------------------------

/// The kernel and initramfs for this machine's Debian release, fetched and
/// built on first use and cached (see the module docs).
pub fn prepare_image() -> Result<VmImage> {
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let package = kernel_package()?;
    let release = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_owned();
    let dir = cache.join(&release);
    let kernel = dir.join("vmlinux");
    let key = initramfs_key(&release)?;
    let initramfs = dir.join(format!("initramfs-{key:016x}.cpio"));
    if kernel.is_file() && initramfs.is_file() {
        return Ok(VmImage {
            kernel_release: release,
            kernel,
            initramfs,
        });
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let deb = fetch_kernel_package(&cache, &package)?;
    eprintln!(
        "vm: unpacking {} (dpkg-deb -x, not installed)",
        deb.display()
    );
    let unpacked = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(&cache)
        .context("creating a directory to unpack the kernel in")?;
    run_checked(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(unpacked.path()),
        Duration::from_mins(5),
    )?;
    let root = unpacked.path();
    let modules_dir = root.join("lib/modules").join(&release);
    ensure!(
        modules_dir.is_dir(),
        "{} has no lib/modules/{release}",
        deb.display()
    );
    let index = ModuleIndex::scan(&modules_dir)?;
    let order = index.closure(VM_MODULES, VM_OPTIONAL_MODULES)?;
    eprintln!(
        "vm: {} modules for the initramfs: {}",
        order.len(),
        order
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let cpio = build_initramfs(&order)?;
    let tmp = dir.join(format!(".initramfs-{}.tmp", std::process::id()));
    fs::write(&tmp, &cpio).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &initramfs)?;
    let tmp = dir.join(format!(".vmlinux-{}.tmp", std::process::id()));
    let bz_image = root.join("boot").join(format!("vmlinuz-{release}"));
    extract_vmlinux(&bz_image, &tmp)?;
    fs::rename(&tmp, &kernel)?;
    // Older initramfs builds of this kernel are of no further use.
    for entry in fs::read_dir(&dir)?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("initramfs-") && path != initramfs {
            let _ = fs::remove_file(&path);
        }
    }
    eprintln!(
        "vm: {} and {} ({} KiB) ready",
        kernel.display(),
        initramfs.display(),
        cpio.len() / 1024
    );
    Ok(VmImage {
        kernel_release: release,
        kernel,
        initramfs,
    })
}

/// Writes the kernel out of `bz_image` uncompressed (an ELF `vmlinux`) to
/// `out`: qemu boots that directly through its PVH entry point, which saves
/// the firmware's real-mode boot and the in-guest decompression (4 of the
/// 5 seconds before the kernel starts, under emulation). Debian's kernels
/// are xz-compressed; any other bzImage is copied as it is.
fn extract_vmlinux(bz_image: &Path, out: &Path) -> Result<()> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    let data = fs::read(bz_image).with_context(|| format!("reading {}", bz_image.display()))?;
    let Some(start) = memchr(&data, XZ_MAGIC) else {
        fs::copy(bz_image, out)?;
        return Ok(());
    };
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start `xz` (package xz-utils) to unpack the kernel")?;
    let mut stdin = child.stdin.take().context("xz's stdin")?;
    let payload = data[start..].to_vec();
    let writer = thread::spawn(move || stdin.write_all(&payload));
    let output = child.wait_with_output()?;
    // xz stops reading after the stream: a broken pipe here is expected.
    let _ = writer.join();
    ensure!(
        output.status.success(),
        "`xz -dc` of the kernel in {} failed: {}",
        bz_image.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut magic = [0u8; 4];
    fs::File::open(out)?.read_exact(&mut magic)?;
    ensure!(
        &magic == b"\x7fELF",
        "the kernel unpacked from {} is not an ELF file",
        bz_image.display()
    );
    Ok(())
}

/// The kernel package `linux-image-amd64` depends on, from `apt-cache`.
fn kernel_package() -> Result<String> {
    let out = run_checked(
        Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]),
        Duration::from_mins(1),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    kernel_package_from_depends(&text).with_context(|| {
        format!("`apt-cache depends {KERNEL_METAPACKAGE}` names no kernel package:\n{text}")
    })
}

/// Picks `linux-image-<release>` out of `apt-cache depends linux-image-amd64`.
fn kernel_package_from_depends(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let package = line.trim().strip_prefix("Depends:")?.trim();
        let package = package.trim_start_matches('<').trim_end_matches('>');
        (package.starts_with("linux-image-") && package != KERNEL_METAPACKAGE)
            .then(|| package.to_owned())
    })
}

/// The cached `.deb` of `package`, downloaded with `apt-get download` when
/// it is not there (after `apt-get update` if the lists are stale).
fn fetch_kernel_package(cache: &Path, package: &str) -> Result<PathBuf> {
    let find = || -> Option<PathBuf> {
        fs::read_dir(cache).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(&format!("{package}_"))
                && Path::new(&name).extension().is_some_and(|ext| ext == "deb"))
            .then(|| e.path())
        })
    };
    if let Some(deb) = find() {
        return Ok(deb);
    }
    let download = || {
        let mut cmd = Command::new("apt-get");
        cmd.current_dir(cache).arg("-q");
        // apt drops to the _apt user for downloads, which cannot write
        // into a root-owned cache: download as root instead.
        if is_root() {
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.args(["download", package]);
        eprintln!("vm: fetching the kernel: {}", command_line(&cmd));
        run_checked(&mut cmd, Duration::from_mins(10))
    };
    if let Err(first) = download() {
        eprintln!("vm: {first:#}; updating the apt lists and trying again");
        run_checked(
            Command::new("apt-get").args(["update", "-q"]),
            Duration::from_mins(5),
        )
        .context("`apt-get update` failed")?;
        download().context("downloading the kernel package")?;
    }
    find().with_context(|| {
        format!(
            "`apt-get download {package}` succeeded but no {package}_*.deb is in {}",
            cache.display()
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---- modules ------------------------------------------------------------------

/// One module of the kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name, with `_` for `-` (`ghash_clmulni_intel`).
    pub name: String,
    pub path: PathBuf,
    /// A failed `insmod` is not reported (see [`VM_OPTIONAL_MODULES`]).
    pub optional: bool,
}

/// The modules of one kernel release, by name, and the built-in ones.
struct ModuleIndex {
    modules: HashMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// A module name as the kernel spells it: `-` becomes `_`.
fn module_name(file_stem: &str) -> String {
    file_stem.replace('-', "_")
}

impl ModuleIndex {
    fn scan(modules_dir: &Path) -> Result<Self> {
        let mut modules = HashMap::new();
        let mut stack = vec![modules_dir.join("kernel")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(stem) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    modules.insert(module_name(stem), path);
                }
            }
        }
        ensure!(
            !modules.is_empty(),
            "no .ko files under {} (compressed modules are not handled)",
            modules_dir.display()
        );
        let builtin = fs::read_to_string(modules_dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let file = line.rsplit('/').next()?;
                Some(module_name(file.strip_suffix(".ko")?))
            })
            .collect();
        Ok(Self { modules, builtin })
    }

    /// `wanted` and `optional` with their dependencies, each after what it
    /// depends on; built-in modules left out.
    fn closure(&self, wanted: &[&str], optional: &[&str]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        for (names, is_optional) in [(wanted, false), (optional, true)] {
            for name in names {
                let name = module_name(name);
                if self.builtin.contains(&name) {
                    continue;
                }
                if !self.modules.contains_key(&name) {
                    if is_optional {
                        continue;
                    }
                    bail!("the kernel package has no module {name} and does not build it in");
                }
                self.visit(&name, is_optional, &mut done, &mut Vec::new(), &mut order)?;
            }
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        optional: bool,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
        order: &mut Vec<Module>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        ensure!(
            !path.iter().any(|p| p == name),
            "module dependency cycle: {} -> {name}",
            path.join(" -> ")
        );
        let file = self.modules.get(name).with_context(|| {
            format!(
                "module {} needs {name}, which is missing",
                path.join(" -> ")
            )
        })?;
        let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let deps = modinfo(&bytes)
            .with_context(|| format!("reading .modinfo of {}", file.display()))?
            .get("depends")
            .cloned()
            .unwrap_or_default();
        path.push(name.to_owned());
        for dep in deps.split(',').filter(|d| !d.is_empty()) {
            self.visit(&module_name(dep), optional, done, path, order)?;
        }
        path.pop();
        done.insert(name.to_owned());
        order.push(Module {
            name: name.to_owned(),
            path: file.clone(),
            optional,
        });
        Ok(())
    }
}

/// The `key=value` strings of an ELF64 module's `.modinfo` section.
fn modinfo(elf: &[u8]) -> Result<BTreeMap<String, String>> {
    let u16_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 2).context("truncated ELF")?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes(b.try_into()?) as usize)
    };
    let u64_at = |at: usize| -> Result<usize> {
        let b = elf.get(at..at + 8).context("truncated ELF")?;
        Ok(usize::try_from(u64::from_le_bytes(b.try_into()?))?)
    };
    ensure!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "not a little-endian ELF64 file"
    );
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let section = |i: usize| -> Result<(usize, usize, usize)> {
        let at = shoff + i * shentsize;
        Ok((u32_at(at)?, u64_at(at + 0x18)?, u64_at(at + 0x20)?))
    };
    let (_, names_off, names_len) = section(shstrndx)?;
    let names = elf
        .get(names_off..names_off + names_len)
        .context("section names out of the file")?;
    for i in 0..shnum {
        let (name, offset, size) = section(i)?;
        let name = names.get(name..).unwrap_or_default();
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if name != b".modinfo" {
            continue;
        }
        let data = elf
            .get(offset..offset + size)
            .context(".modinfo out of the file")?;
        return Ok(data
            .split(|&b| b == 0)
            .filter_map(|entry| {
                let entry = std::str::from_utf8(entry).ok()?;
                let (key, value) = entry.split_once('=')?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect());
    }
    bail!("no .modinfo section")
}

// ---- the initramfs ------------------------------------------------------------

/// The `/init` script of the initramfs (busybox sh).
const INIT: &str = include_str!("vm_init.sh");

/// A cache key for the initramfs: the module lists, `/init`, and busybox.
fn initramfs_key(release: &str) -> Result<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    (release, VM_MODULES, VM_OPTIONAL_MODULES, INIT).hash(&mut hasher);
    let busybox = fs::metadata(BUSYBOX).with_context(|| format!("no {BUSYBOX}"))?;
    busybox.len().hash(&mut hasher);
    busybox.modified().ok().hash(&mut hasher);
    Ok(hasher.finish())
}

/// An uncompressed `newc` cpio archive (the kernel unpacks it as the
/// initramfs; no compression means nothing to inflate under emulation).
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    const DIR: u32 = 0o040_000;
    const FILE: u32 = 0o100_000;
    const CHAR: u32 = 0o020_000;

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), body: &[u8]) {
        self.inode += 1;
        let nlink = if mode & Self::DIR != 0 { 2 } else { 1 };
        let size = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let name_len = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.inode, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_len, 0,
        ];
        let mut header = String::from("070701");
        for field in fields {
            let _ = write!(header, "{field:08x}");
        }
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, Self::DIR | 0o755, (0, 0), b"");
    }

    fn file(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.entry(name, Self::FILE | mode, (0, 0), body);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), b"");
        self.data
    }
}

fn build_initramfs(modules: &[Module]) -> Result<Vec<u8>> {
    let mut cpio = Cpio::default();
    for dir in [
        "bin", "dev", "proc", "sys", "host", "rw", "newroot", "modules", "tmp",
    ] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.entry("dev/console", Cpio::CHAR | 0o600, (5, 1), b"");
    let busybox = fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("init", 0o755, INIT.as_bytes());
    let mut order = String::new();
    for module in modules {
        let body =
            fs::read(&module.path).with_context(|| format!("reading {}", module.path.display()))?;
        cpio.file(&format!("modules/{}.ko", module.name), 0o644, &body);
        let _ = writeln!(
            order,
            "{} {}",
            module.name,
            if module.optional {
                "optional"
            } else {
                "required"
            }
        );
    }
    cpio.file("modules/order", 0o644, order.as_bytes());
    Ok(cpio.finish())
}

// ---- booting ------------------------------------------------------------------

/// The kernel command line; `/init` reads `gateway_vm_probe` (see
/// [`kvm_works`]).
const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 rdinit=/init \
                              mitigations=off tsc=reliable no_timer_check";
/// What `/init` exits with when the command line has `gateway_vm_probe`.
const PROBE_STATUS: i32 = 42;

/// qemu with the machine every run uses: `accel`, a CPU model for it,
/// memory, CPUs, the kernel and initramfs, a serial console on stdio,
/// `isa-debug-exit`, no default devices, no reboot.
fn qemu_command(
    image: &VmImage,
    accel: Accel,
    memory_mib: u32,
    cpus: u32,
    append: &str,
) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", accel.name()]);
    // Under emulation, `max` makes glibc pick AVX2 string functions that
    // TCG runs several times slower than qemu64's SSE2 ones; the kernel's
    // generic AES and GHASH stand in for AES-NI and PCLMULQDQ.
    cmd.args([
        "-cpu",
        if accel == Accel::Kvm {
            "host"
        } else {
            "qemu64"
        },
    ]);
    cmd.args(["-M", "pc", "-nodefaults", "-no-user-config"]);
    cmd.args(["-display", "none", "-serial", "stdio", "-no-reboot"]);
    cmd.args(["-m", &memory_mib.to_string()]);
    cmd.args(["-smp", &cpus.to_string()]);
    cmd.arg("-kernel").arg(&image.kernel);
    cmd.arg("-initrd").arg(&image.initramfs);
    cmd.arg("-append").arg(append);
    cmd.arg("-device").arg(format!(
        "isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"
    ));
    cmd
}

/// Whether KVM works here: `/dev/kvm` opens, and the VM's kernel boots
/// under it to `/init` within seconds (with `gateway_vm_probe` on its
/// command line, `/init` exits at once). Nested KVM can open and then hang
/// in the guest's switch to long mode, as on the project's machines. The
/// verdict is cached per host kernel and VM kernel in the cache directory,
/// so a hanging KVM costs its 10 seconds once.
fn kvm_works(image: &VmImage) -> bool {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let verdict_file = cache_dir().join(format!("kvm-{}-{}", host.trim(), image.kernel_release));
    if let Ok(verdict) = fs::read_to_string(&verdict_file) {
        return verdict.trim() == "works";
    }
    let mut cmd = qemu_command(
        image,
        Accel::Kvm,
        256,
        1,
        &format!("{KERNEL_CMDLINE} gateway_vm_probe"),
    );
    let works = crate::cmd::run_unchecked(&mut cmd, Duration::from_secs(10))
        .ok()
        .and_then(|out| out.status.code())
        .and_then(status_from_exit_code)
        == Some(PROBE_STATUS);
    let _ = fs::write(
        &verdict_file,
        if works { "works\n" } else { "hangs or fails\n" },
    );
    works
}

fn resolve_accel(accel: Accel, image: &VmImage) -> Accel {
    match accel {
        Accel::Auto if kvm_works(image) => Accel::Kvm,
        Accel::Auto => Accel::Tcg,
        other => other,
    }
}

/// `sh` quoting for one word.
fn sh_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The script the VM runs: environment, working directory, the command.
fn command_script<S: AsRef<str>>(argv: &[S], cwd: &Path, env: &[(String, String)]) -> String {
    let mut script = String::from("# written by integration::vm::run_in_vm\n");
    for (key, value) in env {
        let _ = writeln!(script, "export {key}={}", sh_word(value));
    }
    let _ = writeln!(script, "cd {} || exit 125", sh_word(&cwd.to_string_lossy()));
    let words: Vec<String> = argv.iter().map(|w| sh_word(w.as_ref())).collect();
    let _ = writeln!(script, "exec {}", words.join(" "));
    script
}

fn command_env(options: &VmOptions) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), "/root".into()),
        ("TERM".into(), "dumb".into()),
        ("GATEWAY_IN_VM".into(), "1".into()),
    ];
    if let Some(cargo_bin) = env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")) {
        vars[0].1 = format!("{}:{}", vars[0].1, cargo_bin.display());
    }
    for key in [
        "RUST_BACKTRACE",
        "RUST_LOG",
        "CARGO_TARGET_DIR",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ] {
        if let Ok(value) = env::var(key) {
            vars.push((key.into(), value));
        }
    }
    vars.extend(options.env.iter().cloned());
    vars
}

/// A qemu exit code read back: `isa-debug-exit` makes qemu exit with
/// `(value << 1) | 1`, and the VM writes `status + 1` (at most
/// `MAX_STATUS + 1`). `None`: qemu exited for another reason (0 after a
/// power-off or a panic without the port, 1 on its own errors).
fn status_from_exit_code(code: i32) -> Option<i32> {
    (code >= 3 && code % 2 == 1).then(|| (code - 1) / 2 - 1)
}

fn boot<S: AsRef<str>>(image: &VmImage, argv: &[S], options: &VmOptions) -> Result<VmRun> {
    let accel = resolve_accel(options.accel, image);
    let share = tempfile::Builder::new()
        .prefix("gateway-vm-")
        .tempdir()
        .context("creating the VM's share directory")?;
    // The VM runs as root over a share owned by root; 0755 is enough.
    fs::set_permissions(share.path(), fs::Permissions::from_mode(0o755))?;
    let cwd = match &options.cwd {
        Some(cwd) => cwd.clone(),
        None => env::current_dir().context("the current directory")?,
    };
    fs::write(
        share.path().join("cmd.sh"),
        command_script(argv, &cwd, &command_env(options)),
    )?;

    let mut cmd = qemu_command(
        image,
        accel,
        options.memory_mib,
        options.cpus,
        KERNEL_CMDLINE,
    );
    cmd.args([
        "-fsdev",
        "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
    ]);
    cmd.arg("-fsdev").arg(format!(
        "local,id=vmshare,path={},security_model=none,multidevs=remap",
        share.path().display()
    ));
    cmd.args(["-device", "virtio-9p-pci,fsdev=vmshare,mount_tag=vmshare"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = command_line(&cmd);
    if options.show_console {
        eprintln!("vm: {line}");
    }

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let console = Console::capture(&mut child, options.show_console, started);
    let output_path = share.path().join("output");
    let stream = options.stream_output.then_some(output_path.as_path());
    let status = wait_bounded(&mut child, started + options.timeout, stream)?;
    let total = started.elapsed();
    let (console, boot) = console.finish();
    let output = fs::read(&output_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let rc_file = fs::read_to_string(share.path().join("rc"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());

    let tail = |text: &str| crate::cmd::tail(text.trim_end(), 3000);
    let Some(status) = status else {
        bail!(
            "the VM ({}) did not finish within {:?}; killed qemu.\nconsole:\n{}\noutput:\n{}",
            accel.name(),
            options.timeout,
            tail(&console),
            tail(&output)
        );
    };
    let from_exit = status.code().and_then(status_from_exit_code);
    let exit_code = match (rc_file, from_exit) {
        (Some(rc), Some(code)) if code == rc.min(MAX_STATUS) => rc,
        (Some(rc), Some(code)) => bail!(
            "the VM reported status {rc} in /vm/rc but {code} through isa-debug-exit\nconsole:\n{}",
            tail(&console)
        ),
        (rc, code) => bail!(
            "the VM gave no verdict (qemu {status}, /vm/rc {rc:?}, debug exit {code:?}): it \
             crashed or could not run the command\n`{line}`\nconsole:\n{}\noutput:\n{}",
            tail(&console),
            tail(&output)
        ),
    };
    Ok(VmRun {
        exit_code,
        output,
        console,
        accel,
        kernel: image.kernel_release.clone(),
        boot,
        total,
    })
}

/// Waits for qemu until `deadline`, then kills it (`None`); copies the
/// command's output file to stdout as it grows when `stream` is given.
fn wait_bounded(
    child: &mut std::process::Child,
    deadline: Instant,
    stream: Option<&Path>,
) -> Result<Option<std::process::ExitStatus>> {
    let mut streamed = 0usize;
    let status = loop {
        if let Some(path) = stream {
            streamed = stream_new_output(path, streamed);
        }
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(path) = stream {
        stream_new_output(path, streamed);
    }
    Ok(status)
}

/// The VM's serial console (qemu's stdout and stderr), read on threads so
/// that qemu never blocks on a full pipe, and the time `/init` said it
/// starts the command.
struct Console {
    text: Arc<Mutex<Vec<u8>>>,
    boot_done: Arc<Mutex<Option<Duration>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Console {
    const COMMAND_STARTS: &[u8] = b"vm: running the command";

    fn capture(child: &mut std::process::Child, show: bool, started: Instant) -> Self {
        let console = Self {
            text: Arc::default(),
            boot_done: Arc::default(),
            readers: Vec::new(),
        };
        let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as _),
            child.stderr.take().map(|p| Box::new(p) as _),
        ];
        let mut readers = Vec::new();
        for mut pipe in pipes.into_iter().flatten() {
            let text = Arc::clone(&console.text);
            let boot_done = Arc::clone(&console.boot_done);
            readers.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if show {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    let mut text = lock(&text);
                    let from = text.len().saturating_sub(Self::COMMAND_STARTS.len());
                    text.extend_from_slice(&buf[..n]);
                    if memchr(&text[from..], Self::COMMAND_STARTS).is_some() {
                        lock(&boot_done).get_or_insert_with(|| started.elapsed());
                    }
                }
            }));
        }
        Self { readers, ..console }
    }

    /// Waits for the readers (qemu has exited) and returns the text and the
    /// boot time.
    fn finish(self) -> (String, Option<Duration>) {
        for reader in self.readers {
            let _ = reader.join();
        }
        let text = String::from_utf8_lossy(&lock(&self.text)).into_owned();
        let boot = *lock(&self.boot_done);
        (text, boot)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn memchr(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Copies what the command wrote to `/vm/output` since `from` bytes to
/// stdout; returns the new length.
fn stream_new_output(path: &Path, from: usize) -> usize {
    let Ok(bytes) = fs::read(path) else {
        return from;
    };
    if bytes.len() > from {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&bytes[from..]);
        let _ = stdout.flush();
    }
    bytes.len().max(from)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_from_apt_cache() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            kernel_package_from_depends(text).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(kernel_package_from_depends("linux-image-amd64\n"), None);
    }

    #[test]
    fn exit_codes_round_trip() {
        // The VM writes status + 1; qemu exits with (value << 1) | 1.
        for status in [0, 1, 2, 100] {
            assert_eq!(status_from_exit_code(((status + 1) << 1) | 1), Some(status));
        }
        assert_eq!(status_from_exit_code(0), None);
        assert_eq!(status_from_exit_code(1), None);
        assert_eq!(status_from_exit_code(4), None);
    }

    #[test]
    fn command_script_quotes() {
        let script = command_script(
            &["sh", "-c", "echo 'hi' $X"],
            Path::new("/work/a b"),
            &[("X".into(), "it's".into())],
        );
        assert!(script.contains(r"export X='it'\''s'"), "{script}");
        assert!(script.contains("cd '/work/a b' || exit 125"), "{script}");
        assert!(
            script.contains(r"exec 'sh' '-c' 'echo '\''hi'\'' $X'"),
            "{script}"
        );
    }

    #[test]
    fn cpio_newc_layout() {
        let mut cpio = Cpio::default();
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        let data = cpio.finish();
        assert!(data.starts_with(b"070701"));
        assert_eq!(data.len() % 4, 0);
        // mode field: regular file 0755.
        assert_eq!(&data[14..22], b"000081ed");
        // filesize field.
        assert_eq!(&data[54..62], b"0000000a");
        assert!(memchr(&data, b"TRAILER!!!\0").is_some());
    }

    #[test]
    fn modinfo_of_a_small_elf() {
        // A minimal ELF64 with a null section, .shstrtab and .modinfo.
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let modinfo_data = b"license=GPL\0depends=gre,ip_tunnel\0name=ip_gre\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let strtab_off = elf.len();
        elf.extend_from_slice(shstrtab);
        let info_off = elf.len();
        elf.extend_from_slice(modinfo_data);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let mut section = |name: u32, off: usize, size: usize| {
            let mut sh = [0u8; 64];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&sh);
        };
        section(0, 0, 0);
        section(1, strtab_off, shstrtab.len());
        section(11, info_off, modinfo_data.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let info = modinfo(&elf).unwrap();
        assert_eq!(info["depends"], "gre,ip_tunnel");
        assert_eq!(info["name"], "ip_gre");
        assert!(modinfo(b"not an elf").is_err());
    }
}

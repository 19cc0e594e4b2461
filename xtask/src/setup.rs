//! `cargo xtask setup`: installs, idempotently, what the build and the tests
//! need on a Debian 12 machine of the project's kind, then reports the kernel
//! facts the tests depend on. One line per step when there is nothing to do.
//!
//! Nothing here starts or waits for a service: installing `frr` may start an
//! frr service where an init system runs, but the tests start their own
//! daemons inside network namespaces.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::util::{self, Step};

/// Debian packages the build and the tests need.
pub const APT_PACKAGES: &[&str] = &[
    // bpf-linker is built against Debian's LLVM 22.
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // Namespaces, captures and load.
    "iproute2",
    "iputils-ping",
    "procps",
    "psmisc",
    "tcpdump",
    "tshark",
    "iperf3",
    // The kernel datapath's TCP MSS clamp (`nft`).
    "nftables",
    // Real peers (../shared/interop).
    "strongswan-swanctl",
    "strongswan-charon",
    "charon-systemd",
    "libcharon-extra-plugins",
    "libstrongswan-extra-plugins",
    // openssl and gcm: AES-GCM (aes256gcm16) for ESP; without them a
    // strongSwan peer answers NO_PROPOSAL_CHOSEN to a GCM proposal.
    "libstrongswan-standard-plugins",
    "frr",
    // The VM tier (`cargo xtask vm-test`): qemu and the initramfs's busybox.
    "qemu-system-x86",
    "busybox-static",
];

/// What `cargo xtask vm-test` needs of [`APT_PACKAGES`], so that it can
/// install them on its own without the rest of setup.
pub const VM_APT_PACKAGES: &[&str] = &["qemu-system-x86", "busybox-static"];

/// The LLVM that bpf-linker must be built against.
const LLVM_MAJOR: u32 = 22;
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

const PREFIX: &str = "setup";

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    apt_packages()?;
    nightly()?;
    rust_src()?;
    bpf_linker()?;
    root()?;
    netns()?;
    bpf()?;
    kernel_datapath();
    println!("setup: ready in {}", util::human(started.elapsed()));
    Ok(())
}

// ---- apt packages ----------------------------------------------------------

fn apt_packages() -> anyhow::Result<()> {
    ensure_apt_packages("apt packages", APT_PACKAGES)
}

/// Installs those of `packages` that are not installed (as root), saying
/// what it does; one line when there is nothing to do.
pub fn ensure_apt_packages(name: &str, packages: &[&'static str]) -> anyhow::Result<()> {
    let step = Step::new(PREFIX, name);
    let missing = missing_apt_packages(packages)?;
    if missing.is_empty() {
        step.say(format_args!("already there ({} packages)", packages.len()));
        return Ok(());
    }
    step.say(format_args!("installing {} ...", missing.join(" ")));
    if effective_uid() != Some(0) {
        bail!(
            "installing apt packages needs root: run `cargo xtask setup` as root, or run \
             `apt-get install -y --no-install-recommends {}` as root first",
            missing.join(" ")
        );
    }
    util::run(util::command("apt-get").args(["update", "-q"]))
        .context("`apt-get update` failed: check the network and /etc/apt/sources.list.d")?;
    util::run(
        util::command("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
    .context(
        "installing apt packages failed; llvm-22-dev comes from bookworm-security on these \
         machines: check that it is in the apt sources",
    )?;
    let still_missing = missing_apt_packages(packages)?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get succeeded but these are still not installed: {}",
            still_missing.join(" ")
        );
    }
    step.say(format_args!("done in {}", util::human(step.elapsed())));
    Ok(())
}

fn missing_apt_packages(packages: &[&'static str]) -> anyhow::Result<Vec<&'static str>> {
    // Exits 1 when a package is unknown to dpkg; its stdout still lists the
    // others, and unknown means missing.
    let out = util::output(
        util::command("dpkg-query")
            .arg("-W")
            .arg("-f=${Package} ${Status}\n")
            .args(packages),
    )
    .context("dpkg-query is needed: this is meant for Debian 12 (bookworm)")?;
    Ok(missing_packages(
        packages,
        &String::from_utf8_lossy(&out.stdout),
    ))
}

/// The wanted packages that `dpkg-query -W -f='${Package} ${Status}\n'` does
/// not report as installed (absent, removed, half-installed...).
fn missing_packages<'a>(wanted: &[&'a str], dpkg_output: &str) -> Vec<&'a str> {
    let installed: Vec<&str> = dpkg_output
        .lines()
        .filter_map(|line| {
            let (package, status) = line.trim().split_once(' ')?;
            // Status is "<want> <error> <state>": "install ok installed", or
            // "hold ok installed" for a held package.
            let mut words = status.split_whitespace();
            let (_, error, state) = (words.next()?, words.next()?, words.next()?);
            (error == "ok" && state == "installed").then_some(package)
        })
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect()
}

// ---- toolchains ------------------------------------------------------------

fn nightly() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "nightly toolchain");
    let list = util::output(util::command("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to manage the toolchains; install it with the machine image")?;
    let list = String::from_utf8_lossy(&list.stdout);
    match nightly_toolchain(&list) {
        Some(name) => {
            step.say(format_args!("already there ({name})"));
            Ok(())
        }
        None => bail!(
            "no nightly toolchain (`rustup toolchain list` shows none); the eBPF build needs \
             it, and nothing new can be downloaded as a toolchain here: use a machine image \
             that provides nightly (DESIGN.md, \"Pinned toolchain facts\")"
        ),
    }
}

/// The name of the nightly toolchain in `rustup toolchain list` output.
fn nightly_toolchain(list: &str) -> Option<&str> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .find(|name| *name == "nightly" || name.starts_with("nightly-"))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = util::output(
        util::command("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]),
    )?;
    if !out.status.success() {
        bail!(
            "`rustup run nightly rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rust_src_present(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
}

fn rust_src() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "rust-src for nightly");
    let sysroot = nightly_sysroot()?;
    if rust_src_present(&sysroot) {
        step.say("already there");
        return Ok(());
    }
    step.say("installing ...");
    util::run(util::command("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .context(
        "could not add rust-src to nightly; if nothing can be downloaded here, the machine \
         image must provide it",
    )?;
    if !rust_src_present(&sysroot) {
        bail!(
            "rust-src still missing under {} after `rustup component add`",
            sysroot.display()
        );
    }
    step.say(format_args!("done in {}", util::human(step.elapsed())));
    Ok(())
}

// ---- bpf-linker -------------------------------------------------------------

/// What we know about an installed bpf-linker.
struct Linker {
    path: PathBuf,
    version: String,
    llvm: Option<u32>,
}

/// Finds bpf-linker, runs `--version` (a binary whose libLLVM is gone fails
/// here), and works out the LLVM it was built against.
fn installed_linker() -> Option<Linker> {
    let path = util::find_tool("bpf-linker")?;
    let version = util::probe(util::command(&path).arg("--version"))?
        .trim()
        .to_owned();
    let llvm = llvm_major_from_version(&version)
        .or_else(|| {
            util::probe(util::command("ldd").arg(&path)).and_then(|ldd| llvm_major_from_ldd(&ldd))
        })
        .or_else(|| {
            let crates2 = util::cargo_bin_dir()?.parent()?.join(".crates2.json");
            llvm_major_from_crates2(&fs::read_to_string(crates2).ok()?)
        });
    Some(Linker {
        path,
        version,
        llvm,
    })
}

fn bpf_linker() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "bpf-linker");
    let reason = match installed_linker() {
        Some(linker) if linker.llvm.is_none_or(|major| major == LLVM_MAJOR) => {
            let llvm = linker.llvm.map_or_else(
                || "LLVM version unknown".to_owned(),
                |m| format!("LLVM {m}"),
            );
            let mut note = String::new();
            if util::cargo_bin_missing_from_path()
                && linker.path.parent() == util::cargo_bin_dir().as_deref()
            {
                note = format!(
                    "; note: {} is not on PATH (xtask adds it; add it for a plain `cargo build`)",
                    linker.path.parent().unwrap_or(&linker.path).display()
                );
            }
            step.say(format_args!(
                "already there ({}, {llvm}, {}){note}",
                linker.version,
                linker.path.display()
            ));
            return Ok(());
        }
        Some(linker) => format!(
            "{} is built against LLVM {}, the eBPF build needs LLVM {LLVM_MAJOR}",
            linker.path.display(),
            linker.llvm.unwrap_or_default()
        ),
        None => "not found (or `bpf-linker --version` fails)".to_owned(),
    };
    step.say(format_args!(
        "{reason}: installing with cargo install (about 3 minutes) ..."
    ));
    if !Path::new(LLVM_PREFIX).join("bin/llvm-config").is_file() {
        bail!("{LLVM_PREFIX}/bin/llvm-config is missing: install llvm-22-dev (apt step) first");
    }
    util::run(
        util::command("cargo")
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(["install", "bpf-linker", "--locked", "--force"])
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{LLVM_MAJOR}")),
    )
    .context(
        "building bpf-linker failed: it needs llvm-22-dev libpolly-22-dev libzstd-dev \
         zlib1g-dev and access to crates.io",
    )?;
    match installed_linker() {
        Some(linker) if linker.llvm.is_none_or(|major| major == LLVM_MAJOR) => {
            step.say(format_args!(
                "done in {} ({}, {})",
                util::human(step.elapsed()),
                linker.version,
                linker.path.display()
            ));
            Ok(())
        }
        _ => bail!(
            "bpf-linker was installed but is not usable with LLVM {LLVM_MAJOR}; check that no \
             other bpf-linker comes first on PATH"
        ),
    }
}

/// Parses the first run of digits starting at `text`.
fn leading_number(text: &str) -> Option<u32> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// `bpf-linker --version`: 0.13 prints only `bpf-linker 0.13.0`; accept an
/// `LLVM 22` or `LLVM version 22` should a later one say.
fn llvm_major_from_version(version: &str) -> Option<u32> {
    let (_, rest) = version.split_once("LLVM")?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("version").unwrap_or(rest).trim_start();
    leading_number(rest)
}

/// `ldd bpf-linker` for a linker linked dynamically against libLLVM:
/// `libLLVM.so.22.1 => ...` (LLVM 18+) or `libLLVM-17.so.1 => ...`.
fn llvm_major_from_ldd(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("libLLVM")?;
        let rest = rest
            .strip_prefix(".so.")
            .or_else(|| rest.strip_prefix('-'))?;
        leading_number(rest)
    })
}

/// `~/.cargo/.crates2.json`: the features bpf-linker was installed with
/// (`"llvm-22"`). A plain text scan keeps xtask free of a JSON dependency.
fn llvm_major_from_crates2(json: &str) -> Option<u32> {
    let start = json.find("\"bpf-linker ")?;
    let entry = &json[start..];
    let entry = &entry[..entry.find('}').unwrap_or(entry.len())];
    let features = &entry[entry.find("\"features\"")?..];
    let features = &features[..features.find(']')?];
    features
        .split('"')
        .find_map(|word| word.strip_prefix("llvm-")?.parse().ok())
}

// ---- kernel facts (reported, never installed) -------------------------------

/// The effective uid, from /proc/self/status (no libc needed).
fn effective_uid() -> Option<u32> {
    euid_from_status(&fs::read_to_string("/proc/self/status").ok()?)
}

/// `Uid:\t<real>\t<effective>\t<saved>\t<fs>` -> effective.
fn euid_from_status(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn root() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "root");
    match effective_uid() {
        Some(0) => {
            step.say("yes");
            Ok(())
        }
        Some(uid) => bail!(
            "running as uid {uid}: the netns and XDP tests need root; run `cargo xtask setup` \
             and the tests as root"
        ),
        None => bail!("cannot read the uid from /proc/self/status: is /proc mounted?"),
    }
}

fn netns() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "netns");
    // Creating and deleting one is the only honest check.
    let name = format!("xtask-probe-{}", std::process::id());
    let added = util::output(util::command("ip").args(["netns", "add", &name]))
        .context("`ip` is missing: install iproute2")?;
    if !added.status.success() {
        bail!(
            "`ip netns add {name}` failed ({}): the integration tests need network namespaces; \
             run as root on a host, VM or privileged container that allows them",
            String::from_utf8_lossy(&added.stderr).trim()
        );
    }
    let deleted = util::output(util::command("ip").args(["netns", "delete", &name]))?;
    if !deleted.status.success() {
        bail!(
            "`ip netns delete {name}` failed: {}",
            String::from_utf8_lossy(&deleted.stderr).trim()
        );
    }
    step.say("ok (ip netns add/delete works)");
    Ok(())
}

fn bpf() -> anyhow::Result<()> {
    let step = Step::new(PREFIX, "bpf");
    // This sysctl exists exactly when the kernel has the bpf() syscall.
    if !Path::new("/proc/sys/kernel/unprivileged_bpf_disabled").exists() {
        bail!(
            "the kernel has no bpf() syscall (no /proc/sys/kernel/unprivileged_bpf_disabled): \
             the XDP tests need a kernel with CONFIG_BPF_SYSCALL"
        );
    }
    let btf = if Path::new("/sys/kernel/btf/vmlinux").exists() {
        "BTF present"
    } else {
        "no kernel BTF"
    };
    let bpffs = fs::read_to_string("/proc/mounts")
        .is_ok_and(|mounts| mounts.lines().any(|l| l.starts_with("bpf /sys/fs/bpf ")));
    let bpffs = if bpffs {
        "bpffs mounted"
    } else {
        "bpffs not mounted (only needed to pin maps)"
    };
    step.say(format_args!("ok (bpf syscall, {btf}, {bpffs})"));
    Ok(())
}

/// What the kernel offers for the kernel datapath.
#[derive(Debug, PartialEq, Eq)]
struct DatapathFeatures {
    gre: bool,
    esp4: bool,
}

/// Looks for ip_gre and esp4 among the kernel's symbols (built-in or
/// loaded): cheap, and needs no modprobe. `gretap_fb_dev_create` and
/// `esp_output_head` are exported by ip_gre and esp4; `gre0` is ip_gre's
/// fallback device.
fn datapath_features(kallsyms: &str, proc_net_dev: &str) -> DatapathFeatures {
    const GRE_SYMBOLS: &[&str] = &["gretap_fb_dev_create", "ipgre_err", "ipgre_rcv"];
    const ESP4_SYMBOLS: &[&str] = &["esp_output_head", "esp_input_done2", "esp4_err"];
    let mut features = DatapathFeatures {
        gre: proc_net_dev
            .lines()
            .any(|line| line.trim_start().starts_with("gre0:")),
        esp4: false,
    };
    // Lines are `<address> <type> <name>[\t[<module>]]`; one cheap pass
    // (5 MB: this stays well under a second even in a debug build).
    for line in kallsyms.lines() {
        let Some((_, name)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name.split_once('\t').map_or(name, |(name, _)| name);
        features.gre |= GRE_SYMBOLS.contains(&name);
        features.esp4 |= ESP4_SYMBOLS.contains(&name);
    }
    features
}

/// Informational only: the userspace datapath runs end to end on any kernel.
fn kernel_datapath() {
    let step = Step::new(PREFIX, "kernel datapath");
    let kallsyms = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let net_dev = fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let features = datapath_features(&kallsyms, &net_dev);
    let modules = Path::new("/proc/modules").exists();
    let mut missing = Vec::new();
    if !features.gre {
        missing.push("ip_gre");
    }
    if !features.esp4 {
        missing.push("esp4");
    }
    if missing.is_empty() {
        step.say("ip_gre and esp4 present: the kernel datapath can be tested here");
    } else if modules {
        step.say(format_args!(
            "{} not loaded (modules may load on demand); if they do not, the userspace \
             datapath will be used and kernel-datapath tests are skipped",
            missing.join(", ")
        ));
    } else {
        step.say(format_args!(
            "no {} (kernel without loadable modules): the userspace datapath will be used; \
             kernel-datapath tests are skipped here",
            missing.join(", no ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_packages_from_dpkg_query() {
        let out = "iproute2 install ok installed\n\
                   tshark deinstall ok config-files\n\
                   frr hold ok installed\n\
                   tcpdump install reinstreq half-installed\n\
                   iperf3 unknown ok not-installed\n";
        let wanted = ["iproute2", "tshark", "frr", "tcpdump", "iperf3", "procps"];
        assert_eq!(
            missing_packages(&wanted, out),
            ["tshark", "tcpdump", "iperf3", "procps"]
        );
        assert!(missing_packages(&["iproute2"], out).is_empty());
        assert_eq!(missing_packages(&["frr"], ""), ["frr"]);
    }

    #[test]
    fn vm_packages_are_setup_packages() {
        for package in VM_APT_PACKAGES {
            assert!(APT_PACKAGES.contains(package), "{package}");
        }
    }

    #[test]
    fn nightly_in_toolchain_list() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            nightly_toolchain(list),
            Some("nightly-x86_64-unknown-linux-gnu")
        );
        assert_eq!(nightly_toolchain("stable-x86_64-unknown-linux-gnu\n"), None);
        assert_eq!(nightly_toolchain("no installed toolchains\n"), None);
        // A dated nightly counts too.
        assert!(nightly_toolchain("nightly-2026-05-19-x86_64-unknown-linux-gnu\n").is_some());
    }

    #[test]
    fn llvm_from_bpf_linker_version() {
        assert_eq!(llvm_major_from_version("bpf-linker 0.13.0"), None);
        assert_eq!(
            llvm_major_from_version("bpf-linker 0.14.0 (LLVM 22.1.8)"),
            Some(22)
        );
        assert_eq!(llvm_major_from_version("LLVM version 21.1.0"), Some(21));
    }

    #[test]
    fn llvm_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007f5c78653000)\n\
                   \tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007f5c6f400000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f5c6f21e000)\n";
        assert_eq!(llvm_major_from_ldd(ldd), Some(22));
        assert_eq!(
            llvm_major_from_ldd("\tlibLLVM-17.so.1 => /usr/lib/x86_64-linux-gnu/libLLVM-17.so.1\n"),
            Some(17)
        );
        // Statically linked: nothing to learn.
        assert_eq!(llvm_major_from_ldd("\tlibc.so.6 => /lib/libc.so.6\n"), None);
    }

    #[test]
    fn llvm_from_crates2_json() {
        let json = r#"{"installs":{"cargo-nextest 0.9.0 (registry+https://github.com/rust-lang/crates.io-index)":{"features":["llvm-19"]},
            "bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)": {
                "version_req": null, "bins": ["bpf-linker"], "features": ["llvm-22"],
                "all_features": false, "no_default_features": true,
                "rustc": "rustc 1.95.0\nLLVM version: 22.1.2\n"
            }}}"#;
        assert_eq!(llvm_major_from_crates2(json), Some(22));
        let default_features =
            r#"{"installs":{"bpf-linker 0.13.0 (registry+x)":{"features":[],"bins":[]}}}"#;
        assert_eq!(llvm_major_from_crates2(default_features), None);
        assert_eq!(llvm_major_from_crates2(r#"{"installs":{}}"#), None);
    }

    #[test]
    fn euid_from_proc_status() {
        let status = "Name:\txtask\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(euid_from_status(status), Some(0));
        assert_eq!(euid_from_status("Name:\tx\n"), None);
    }

    #[test]
    fn datapath_from_kallsyms() {
        let kallsyms = "ffffffff820a0ad0 T xfrm4_rcv\nffffffff820b6e20 T xfrm_input\n";
        let net_dev = "Inter-|   Receive\n face |bytes\n    lo:    3245\n  eth0: 217420447\n";
        assert_eq!(
            datapath_features(kallsyms, net_dev),
            DatapathFeatures {
                gre: false,
                esp4: false
            }
        );
        let kallsyms = "ffffffff81000000 T esp_output_head\nffffffff81000100 t ipgre_err\n";
        assert_eq!(
            datapath_features(kallsyms, net_dev),
            DatapathFeatures {
                gre: true,
                esp4: true
            }
        );
        // A loaded module: the name is followed by a tab and the module.
        let kallsyms = "ffffffffc0a01000 t esp4_err\t[esp4]\nffffffffc0a02000 t ipgre_rcv_x\t[x]\n";
        assert_eq!(
            datapath_features(kallsyms, net_dev),
            DatapathFeatures {
                gre: false,
                esp4: true
            }
        );
        let gre_dev = "    lo:    3245\n  gre0: 0 0\n";
        assert!(datapath_features("", gre_dev).gre);
    }
}

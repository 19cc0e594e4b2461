//! The VM's kernel: the Debian kernel package, downloaded once into the
//! cache, unpacked (never installed), and the initramfs built for it.

use std::{
    fs,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, ensure};

use crate::cmd::{command_line, run_checked};

use super::{
    VM_MODULES, VM_OPTIONAL_MODULES, VmImage, cache_dir,
    initramfs::{build_initramfs, initramfs_key},
    memchr,
    modules::ModuleIndex,
};

/// The Debian metapackage whose dependency names the kernel package.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

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
}

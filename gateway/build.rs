//! Builds the XDP program (`gateway-ebpf`) with aya-build and nightly, so the
//! daemon can embed it with `include_bytes_aligned!`.
use std::{path::Path, process::Command};

use anyhow::{Context as _, anyhow, bail};

const SETUP_HINT: &str = "run `cargo xtask setup` (it installs what the eBPF build needs)";

fn main() -> anyhow::Result<()> {
    check_prerequisites()?;
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "gateway-ebpf")
        .ok_or_else(|| anyhow!("package gateway-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("gateway-ebpf manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .with_context(|| format!("building the XDP program failed; if a tool is missing, {SETUP_HINT}"))
}

/// Fails early, with the fix in the message, when bpf-linker or nightly's
/// rust-src is missing (aya-build's own errors do not say what to do).
fn check_prerequisites() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PATH");
    if std::env::var_os("AYA_BUILD_SKIP").is_some() {
        return Ok(());
    }
    let linker_found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file())
    });
    if !linker_found {
        bail!("bpf-linker is not on PATH; {SETUP_HINT}");
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .with_context(|| {
            format!("cannot run the nightly toolchain through rustup; {SETUP_HINT}")
        })?;
    if !sysroot.status.success() {
        bail!("the nightly toolchain is not installed; {SETUP_HINT}");
    }
    let sysroot = String::from_utf8_lossy(&sysroot.stdout);
    let core_src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        bail!(
            "nightly has no rust-src component ({} missing); {SETUP_HINT}",
            core_src.display()
        );
    }
    Ok(())
}

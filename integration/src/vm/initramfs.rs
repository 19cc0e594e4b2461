//! The initramfs: busybox, the modules in load order and the `/init`
//! script, as an uncompressed `newc` cpio archive.

use std::{
    fmt::Write as _,
    fs,
    hash::{Hash as _, Hasher as _},
};

use anyhow::{Context as _, Result};

use super::{BUSYBOX, VM_MODULES, VM_OPTIONAL_MODULES, modules::Module};

/// The `/init` script of the initramfs (busybox sh).
const INIT: &str = include_str!("init.sh");

/// A cache key for the initramfs: the module lists, `/init`, and busybox.
pub(super) fn initramfs_key(release: &str) -> Result<u64> {
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

pub(super) fn build_initramfs(modules: &[Module]) -> Result<Vec<u8>> {
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
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vm::memchr;

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
}

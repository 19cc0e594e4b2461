//! The kernel modules the VM loads: an index of the kernel package's
//! modules and the dependency closure of [`VM_MODULES`](super::VM_MODULES),
//! read from each module's `.modinfo`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};

/// One module of the kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name, with `_` for `-` (`ghash_clmulni_intel`).
    pub name: String,
    pub path: PathBuf,
    /// A failed `insmod` is not reported (see [`VM_OPTIONAL_MODULES`](super::VM_OPTIONAL_MODULES)).
    pub optional: bool,
}

/// The modules of one kernel release, by name, and the built-in ones.
pub(super) struct ModuleIndex {
    modules: HashMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

/// A module name as the kernel spells it: `-` becomes `_`.
fn module_name(file_stem: &str) -> String {
    file_stem.replace('-', "_")
}

impl ModuleIndex {
    pub(super) fn scan(modules_dir: &Path) -> Result<Self> {
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
    pub(super) fn closure(&self, wanted: &[&str], optional: &[&str]) -> Result<Vec<Module>> {
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
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

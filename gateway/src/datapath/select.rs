//! Which datapath runs: `datapath = "auto"` takes the kernel one when the
//! kernel has what it needs (ESP in XFRM and GRE links), the userspace one
//! otherwise, and says why.

use std::path::Path;

use crate::config::Datapath as Choice;

/// What the running kernel offers the kernel datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    pub ip_gre: bool,
    pub esp4: bool,
}

impl KernelFeatures {
    /// Looks at the running kernel. ip_gre creates the fallback device
    /// `gre0` in every network namespace; esp4 shows as /sys/module/esp4
    /// once loaded.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/"))
    }

    pub fn detect_in(root: &Path) -> Self {
        let exists = |p: &str| root.join(p).exists();
        KernelFeatures {
            ip_gre: exists("sys/class/net/gre0") || exists("sys/module/ip_gre"),
            esp4: exists("sys/module/esp4"),
        }
    }

    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.ip_gre {
            m.push("ip_gre (GRE tunnels)");
        }
        if !self.esp4 {
            m.push("esp4 (ESP in XFRM)");
        }
        m
    }
}

/// The datapath to run, or why the configured one cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selected {
    Userspace { reason: String },
    Kernel,
}

pub fn select(choice: Choice, kernel: &KernelFeatures) -> Result<Selected, String> {
    let missing = kernel.missing();
    match choice {
        Choice::Userspace => Ok(Selected::Userspace {
            reason: "hub.datapath = \"userspace\"".to_owned(),
        }),
        Choice::Auto if !missing.is_empty() => Ok(Selected::Userspace {
            reason: format!(
                "hub.datapath = \"auto\" and the kernel lacks {}",
                missing.join(" and ")
            ),
        }),
        Choice::Kernel if !missing.is_empty() => Err(format!(
            "hub.datapath = \"kernel\" needs kernel support this host does not have: {}; \
             use \"userspace\" or \"auto\"",
            missing.join(", ")
        )),
        Choice::Auto | Choice::Kernel => Ok(Selected::Kernel),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn auto_falls_back_and_says_why_kernel_refuses_naming_the_feature() {
        let none = KernelFeatures {
            ip_gre: false,
            esp4: false,
        };
        let Selected::Userspace { reason } = select(Choice::Auto, &none).unwrap() else {
            panic!("auto without kernel support must pick userspace");
        };
        assert!(
            reason.contains("ip_gre") && reason.contains("esp4"),
            "{reason}"
        );
        let e = select(Choice::Kernel, &none).unwrap_err();
        assert!(e.contains("ip_gre (GRE tunnels), esp4"), "{e}");
        let gre_only = KernelFeatures {
            ip_gre: true,
            esp4: false,
        };
        let e = select(Choice::Kernel, &gre_only).unwrap_err();
        assert!(e.contains("esp4") && !e.contains("ip_gre"), "{e}");
        assert!(matches!(
            select(Choice::Userspace, &gre_only),
            Ok(Selected::Userspace { .. })
        ));
    }

    #[test]
    fn a_kernel_with_both_runs_the_kernel_datapath_unless_told_otherwise() {
        let both = KernelFeatures {
            ip_gre: true,
            esp4: true,
        };
        assert_eq!(select(Choice::Auto, &both), Ok(Selected::Kernel));
        assert_eq!(select(Choice::Kernel, &both), Ok(Selected::Kernel));
        assert!(matches!(
            select(Choice::Userspace, &both),
            Ok(Selected::Userspace { .. })
        ));
    }

    #[test]
    fn detection_reads_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(KernelFeatures::detect_in(dir.path()).missing().len(), 2);
        std::fs::create_dir_all(dir.path().join("sys/class/net/gre0")).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/module/esp4")).unwrap();
        assert!(KernelFeatures::detect_in(dir.path()).missing().is_empty());
    }
}

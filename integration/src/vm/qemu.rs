//! qemu: the machine every run uses, whether KVM works here, and how the
//! command's status comes back through `isa-debug-exit`.

use std::{fs, process::Command, time::Duration};

use super::{Accel, VmImage, cache_dir};

pub(super) const QEMU: &str = "qemu-system-x86_64";
/// The `isa-debug-exit` port; the VM writes `status + 1` to it.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// The highest command status passed through the exit code as is.
pub(super) const MAX_STATUS: i32 = 100;

/// The kernel command line; `/init` reads `gateway_vm_probe` (see
/// [`kvm_works`]).
pub(super) const KERNEL_CMDLINE: &str = "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 rdinit=/init \
                              mitigations=off tsc=reliable no_timer_check";
/// What `/init` exits with when the command line has `gateway_vm_probe`.
const PROBE_STATUS: i32 = 42;

/// qemu with the machine every run uses: `accel`, a CPU model for it,
/// memory, CPUs, the kernel and initramfs, a serial console on stdio,
/// `isa-debug-exit`, no default devices, no reboot.
pub(super) fn qemu_command(
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

pub(super) fn resolve_accel(accel: Accel, image: &VmImage) -> Accel {
    match accel {
        Accel::Auto if kvm_works(image) => Accel::Kvm,
        Accel::Auto => Accel::Tcg,
        other => other,
    }
}

/// A qemu exit code read back: `isa-debug-exit` makes qemu exit with
/// `(value << 1) | 1`, and the VM writes `status + 1` (at most
/// `MAX_STATUS + 1`). `None`: qemu exited for another reason (0 after a
/// power-off or a panic without the port, 1 on its own errors).
pub(super) fn status_from_exit_code(code: i32) -> Option<i32> {
    (code >= 3 && code % 2 == 1).then(|| (code - 1) / 2 - 1)
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}

//! A small network-namespace lab for the integration tests and `cargo xtask lab`.
//!
//! A [`Lab`] owns network namespaces, veth pairs, background processes and a
//! temporary directory, and removes all of them when it is dropped — also when
//! a test panics, because `Drop` runs during unwinding. Names carry the test
//! process's pid and a process-wide counter, so parallel tests (threads of one
//! process, or several processes) never collide, and namespaces left behind by
//! a run that was killed with SIGKILL are removed by the next [`Lab::new`].
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use integration::{Lab, packets};
//! let lab = Lab::new("demo")?;
//! let hub = lab.netns("hub")?;
//! let spoke = lab.netns("spoke")?;
//! let (h, s) = lab.veth(&hub, &spoke)?;
//! h.add_addr("172.25.1.1/24")?;
//! s.add_addr("172.25.1.2/24")?;
//! let rx = packets::bind_udp(&hub, "172.25.1.1:500".parse()?)?;
//! packets::send_udp(&spoke, "172.25.1.2:500".parse()?, "172.25.1.1:500".parse()?, b"hi")?;
//! let (payload, _from) = packets::recv_udp(&rx, std::time::Duration::from_secs(2))?;
//! assert_eq!(payload, b"hi");
//! # Ok(()) }
//! ```
//!
//! Traffic made with this crate stays inside the namespaces a lab creates.

pub mod bgp_scale_lab;
pub mod capture;
mod cmd;
pub mod flex_lab;
pub mod frame;
pub mod frr;
pub mod gateway;
pub mod ike_lab;
mod lab;
pub mod packets;
mod process;
pub mod scale_lab;
pub mod strongswan;
pub mod vm;
pub mod xdp_lab;

use std::thread;
use std::time::{Duration, Instant};

pub use cmd::{command_line, run_checked, run_unchecked};
pub use lab::{Lab, Link, Netns, cleanup_stale_namespaces};
pub use process::Proc;

/// Default bound for one command run by the lab (`ip ...`, [`Netns::exec`]).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_mins(1);

/// Fails with "needs root (netns)" unless the effective uid is 0.
///
/// Tests use [`skip_unless_root!`] to print `skipped: needs root (netns)` and
/// return instead of failing.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Ok(())
    } else {
        anyhow::bail!("needs root (netns); effective uid is {euid}")
    }
}

/// Returns early from the calling test (printing `skipped: needs root (netns)`)
/// when the process is not root.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if let Err(e) = $crate::require_root() {
            eprintln!("skipped: {e}");
            return;
        }
    };
}

/// Polls `condition` every `interval` until it returns true or `timeout` has
/// passed. Returns whether the condition became true. The condition is always
/// checked at least once, and once more at the deadline.
pub fn wait_until(
    timeout: Duration,
    interval: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and waits (at
/// most `timeout`, or forever with `None`) for one of them; returns it, or
/// `None` on timeout. The previous signal mask is restored afterwards.
///
/// For `cargo xtask lab`: without this, Ctrl-C kills the process before the
/// [`Lab`] is dropped. Call it from the main thread while no other thread
/// runs (a thread that does not block these signals may receive them instead).
/// Processes started with [`Netns::spawn`] have their own process groups, so
/// a Ctrl-C at the terminal does not reach them; the lab stops them on drop.
pub fn wait_for_interrupt(timeout: Option<Duration>) -> anyhow::Result<Option<libc::c_int>> {
    use anyhow::Context as _;
    use std::ptr;

    // SAFETY: sigset_t is plain data, initialised by sigemptyset below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigset_t values we own.
    let rc = unsafe {
        libc::sigemptyset(&raw mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&raw mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old)
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc))
            .context("blocking SIGINT/SIGTERM/SIGHUP");
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let result = loop {
        let rc = match deadline {
            None => {
                // SAFETY: valid set; the siginfo pointer may be null.
                unsafe { libc::sigwaitinfo(&raw const set, ptr::null_mut()) }
            }
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                #[allow(clippy::unnecessary_fallible_conversions)]
                // c_long is 32-bit on some targets
                let ts = libc::timespec {
                    tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_nsec: libc::c_long::try_from(left.subsec_nanos()).unwrap_or(0),
                };
                // SAFETY: valid set and timespec; the siginfo pointer may be null.
                unsafe { libc::sigtimedwait(&raw const set, ptr::null_mut(), &raw const ts) }
            }
        };
        if rc >= 0 {
            break Ok(Some(rc));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => break Ok(None),
            _ => break Err(anyhow::Error::new(err).context("waiting for a signal")),
        }
    };
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, ptr::null_mut()) };
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_is_bounded() {
        let start = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || false
        ));
        assert!(start.elapsed() >= Duration::from_millis(50));
        let mut n = 0;
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                n == 3
            }
        ));
    }

    #[test]
    fn wait_for_interrupt_times_out_and_sees_a_signal() {
        assert_eq!(
            wait_for_interrupt(Some(Duration::from_millis(20))).unwrap(),
            None
        );
        // A thread-directed SIGHUP, raised while it is blocked in this thread
        // only, so no other test thread can receive it.
        let got = std::thread::spawn(|| {
            // SAFETY: plain libc calls on this thread's own mask.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut set);
                libc::sigaddset(&raw mut set, libc::SIGHUP);
                libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
                libc::pthread_kill(libc::pthread_self(), libc::SIGHUP);
            }
            wait_for_interrupt(Some(Duration::from_secs(5))).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(got, Some(libc::SIGHUP));
    }
}

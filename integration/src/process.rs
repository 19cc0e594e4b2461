//! Background processes in a namespace, and killing whatever runs in one.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::cmd::tail;
use crate::wait_until;

/// How long a process gets between SIGTERM and SIGKILL.
pub(crate) const TERM_GRACE: Duration = Duration::from_secs(3);
/// How much of a log [`Proc`] prints when it is dropped during a panic.
const LOG_TAIL_ON_PANIC: usize = 8 * 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A background process started with [`Netns::spawn`](crate::Netns::spawn).
///
/// It runs in its own process group. Dropping the `Proc` (or the [`Lab`](crate::Lab)
/// it came from) sends SIGTERM to the group, waits up to 3 s for the process
/// to exit, then sends SIGKILL to the group and reaps the process. stdout and
/// stderr go to files in the lab's temporary directory; when the drop happens
/// during a panic, their tails are printed to stderr.
#[derive(Debug)]
pub struct Proc {
    inner: Arc<ProcInner>,
}

#[derive(Debug)]
pub(crate) struct ProcInner {
    child: Mutex<Child>,
    pid: libc::pid_t,
    description: String,
    netns: String,
    stdout: PathBuf,
    stderr: PathBuf,
    shut_down: AtomicBool,
}

impl Proc {
    pub(crate) fn new(
        child: Child,
        description: String,
        netns: String,
        stdout: PathBuf,
        stderr: PathBuf,
    ) -> Result<Self> {
        let pid = libc::pid_t::try_from(child.id())?;
        Ok(Self {
            inner: Arc::new(ProcInner {
                child: Mutex::new(child),
                pid,
                description,
                netns,
                stdout,
                stderr,
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<ProcInner> {
        &self.inner
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.inner.pid.cast_unsigned()
    }

    /// The command line this process was started with (inside the namespace).
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process. Fails once the
    /// process has been reaped.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        self.send(signal, false)
    }

    /// Sends `signal` to the whole process group of the process.
    pub fn signal_group(&self, signal: libc::c_int) -> Result<()> {
        self.send(signal, true)
    }

    fn send(&self, signal: libc::c_int, group: bool) -> Result<()> {
        let inner = &self.inner;
        // Holding the child lock keeps anyone from reaping it meanwhile, so
        // the pid cannot be reused under us.
        let _child = lock(&inner.child);
        if leader_state(inner.pid) == Leader::Reaped {
            bail!("cannot signal {}: it has already exited", inner.description);
        }
        // SAFETY: plain syscalls on a pid we own and have not reaped.
        let rc = unsafe {
            if group {
                libc::killpg(inner.pid, signal)
            } else {
                libc::kill(inner.pid, signal)
            }
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            bail!(
                "cannot send signal {signal} to {}: {err}",
                inner.description
            );
        }
        Ok(())
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        Ok(lock(&self.inner.child).try_wait()?)
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits (bounded) for the process to exit. On timeout the process keeps
    /// running and the error shows the tail of its stderr.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<ExitStatus> {
        let mut status = None;
        let mut error = None;
        wait_until(timeout, Duration::from_millis(10), || {
            match lock(&self.inner.child).try_wait() {
                Ok(Some(s)) => status = Some(s),
                Ok(None) => return false,
                Err(e) => error = Some(e),
            }
            true
        });
        if let Some(e) = error {
            return Err(e.into());
        }
        match status {
            Some(s) => Ok(s),
            None => bail!(
                "{} still running after {timeout:?}\nstderr: {}",
                self.inner.description,
                tail(&self.stderr_text(), 2000)
            ),
        }
    }

    /// Polls (bounded) until `needle` appears in the process's stdout or
    /// stderr. Fails early if the process exits first.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<()> {
        let mut exited = false;
        let found = wait_until(timeout, Duration::from_millis(20), || {
            if self.stdout_text().contains(needle) || self.stderr_text().contains(needle) {
                return true;
            }
            exited = !self.is_running();
            exited
        });
        // A last look: the process may have printed it just before exiting.
        if found && (self.stdout_text().contains(needle) || self.stderr_text().contains(needle)) {
            return Ok(());
        }
        let why = if exited { "exited" } else { "timed out" };
        bail!(
            "{} {why} before printing {needle:?} (waited up to {timeout:?})\nstdout: {}\nstderr: {}",
            self.inner.description,
            tail(&self.stdout_text(), 2000),
            tail(&self.stderr_text(), 2000)
        )
    }

    /// Stops the process now (SIGTERM to the group, up to 3 s, then SIGKILL)
    /// and returns its exit status.
    pub fn terminate(&self) -> Result<ExitStatus> {
        shutdown(std::slice::from_ref(&self.inner), TERM_GRACE);
        match lock(&self.inner.child).try_wait()? {
            Some(s) => Ok(s),
            None => bail!("{} did not exit after SIGKILL", self.inner.description),
        }
    }

    /// Everything the process has written to stdout so far (lossy UTF-8).
    pub fn stdout_text(&self) -> String {
        read_lossy(&self.inner.stdout)
    }

    /// Everything the process has written to stderr so far (lossy UTF-8).
    pub fn stderr_text(&self) -> String {
        read_lossy(&self.inner.stderr)
    }

    /// The file that receives the process's stdout.
    pub fn stdout_path(&self) -> &Path {
        &self.inner.stdout
    }

    /// The file that receives the process's stderr.
    pub fn stderr_path(&self) -> &Path {
        &self.inner.stderr
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        shutdown(std::slice::from_ref(&self.inner), TERM_GRACE);
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Leader {
    Running,
    /// Exited but not reaped: its pid (and process group id) cannot be reused.
    Exited,
    Reaped,
}

/// Looks at our child `pid` without reaping it (waitid with WNOWAIT).
/// Call with the child's lock held.
fn leader_state(pid: libc::pid_t) -> Leader {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid.cast_unsigned(),
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Leader::Reaped; // ECHILD: already reaped
    }
    // SAFETY: waitid filled `info` (si_pid stays 0 when nothing has exited).
    if unsafe { info.si_pid() } == 0 {
        Leader::Running
    } else {
        Leader::Exited
    }
}

/// Stops each process (once): SIGTERM to its group, waits up to `grace` for
/// all of them, SIGKILL to each group, then reaps. Bounded in time.
pub(crate) fn shutdown(procs: &[Arc<ProcInner>], grace: Duration) {
    let procs: Vec<&Arc<ProcInner>> = procs
        .iter()
        .filter(|p| !p.shut_down.swap(true, Ordering::AcqRel))
        .collect();
    if procs.is_empty() {
        return;
    }
    for p in &procs {
        let _child = lock(&p.child);
        if leader_state(p.pid) == Leader::Running {
            // SAFETY: the leader is running, so its process group id is ours.
            unsafe { libc::killpg(p.pid, libc::SIGTERM) };
        }
    }
    wait_until(grace, Duration::from_millis(10), || {
        procs.iter().all(|p| {
            let _child = lock(&p.child);
            leader_state(p.pid) != Leader::Running
        })
    });
    for p in &procs {
        let mut child = lock(&p.child);
        if leader_state(p.pid) != Leader::Reaped {
            // The unreaped leader pins the group id: this only reaches the
            // group we started (the leader and anything left in its group).
            // SAFETY: plain syscall.
            unsafe { libc::killpg(p.pid, libc::SIGKILL) };
        }
        let reaped = wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
            !matches!(child.try_wait(), Ok(None))
        });
        if !reaped {
            eprintln!(
                "lab: {} (pid {}) did not exit after SIGKILL",
                p.description, p.pid
            );
        }
        drop(child);
        if std::thread::panicking() {
            p.dump_logs();
        }
    }
}

impl ProcInner {
    fn dump_logs(&self) {
        for (what, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = read_lossy(path);
            if !text.trim().is_empty() {
                eprintln!(
                    "----- {what} of `{}` (netns {}) -----\n{}\n----- end of {what} -----",
                    self.description,
                    self.netns,
                    tail(text.trim_end(), LOG_TAIL_ON_PANIC)
                );
            }
        }
    }
}

/// The identity (device, inode) of a network namespace file.
fn ns_identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Pids of the processes whose network namespace is one of `ids`.
/// Zombies and our own process are never listed.
fn pids_in(ids: &[(u64, u64)]) -> Vec<libc::pid_t> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            ns_identity(Path::new(&format!("/proc/{pid}/ns/net")))
                .is_some_and(|id| ids.contains(&id))
        })
        .filter_map(|pid| libc::pid_t::try_from(pid).ok())
        .collect()
}

/// Sends `signal` to `pid` only if it still lives in one of the namespaces
/// `ids`; a pidfd makes this immune to pid reuse.
fn signal_if_in(pid: libc::pid_t, signal: libc::c_int, ids: &[(u64, u64)]) {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(raw) = i32::try_from(raw) else { return };
    if raw < 0 {
        return;
    }
    // SAFETY: `raw` is a fresh fd that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Checked after opening the pidfd: if the pid was reused, this looks at
    // the process the pidfd refers to.
    if !ns_identity(Path::new(&format!("/proc/{pid}/ns/net"))).is_some_and(|id| ids.contains(&id)) {
        return;
    }
    // SAFETY: valid pidfd, null siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Kills every process living in the namespaces `netns_files` (bind mounts
/// under /run/netns): SIGTERM, up to `grace` to exit, then SIGKILL.
/// Returns the pids still there afterwards (normally none).
pub(crate) fn kill_netns_processes(netns_files: &[PathBuf], grace: Duration) -> Vec<libc::pid_t> {
    let ids: Vec<(u64, u64)> = netns_files.iter().filter_map(|p| ns_identity(p)).collect();
    if ids.is_empty() {
        return Vec::new();
    }
    if !grace.is_zero() {
        let pids = pids_in(&ids);
        if pids.is_empty() {
            return pids;
        }
        for pid in pids {
            signal_if_in(pid, libc::SIGTERM, &ids);
        }
        wait_until(grace, Duration::from_millis(20), || {
            pids_in(&ids).is_empty()
        });
    }
    for pid in pids_in(&ids) {
        signal_if_in(pid, libc::SIGKILL, &ids);
    }
    let mut left = Vec::new();
    wait_until(Duration::from_secs(2), Duration::from_millis(10), || {
        left = pids_in(&ids);
        left.is_empty()
    });
    left
}

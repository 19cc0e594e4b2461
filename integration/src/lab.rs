//! Lab, namespaces and links.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::cmd::{self, command_line, run_checked};
use crate::process::{self, Proc, ProcInner, TERM_GRACE, lock};
use crate::{DEFAULT_COMMAND_TIMEOUT, require_root};

/// Where `ip netns` keeps its namespace files.
const NETNS_DIR: &str = "/run/netns";
/// Every namespace a lab makes is named `gw-...`; only such names are ever
/// considered stale.
const PREFIX: &str = "gw";

/// Temporary directories are `gw-lab-<tag>-<pid>-<random>`.
const TEMP_PREFIX: &str = "gw-lab-";

/// Process-wide lab counter: part of every name, so labs of one process differ.
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
/// Serialises `ip netns add/del` within this process (the first `add` sets up
/// the /run/netns mount, which does not like to race with itself).
static NETNS_LOCK: Mutex<()> = Mutex::new(());
/// The first `Lab::new` of the process runs the cleanup that includes our pid.
static FIRST_CLEANUP: Once = Once::new();

/// A set of network namespaces, veth pairs, processes and a temporary
/// directory, all removed when the lab is dropped (also while panicking).
///
/// Namespace names are `gw-<tag>-<pid>-<lab counter>-<n>-<label>`; veth names
/// are `g` + pid (base 36, 5 chars) + lab counter (4) + n (3) + `a`/`b`, which
/// fits IFNAMSIZ. Dropping the lab stops the processes it started, kills
/// anything else left inside its namespaces, and deletes the namespaces (the
/// veth pairs go with them).
pub struct Lab {
    tag: String,
    id: u32,
    next: AtomicU32,
    namespaces: Mutex<Vec<String>>,
    veths: Mutex<Vec<(String, String)>>,
    shared: Arc<Shared>,
    temp: TempDir,
}

/// What namespaces and processes need from their lab.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    procs: Mutex<Vec<Weak<ProcInner>>>,
    log_seq: AtomicU32,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("tag", &self.tag)
            .field("id", &self.id)
            .field("namespaces", &*lock(&self.namespaces))
            .field("temp_dir", &self.temp.path())
            .finish_non_exhaustive()
    }
}

impl Lab {
    /// Creates an empty lab. Needs root. Removes namespaces that earlier
    /// runs left behind (see [`cleanup_stale_namespaces`]) first.
    pub fn new(tag: &str) -> Result<Lab> {
        require_root()?;
        // The first lab of this process also removes leftovers carrying our
        // own pid (a killed earlier run whose pid we now reuse). `call_once`
        // holds every other `Lab::new` until that is done, so none of this
        // process's own namespaces can exist yet.
        let mut done = false;
        FIRST_CLEANUP.call_once(|| {
            cleanup_stale(true);
            done = true;
        });
        if !done {
            cleanup_stale(false);
        }
        let tag = sanitize(tag, 16);
        let id = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{tag}-{}-", std::process::id()))
            .tempdir()
            .context("creating the lab's temporary directory")?;
        Ok(Lab {
            tag,
            id,
            next: AtomicU32::new(0),
            namespaces: Mutex::new(Vec::new()),
            veths: Mutex::new(Vec::new()),
            shared: Arc::new(Shared {
                dir: temp.path().to_path_buf(),
                procs: Mutex::new(Vec::new()),
                log_seq: AtomicU32::new(0),
            }),
            temp,
        })
    }

    /// The sanitised tag this lab was created with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The lab's temporary directory (removed on drop). Process logs go here.
    pub fn temp_dir(&self) -> &Path {
        self.temp.path()
    }

    /// Names of the namespaces this lab has created so far.
    pub fn netns_names(&self) -> Vec<String> {
        lock(&self.namespaces).clone()
    }

    /// Names of the veth devices this lab has created so far.
    pub fn veth_names(&self) -> Vec<String> {
        lock(&self.veths)
            .iter()
            .map(|(_, dev)| dev.clone())
            .collect()
    }

    fn next_n(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates a network namespace (`ip netns add`) with `lo` up.
    /// `label` (e.g. "hub") only makes the name readable.
    pub fn netns(&self, label: &str) -> Result<Netns> {
        let label = sanitize(label, 16);
        let name = netns_name(
            &self.tag,
            std::process::id(),
            self.id,
            self.next_n(),
            &label,
        );
        {
            let _guard = lock(&NETNS_LOCK);
            cmd::ip(["netns", "add", name.as_str()])
                .with_context(|| format!("creating network namespace {name}"))?;
        }
        lock(&self.namespaces).push(name.clone());
        let ns = Netns {
            inner: Arc::new(NetnsInner {
                name,
                label,
                shared: Arc::clone(&self.shared),
            }),
        };
        ns.set_link_up("lo")?;
        Ok(ns)
    }

    /// Creates a veth pair with one end in `a` and the other in `b` (created
    /// directly inside them, so nothing is ever left in the host namespace),
    /// and sets both ends up. `a` and `b` may be the same namespace.
    pub fn veth(&self, a: &Netns, b: &Netns) -> Result<(Link, Link)> {
        let n = self.next_n();
        let pid = std::process::id();
        let name_a = veth_name(pid, self.id, n, 'a');
        let name_b = veth_name(pid, self.id, n, 'b');
        cmd::ip([
            "link",
            "add",
            &name_a,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &name_b,
            "netns",
            b.name(),
        ])
        .with_context(|| {
            format!(
                "creating veth pair {name_a} (netns {}) <-> {name_b} (netns {})",
                a.name(),
                b.name()
            )
        })?;
        {
            let mut veths = lock(&self.veths);
            veths.push((a.name().to_owned(), name_a.clone()));
            veths.push((b.name().to_owned(), name_b.clone()));
        }
        let link_a = Link {
            netns: a.clone(),
            name: name_a,
        };
        let link_b = Link {
            netns: b.clone(),
            name: name_b,
        };
        link_a.set_up()?;
        link_b.set_up()?;
        Ok((link_a, link_b))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // 1. Processes we started: SIGTERM to their groups, then SIGKILL.
        let procs: Vec<Arc<ProcInner>> = lock(&self.shared.procs)
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        process::shutdown(&procs, TERM_GRACE);

        // 2. Anything else still inside our namespaces (daemons that left
        //    their process group, children of `exec`, ...).
        let names = lock(&self.namespaces).clone();
        let files: Vec<PathBuf> = names.iter().map(|n| netns_file(n)).collect();
        let left = process::kill_netns_processes(&files, TERM_GRACE);
        if !left.is_empty() {
            eprintln!("lab {}: processes {left:?} survived SIGKILL", self.tag);
        }

        // 3. Links (they would go with their namespace anyway, but a socket
        //    still open somewhere can keep a namespace alive).
        for (ns, dev) in lock(&self.veths).drain(..) {
            let _ = cmd::run_unchecked(
                Command::new("ip").args(["-n", &ns, "link", "del", &dev]),
                Duration::from_secs(10),
            );
        }

        // 4. The namespaces themselves.
        for name in names {
            if let Err(e) = delete_netns(&name) {
                eprintln!("lab {}: {e:#}", self.tag);
            }
        }
        // 5. The temporary directory goes when `temp` is dropped.
    }
}

/// A network namespace of a [`Lab`]. Cheap to clone; the lab deletes the
/// namespace when it is dropped, after which operations on it fail.
#[derive(Clone)]
pub struct Netns {
    inner: Arc<NetnsInner>,
}

struct NetnsInner {
    name: String,
    label: String,
    shared: Arc<Shared>,
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Netns").field(&self.inner.name).finish()
    }
}

impl Netns {
    /// The namespace's name as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The label it was created with (e.g. "hub").
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        netns_file(&self.inner.name)
    }

    fn exec_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name()]).args(args);
        cmd
    }

    /// Runs `ip netns exec NAME ARGS...` to completion (bounded by
    /// [`DEFAULT_COMMAND_TIMEOUT`]). A non-zero exit is an error naming the
    /// command line, the exit status and stderr.
    pub fn exec<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec_timeout(args, DEFAULT_COMMAND_TIMEOUT)
    }

    /// [`exec`](Self::exec) with an explicit time bound.
    pub fn exec_timeout<I, S>(&self, args: I, timeout: Duration) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(&mut self.exec_command(args), timeout)
    }

    /// Like [`exec`](Self::exec), but returns the output whatever the exit
    /// status (for commands expected to fail).
    pub fn exec_unchecked<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        cmd::run_unchecked(&mut self.exec_command(args), DEFAULT_COMMAND_TIMEOUT)
    }

    /// Runs `ip -n NAME ARGS...` (checked).
    pub fn ip<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", self.name()]).args(args);
        run_checked(&mut cmd, DEFAULT_COMMAND_TIMEOUT)
    }

    /// `ip addr add CIDR dev DEV`, e.g. `add_addr("lo", "10.1.2.1/32")`.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(["addr", "add", cidr, "dev", dev])?;
        Ok(())
    }

    /// `ip route add DST via GATEWAY`, e.g. `add_route("10.0.0.0/8", gw)`;
    /// `dst` may be `default`.
    pub fn add_route(&self, dst: &str, via: std::net::Ipv4Addr) -> Result<()> {
        self.ip(["route", "add", dst, "via", &via.to_string()])?;
        Ok(())
    }

    /// `ip route add DST dev DEV` (an on-link route).
    pub fn add_route_dev(&self, dst: &str, dev: &str) -> Result<()> {
        self.ip(["route", "add", dst, "dev", dev])?;
        Ok(())
    }

    /// `ip link set DEV up`.
    pub fn set_link_up(&self, dev: &str) -> Result<()> {
        self.ip(["link", "set", dev, "up"])?;
        Ok(())
    }

    /// Sets a sysctl inside the namespace, e.g.
    /// `sysctl("net.ipv4.ip_forward", "1")` (only per-namespace keys, i.e.
    /// `net.*`, are local to it).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        self.try_run_in(|| fs::write(&path, value))
            .with_context(|| format!("setting {key}={value} in netns {}", self.name()))
    }

    /// Reads a sysctl as seen inside the namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        self.try_run_in(|| fs::read_to_string(&path))
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("reading {key} in netns {}", self.name()))
    }

    /// Starts `cmd` in the background inside the namespace (via
    /// `ip netns exec`, so the process also gets its own mount namespace).
    /// Program, arguments, environment changes and working directory are
    /// taken from `cmd`; stdin is /dev/null and stdout/stderr go to files in
    /// the lab's temporary directory (see [`Proc::stdout_text`]).
    pub fn spawn(&self, cmd: &Command) -> Result<Proc> {
        let shared = &self.inner.shared;
        let seq = shared.log_seq.fetch_add(1, Ordering::Relaxed);
        let program = Path::new(cmd.get_program())
            .file_name()
            .map_or_else(|| "proc".into(), |s| s.to_string_lossy().into_owned());
        let base = format!("{seq:03}-{}-{}", self.label(), sanitize(&program, 24));
        let stdout_path = shared.dir.join(format!("{base}.stdout"));
        let stderr_path = shared.dir.join(format!("{base}.stderr"));
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("creating log file {}", p.display()))
        };
        let stdout = open(&stdout_path)?;
        let stderr = open(&stderr_path)?;

        let mut full = self.exec_command([cmd.get_program()]);
        full.args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => full.env(key, v),
                None => full.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            full.current_dir(dir);
        }
        full.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let description = command_line(&full);
        let child = full
            .spawn()
            .with_context(|| format!("starting `{description}`"))?;
        let proc = Proc::new(
            child,
            description,
            self.name().to_owned(),
            stdout_path,
            stderr_path,
        )?;
        let mut procs = lock(&shared.procs);
        procs.retain(|w| w.strong_count() > 0);
        procs.push(Arc::downgrade(proc.inner()));
        Ok(proc)
    }

    /// Runs `f` on a new thread that has entered this network namespace
    /// (`setns(CLONE_NEWNET)`), and returns its result. Sockets created in
    /// `f` belong to the namespace for their whole life, even after they are
    /// returned to another thread. A panic in `f` is resumed in the caller.
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let path = self.path();
        let file = File::open(&path)
            .with_context(|| format!("opening {} (netns {})", path.display(), self.name()))?;
        let name = self.name();
        thread::scope(|scope| {
            let handle = thread::Builder::new()
                .name(format!("netns {}", self.label()))
                .spawn_scoped(scope, move || -> Result<T> {
                    // SAFETY: setns on a valid fd; it changes only this thread,
                    // which ends when `f` returns.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        let err = std::io::Error::last_os_error();
                        return Err(anyhow!("setns into netns {name}: {err}"));
                    }
                    drop(file);
                    Ok(f())
                })
                .context("spawning a thread for run_in")?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// [`run_in`](Self::run_in) for a fallible `f`: its error becomes the
    /// returned error.
    pub fn try_run_in<F, T, E>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T, E> + Send,
        T: Send,
        E: Into<anyhow::Error> + Send,
    {
        self.run_in(f)?
            .map_err(Into::into)
            .with_context(|| format!("in netns {}", self.name()))
    }
}

/// One end of a veth pair inside a namespace.
#[derive(Clone, Debug)]
pub struct Link {
    /// The namespace the device lives in.
    pub netns: Netns,
    /// The device name (unique, fits IFNAMSIZ).
    pub name: String,
}

impl Link {
    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the device lives in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// `ip addr add CIDR dev NAME`, e.g. `add_addr("172.25.1.1/24")`.
    pub fn add_addr(&self, cidr: &str) -> Result<()> {
        self.netns.add_addr(&self.name, cidr)
    }

    /// `ip link set NAME up`.
    pub fn set_up(&self) -> Result<()> {
        self.netns.set_link_up(&self.name)
    }

    /// `ip link set NAME down`.
    pub fn set_down(&self) -> Result<()> {
        self.netns.ip(["link", "set", &self.name, "down"])?;
        Ok(())
    }

    /// `ip link set NAME mtu MTU`.
    pub fn set_mtu(&self, mtu: u32) -> Result<()> {
        self.netns
            .ip(["link", "set", &self.name, "mtu", &mtu.to_string()])?;
        Ok(())
    }

    fn show(&self) -> Result<String> {
        let out = self.netns.ip(["-o", "link", "show", "dev", &self.name])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The interface index inside its namespace (e.g. for attaching XDP).
    pub fn ifindex(&self) -> Result<u32> {
        let text = self.show()?;
        parse_ifindex(&text).ok_or_else(|| {
            anyhow!(
                "no ifindex for {} in netns {} in: {text}",
                self.name,
                self.netns.name()
            )
        })
    }

    /// The device's MAC address.
    pub fn mac(&self) -> Result<[u8; 6]> {
        let text = self.show()?;
        parse_mac(&text).ok_or_else(|| {
            anyhow!(
                "no MAC address for {} in netns {} in: {text}",
                self.name,
                self.netns.name()
            )
        })
    }
}

fn parse_ifindex(ip_o_link: &str) -> Option<u32> {
    ip_o_link.split(':').next()?.trim().parse().ok()
}

fn parse_mac(ip_o_link: &str) -> Option<[u8; 6]> {
    let mut words = ip_o_link.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    let mut mac = [0u8; 6];
    let mut parts = words.next()?.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn netns_file(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Lowercase ASCII letters, digits and `_` only (no `-`, which separates the
/// fields of a namespace name), at most `max` characters, never empty.
fn sanitize(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    if out.is_empty() { "x".to_owned() } else { out }
}

fn netns_name(tag: &str, pid: u32, lab: u32, n: u32, label: &str) -> String {
    format!("{PREFIX}-{tag}-{pid}-{lab}-{n}-{label}")
}

/// The pid in a name made by [`netns_name`], or `None` for any other name.
fn parse_netns_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?.strip_prefix('-')?;
    let fields: Vec<&str> = rest.split('-').collect();
    let [tag, pid, lab, n, label] = fields.as_slice() else {
        return None;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    if !plain(tag) || !plain(label) {
        return None;
    }
    lab.parse::<u32>().ok()?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

fn base36(mut value: u32, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `g` + pid (5 base-36 digits: pid_max is at most 4194304 < 36^5) + lab
/// counter (4, wraps after 1679616 labs) + n (3) + end: 14 bytes.
fn veth_name(pid: u32, lab: u32, n: u32, end: char) -> String {
    format!(
        "g{}{}{}{end}",
        base36(pid % 36u32.pow(5), 5),
        base36(lab % 36u32.pow(4), 4),
        base36(n % 36u32.pow(3), 3)
    )
}

fn delete_netns(name: &str) -> Result<()> {
    let _guard = lock(&NETNS_LOCK);
    let result = cmd::ip(["netns", "del", name]);
    match result {
        Err(_) if !netns_file(name).exists() => Ok(()),
        other => other
            .map(drop)
            .with_context(|| format!("deleting network namespace {name}")),
    }
}

/// Removes namespaces left by lab runs that no longer exist: names made by a
/// lab (`gw-<tag>-<pid>-<lab>-<n>-<label>`) whose pid is not a live process.
/// Processes still inside them are killed first. Returns the removed names.
/// Called by [`Lab::new`]; `cargo xtask lab` can call it on its own.
pub fn cleanup_stale_namespaces() -> Result<Vec<String>> {
    remove_stale_namespaces(false)
}

/// Best-effort cleanup of namespaces and temporary directories of dead runs.
fn cleanup_stale(include_own_pid: bool) {
    if let Err(e) = remove_stale_namespaces(include_own_pid) {
        eprintln!("lab: could not remove stale namespaces: {e:#}");
    }
    cleanup_stale_temp_dirs(include_own_pid);
}

fn remove_stale_namespaces(include_own_pid: bool) -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("listing {NETNS_DIR}"))?,
    };
    let stale: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| parse_netns_pid(name).is_some_and(|pid| pid_is_gone(pid, include_own_pid)))
        .collect();
    if stale.is_empty() {
        return Ok(stale);
    }
    let files: Vec<PathBuf> = stale.iter().map(|n| netns_file(n)).collect();
    process::kill_netns_processes(&files, Duration::ZERO);
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for name in stale {
        match delete_netns(&name) {
            Ok(()) => removed.push(name),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        bail!("{}", errors.join("\n"))
    }
}

/// Whether no process `pid` exists; our own pid counts as gone only when
/// `include_own_pid` (leftovers of an earlier process that had our pid).
fn pid_is_gone(pid: u32, include_own_pid: bool) -> bool {
    if pid == std::process::id() {
        include_own_pid
    } else {
        !Path::new(&format!("/proc/{pid}")).exists()
    }
}

/// The pid in a lab temporary directory name, or `None` for any other name.
fn parse_temp_dir_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let fields: Vec<&str> = rest.split('-').collect();
    let [tag, pid, random] = fields.as_slice() else {
        return None;
    };
    if tag.is_empty() || random.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Removes lab temporary directories of runs that no longer exist (best effort).
fn cleanup_stale_temp_dirs(include_own_pid: bool) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let stale = name
            .to_str()
            .and_then(parse_temp_dir_pid)
            .is_some_and(|pid| pid_is_gone(pid, include_own_pid));
        if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn netns_names_round_trip_the_pid() {
        let name = netns_name(
            &sanitize("Self-Test", 16),
            4_194_304,
            12,
            3,
            &sanitize("hub", 16),
        );
        assert_eq!(name, "gw-self_test-4194304-12-3-hub");
        assert_eq!(parse_netns_pid(&name), Some(4_194_304));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "ns-hub",
            "gw-hub",
            "gw-a-12-0-0",
            "gw-a-x12-0-0-hub",
            "gw-a-12-0-0-hub-extra",
            "gw--12-0-0-hub",
            "gwx-a-12-0-0-hub",
            "gw-A-12-0-0-hub",
        ] {
            assert_eq!(parse_netns_pid(name), None, "{name}");
        }
    }

    #[test]
    fn veth_names_fit_ifnamsiz_and_differ() {
        let a = veth_name(4_194_304, 1_679_615, 46_655, 'a');
        assert_eq!(a.len(), 14);
        assert!(a.len() < 16); // IFNAMSIZ including the NUL
        assert_eq!(veth_name(1, 0, 0, 'b'), "g000010000000b");
        assert_ne!(veth_name(1, 0, 1, 'a'), veth_name(1, 1, 0, 'a'));
        assert_ne!(veth_name(36, 0, 0, 'a'), veth_name(1, 0, 0, 'a'));
    }

    #[test]
    fn temp_dir_names_carry_the_pid() {
        assert_eq!(parse_temp_dir_pid("gw-lab-udp-1234-AbC9xy"), Some(1234));
        assert_eq!(parse_temp_dir_pid("gw-lab-udp-AbC9xy"), None);
        assert_eq!(parse_temp_dir_pid("gw-lab-a-b-1234-AbC9xy"), None);
        assert_eq!(parse_temp_dir_pid("other-udp-1234-AbC9xy"), None);
    }

    #[test]
    fn sanitize_keeps_names_parseable() {
        assert_eq!(sanitize("a-b c", 16), "a_b_c");
        assert_eq!(sanitize("", 16), "x");
        assert_eq!(sanitize("abcdefgh", 4), "abcd");
    }

    #[test]
    fn parses_ip_link_output() {
        let line = "7: g0001a00000a@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue \
                    state UP mode DEFAULT group default qlen 1000\\    link/ether f2:2d:90:51:52:bc \
                    brd ff:ff:ff:ff:ff:ff link-netns gw-t-1-0-1-b";
        assert_eq!(parse_ifindex(line), Some(7));
        assert_eq!(parse_mac(line), Some([0xf2, 0x2d, 0x90, 0x51, 0x52, 0xbc]));
        assert_eq!(
            parse_mac("1: lo: <LOOPBACK> link/loopback 00:00:00:00:00:00"),
            None
        );
    }
}

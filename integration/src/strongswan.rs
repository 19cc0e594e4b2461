//! Real strongSwan peers (charon with kernel-libipsec) in lab namespaces:
//! strongSwan spokes to test the hub against, and a strongSwan hub as the
//! reference to compare with. Recipes: `shared/interop/README.md`.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use integration::Lab;
//! use integration::strongswan::{Charon, CharonConfig, HubParams, SpokeParams};
//! let lab = Lab::new("swan")?;
//! let (hub_ns, spoke_ns) = (lab.netns("hub")?, lab.netns("spoke")?);
//! let (h, s) = lab.veth(&hub_ns, &spoke_ns)?;
//! h.add_addr("172.25.1.1/24")?;
//! s.add_addr("172.25.1.2/24")?;
//! hub_ns.add_addr("lo", "10.1.2.1/32")?;
//! let hub = Charon::start(&hub_ns, &lab.temp_dir().join("hub"),
//!     &CharonConfig::hub(&HubParams::new("172.25.1.1".parse()?)))?;
//! let spoke_params = SpokeParams::new("172.25.1.2".parse()?, "172.25.1.1".parse()?);
//! let spoke = Charon::start(&spoke_ns, &lab.temp_dir().join("spoke"),
//!     &CharonConfig::spoke(&spoke_params))?;
//! hub.load_all()?;
//! spoke.load_all()?;
//! spoke.initiate("spoke", "hub")?;
//! let sas = spoke.list_sas()?;
//! assert_eq!(sas[0].children[0].state, "INSTALLED");
//! # Ok(()) }
//! ```
//!
//! Each instance lives in a directory of its own: `strongswan.conf`,
//! `swanctl.conf` (plus swanctl's empty credential directories `x509/`, ...),
//! `run/` (bind-mounted over `/run` in charon's mount namespace, so the
//! instances' `/run/charon.pid` files do not collide), the vici socket
//! `charon.vici` and the file log `charon.log`.
//!
//! Things worth knowing about strongSwan 5.9.8 with kernel-libipsec:
//! - it always encapsulates ESP in UDP 4500 (it fakes NAT detection even
//!   with `encap = no`);
//! - it only does tunnel mode: a transport-mode CHILD_SA fails with
//!   `IPsec SA: unsupported mode` in the log;
//! - AES-GCM needs the `openssl` or `gcm` plugin (libstrongswan-standard-plugins);
//! - a spoke whose PSK is wrong logs `received AUTHENTICATION_FAILED notify
//!   error`; the hub logs `tried 1 shared key for 'HUB' - 'SPOKE', but MAC
//!   mismatched`.

mod config;
mod parse;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub use config::{
    CharonConfig, DEFAULT_PLUGINS, HubParams, LAB_PSK, Mode, SpokeParams, StartAction,
    plugin_package, swanctl_hub, swanctl_spoke,
};
pub use parse::{ChildSa, IkeSa, parse_list_sas};

use crate::cmd::{self, command_line, sh_quote, tail};
use crate::{Netns, Proc, wait_until};

/// The charon daemon (Debian's path).
pub const CHARON: &str = "/usr/lib/ipsec/charon";
/// How long [`Charon::start`] waits for the vici socket to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound for one swanctl command (other than `--initiate`).
pub const SWANCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// The `--timeout` [`Charon::initiate`] gives swanctl, in seconds.
pub const INITIATE_TIMEOUT_SECS: u64 = 10;
/// How much of charon.log error messages include.
const LOG_TAIL: usize = 4000;

/// Sub-directories swanctl looks into for credentials next to swanctl.conf;
/// made empty so that `--load-all` does not complain about them.
const CREDENTIAL_DIRS: &[&str] = &[
    "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa",
    "ecdsa", "bliss", "pkcs8", "pkcs12",
];

/// A charon daemon running in a lab namespace. Dropping it stops charon
/// (SIGTERM to its process group; charon uses threads, not processes).
#[derive(Debug)]
pub struct Charon {
    netns: Netns,
    dir: PathBuf,
    proc: Proc,
    plugins: Vec<String>,
    started_in: Duration,
}

impl Charon {
    /// Writes `dir/strongswan.conf` and `dir/swanctl.conf`, starts charon in
    /// `netns` and waits (at most [`START_TIMEOUT`]) until its vici socket
    /// answers. Fails, with the tail of charon.log, if charon exits or does
    /// not answer in time, or if a plugin of the load list could not be
    /// loaded (naming the Debian package that ships it). The configuration
    /// is not loaded: call [`load_all`](Self::load_all).
    pub fn start(netns: &Netns, dir: &Path, conf: &CharonConfig) -> Result<Charon> {
        let started = Instant::now();
        if !Path::new(CHARON).is_file() {
            bail!(
                "{CHARON} not found: install strongswan-charon and the plugin packages \
                 (`cargo xtask setup`)"
            );
        }
        let dir = std::path::absolute(dir)
            .with_context(|| format!("making {} absolute", dir.display()))?;
        fs::create_dir_all(dir.join("run"))
            .with_context(|| format!("creating {}/run", dir.display()))?;
        for sub in CREDENTIAL_DIRS {
            fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}/{sub}", dir.display()))?;
        }
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("strongswan.conf", &conf.strongswan_conf(&dir))?;
        write("swanctl.conf", &conf.swanctl_conf)?;
        // A socket or log left by an earlier instance in the same directory
        // must not be mistaken for this one's.
        for stale in ["charon.vici", "charon.log"] {
            let _ = fs::remove_file(dir.join(stale));
        }

        let script = format!(
            "mount --bind {run} /run && STRONGSWAN_CONF={conf} exec {CHARON}",
            run = sh_quote(&dir.join("run")),
            conf = sh_quote(&dir.join("strongswan.conf")),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        let proc = netns
            .spawn(&cmd)
            .with_context(|| format!("starting charon in netns {}", netns.name()))?;
        let charon = Charon {
            netns: netns.clone(),
            dir,
            proc,
            plugins: conf.plugins.clone(),
            started_in: Duration::ZERO,
        };
        charon.wait_ready(START_TIMEOUT)?;
        charon.check_plugins()?;
        Ok(Charon {
            started_in: started.elapsed(),
            ..charon
        })
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let socket = self.vici_socket();
        let mut last = String::new();
        loop {
            if !self.proc.is_running() {
                bail!(
                    "charon in netns {} exited while starting\n{}",
                    self.netns.name(),
                    self.diagnostics()
                );
            }
            if socket.exists() {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.swanctl_timeout(["--stats"], left.max(Duration::from_secs(1))) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "charon in netns {} did not answer on {} within {timeout:?}{}\n{}",
                    self.netns.name(),
                    socket.display(),
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!("\nlast swanctl --stats: {last}")
                    },
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails if charon could not load a plugin of the configured list (it
    /// only warns, and e.g. a missing `gcm` shows up much later as
    /// NO_PROPOSAL_CHOSEN).
    fn check_plugins(&self) -> Result<()> {
        let log = self.log_text();
        let mut missing: Vec<String> = log
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("plugin '")? + "plugin '".len()..];
                let (name, rest) = rest.split_once('\'')?;
                rest.starts_with(": failed to load")
                    .then(|| name.to_owned())
            })
            .filter(|p| self.plugins.contains(p))
            .collect();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let packages: Vec<String> = missing
            .iter()
            .map(|p| format!("{p} ({})", plugin_package(p)))
            .collect();
        bail!(
            "charon in netns {} could not load plugins: {} (`cargo xtask setup` installs them)\n{}",
            self.netns.name(),
            packages.join(", "),
            self.diagnostics()
        )
    }

    /// stderr and the tail of charon.log, for error messages.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        let stderr = self.proc.stderr_text();
        if !stderr.trim().is_empty() {
            let _ = writeln!(out, "charon stderr: {}", tail(stderr.trim_end(), 2000));
        }
        let _ = write!(
            out,
            "----- {} (tail) -----\n{}\n----- end -----",
            self.log_path().display(),
            tail(self.log_text().trim_end(), LOG_TAIL)
        );
        out
    }

    /// The namespace charon runs in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `dir/charon.vici`.
    pub fn vici_socket(&self) -> PathBuf {
        self.dir.join("charon.vici")
    }

    /// `unix://dir/charon.vici`, for swanctl's `--uri`.
    pub fn vici_uri(&self) -> String {
        format!("unix://{}", self.vici_socket().display())
    }

    /// `dir/charon.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("charon.log")
    }

    /// `dir/swanctl.conf`.
    pub fn swanctl_conf_path(&self) -> PathBuf {
        self.dir.join("swanctl.conf")
    }

    /// The charon process.
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// How long [`start`](Self::start) took, until the vici socket answered.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    fn swanctl_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns.name(), "swanctl"])
            .args(args)
            .arg("--uri")
            .arg(self.vici_uri())
            .env("STRONGSWAN_CONF", self.dir.join("strongswan.conf"));
        cmd
    }

    /// Runs `swanctl ARGS... --uri unix://DIR/charon.vici` inside the
    /// namespace (with `STRONGSWAN_CONF` set), bounded by
    /// [`SWANCTL_TIMEOUT`]. A non-zero exit is an error with swanctl's
    /// output and the tail of charon.log.
    pub fn swanctl<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.swanctl_timeout(args, SWANCTL_TIMEOUT)
    }

    /// [`swanctl`](Self::swanctl) with an explicit bound.
    pub fn swanctl_timeout<I, S>(&self, args: I, timeout: Duration) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.swanctl_command(args);
        let line = command_line(&cmd);
        let output = self.swanctl_unchecked_cmd(&mut cmd, timeout)?;
        if output.status.success() {
            return Ok(output);
        }
        bail!(
            "`{line}` failed ({})\nstdout: {}\nstderr: {}\n{}",
            output.status,
            tail(String::from_utf8_lossy(&output.stdout).trim_end(), 4000),
            tail(swanctl_stderr(&output).trim_end(), 2000),
            self.diagnostics()
        )
    }

    /// Like [`swanctl`](Self::swanctl), but returns the output whatever the
    /// exit status.
    pub fn swanctl_unchecked<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.swanctl_unchecked_cmd(&mut self.swanctl_command(args), SWANCTL_TIMEOUT)
    }

    fn swanctl_unchecked_cmd(&self, cmd: &mut Command, timeout: Duration) -> Result<Output> {
        cmd::run_unchecked(cmd, timeout)
            .with_context(|| format!("swanctl for charon in netns {}", self.netns.name()))
    }

    /// `swanctl --load-all --file DIR/swanctl.conf`: connections, pools and
    /// secrets.
    pub fn load_all(&self) -> Result<()> {
        let file = self.swanctl_conf_path();
        self.swanctl([
            OsStr::new("--load-all"),
            OsStr::new("--file"),
            file.as_os_str(),
        ])?;
        Ok(())
    }

    /// Replaces swanctl.conf with `text` and loads it (`--load-all`):
    /// connections and pools not in it are unloaded.
    pub fn reload(&self, text: &str) -> Result<()> {
        let path = self.swanctl_conf_path();
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        self.load_all()
    }

    /// `swanctl --initiate --ike IKE --child CHILD --timeout 10`: returns once
    /// the CHILD_SA is up. On failure the error holds swanctl's output (the
    /// IKE log of the attempt: e.g. `received AUTHENTICATION_FAILED notify
    /// error`) and the tail of charon.log.
    pub fn initiate(&self, ike: &str, child: &str) -> Result<()> {
        let secs = INITIATE_TIMEOUT_SECS.to_string();
        self.swanctl_timeout(
            [
                "--initiate",
                "--ike",
                ike,
                "--child",
                child,
                "--timeout",
                &secs,
            ],
            Duration::from_secs(INITIATE_TIMEOUT_SECS + 10),
        )
        .with_context(|| format!("initiating {ike}/{child} from netns {}", self.netns.name()))?;
        Ok(())
    }

    /// `swanctl --terminate --ike NAME` (waits until it is gone).
    pub fn terminate_ike(&self, name: &str) -> Result<()> {
        let secs = INITIATE_TIMEOUT_SECS.to_string();
        self.swanctl_timeout(
            ["--terminate", "--ike", name, "--timeout", &secs],
            Duration::from_secs(INITIATE_TIMEOUT_SECS + 10),
        )?;
        Ok(())
    }

    /// The output of `swanctl --list-sas --pretty` (see [`parse_list_sas`]
    /// for why not `--raw`; both parse).
    pub fn list_sas_text(&self) -> Result<String> {
        let out = self.swanctl(["--list-sas", "--pretty"])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// All IKE_SAs with their CHILD_SAs.
    pub fn list_sas(&self) -> Result<Vec<IkeSa>> {
        let text = self.list_sas_text()?;
        parse_list_sas(&text).with_context(|| format!("parsing swanctl --list-sas:\n{text}"))
    }

    /// Waits (bounded) until an IKE_SA of connection `ike` is ESTABLISHED
    /// with every CHILD_SA named in `children` INSTALLED, and returns it
    /// (for a responder, or a spoke with `start_action = start`).
    pub fn wait_established(
        &self,
        ike: &str,
        children: &[&str],
        timeout: Duration,
    ) -> Result<IkeSa> {
        let mut found = None;
        let mut last = Ok(Vec::new());
        wait_until(timeout, Duration::from_millis(100), || {
            last = self.list_sas();
            found = last.as_ref().ok().and_then(|sas| {
                sas.iter()
                    .find(|sa| {
                        sa.name == ike
                            && sa.state == "ESTABLISHED"
                            && children.iter().all(|c| {
                                sa.children
                                    .iter()
                                    .any(|ch| ch.name == *c && ch.state == "INSTALLED")
                            })
                    })
                    .cloned()
            });
            found.is_some()
        });
        match (found, last) {
            (Some(sa), _) => Ok(sa),
            (None, Err(e)) => Err(e.context(format!("waiting for IKE_SA {ike}"))),
            (None, Ok(sas)) => bail!(
                "no ESTABLISHED IKE_SA {ike} with INSTALLED {children:?} in netns {} after {timeout:?}; \
                 SAs: {sas:#?}\n{}",
                self.netns.name(),
                self.diagnostics()
            ),
        }
    }

    /// Everything in charon.log so far (lossy UTF-8; empty if missing).
    pub fn log_text(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether charon.log contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_text().contains(needle)
    }

    /// Polls (bounded) until charon.log contains `needle`; the error holds
    /// the log's tail. Fails early if charon exits.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let mut exited = false;
        let found = wait_until(timeout, Duration::from_millis(20), || {
            if self.log_contains(needle) {
                return true;
            }
            exited = !self.proc.is_running();
            exited
        });
        if found && self.log_contains(needle) {
            return Ok(());
        }
        bail!(
            "charon in netns {} {} before logging {needle:?} (waited up to {timeout:?})\n{}",
            self.netns.name(),
            if exited { "exited" } else { "timed out" },
            self.diagnostics()
        )
    }

    /// Stops charon now (SIGTERM, then SIGKILL after 3 s) and returns its
    /// exit status.
    pub fn stop(self) -> Result<ExitStatus> {
        self.proc.terminate()
    }
}

/// swanctl's stderr without the plugin-loading noise of its own.
fn swanctl_stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !(l.starts_with("plugin '") && l.contains("failed to load")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A single-quoted sh word.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quotes_paths_for_sh() {
        assert_eq!(sh_quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(sh_quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}

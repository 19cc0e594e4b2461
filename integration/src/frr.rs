//! FRR's bgpd as an independent BGP peer in a lab namespace (recipe in
//! ../shared/interop): started without zebra (`-Z`, routes are not put in
//! the kernel), as root (`-S`), with its vty socket and pid file in a
//! directory of its own so that several instances can run at once, and
//! queried with `vtysh --vty_socket DIR -c '... json'`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{Netns, Proc, cmd::sh_quote};

const BGPD: &str = "/usr/lib/frr/bgpd";
const VTYSH: &str = "vtysh";
/// How long bgpd gets to open its vty socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running bgpd.
pub struct Bgpd {
    netns: Netns,
    dir: PathBuf,
    proc: Proc,
}

/// Whether FRR's bgpd and vtysh are installed (`cargo xtask setup` puts
/// them there).
pub fn installed() -> bool {
    Path::new(BGPD).is_file()
        && std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(VTYSH).is_file()))
}

impl Bgpd {
    /// Writes `dir/bgpd.conf` (`config` with `@DIR@` replaced by `dir`),
    /// starts bgpd in `netns`, and waits until vtysh answers.
    pub fn start(netns: &Netns, dir: &Path, config: &str) -> Result<Bgpd> {
        if !installed() {
            bail!("FRR is not installed ({BGPD}, {VTYSH}): run `cargo xtask setup`");
        }
        let dir = std::path::absolute(dir)
            .with_context(|| format!("making {} absolute", dir.display()))?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("bgpd.conf");
        let text = config.replace("@DIR@", &dir.display().to_string());
        fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let _ = fs::remove_file(dir.join("bgpd.vty"));
        // FRR drops privileges to the frr user unless told otherwise; the
        // log file must be writable either way.
        let script = format!(
            "exec {BGPD} -Z -S -f {conf} -i {pid} --vty_socket {dir} -z {zserv}",
            conf = sh_quote(&conf),
            pid = sh_quote(&dir.join("bgpd.pid")),
            dir = sh_quote(&dir),
            zserv = sh_quote(&dir.join("zserv.api")),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        let proc = netns
            .spawn(&cmd)
            .with_context(|| format!("starting bgpd in netns {}", netns.name()))?;
        let bgpd = Bgpd {
            netns: netns.clone(),
            dir,
            proc,
        };
        let started = Instant::now();
        loop {
            if bgpd.vtysh("show version").is_ok() {
                return Ok(bgpd);
            }
            if let Some(status) = bgpd.proc.try_wait()? {
                bail!(
                    "bgpd exited with {status} while starting; its output:\n{}\n{}",
                    bgpd.proc.stdout_text(),
                    bgpd.proc.stderr_text()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "bgpd did not answer on {} within {START_TIMEOUT:?}:\n{}",
                    bgpd.dir.display(),
                    bgpd.proc.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// One vtysh command; its output.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let dir = self.dir.display().to_string();
        let out = self
            .netns
            .exec_unchecked([VTYSH, "--vty_socket", &dir, "-c", command])?;
        if !out.status.success() {
            bail!(
                "vtysh -c {command:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A `... json` command, parsed.
    pub fn json(&self, command: &str) -> Result<Value> {
        let text = self.vtysh(command)?;
        serde_json::from_str(&text)
            .with_context(|| format!("vtysh -c {command:?} is not JSON: {text}"))
    }

    /// `show bgp summary json`: each neighbor's state (`Established`, ...)
    /// and the prefixes received from it.
    pub fn neighbors(&self) -> Result<Vec<(String, String, u64)>> {
        let v = self.json("show bgp ipv4 unicast summary json")?;
        let Some(peers) = v.get("peers").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        Ok(peers
            .iter()
            .map(|(addr, p)| {
                (
                    addr.clone(),
                    p.get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    p.get("pfxRcd").and_then(Value::as_u64).unwrap_or(0),
                )
            })
            .collect())
    }

    /// The IPv4 unicast table: prefix -> next hops of its paths.
    pub fn routes(&self) -> Result<Vec<(String, Vec<String>)>> {
        let v = self.json("show bgp ipv4 unicast json")?;
        let Some(routes) = v.get("routes").and_then(Value::as_object) else {
            return Ok(Vec::new());
        };
        Ok(routes
            .iter()
            .map(|(prefix, paths)| {
                let hops = paths
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|p| {
                        p.get("nexthops")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|h| h.get("ip").and_then(Value::as_str))
                            .map(str::to_owned)
                    })
                    .collect();
                (prefix.clone(), hops)
            })
            .collect())
    }

    /// Waits until the neighbor at `address` is Established.
    pub fn wait_established(&self, address: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let neighbors = self.neighbors()?;
            if neighbors
                .iter()
                .any(|(a, state, _)| a == address && state == "Established")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "bgpd: neighbor {address} not Established within {timeout:?}: {neighbors:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The end of bgpd's log file (`log file @DIR@/bgpd.log` in the config).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("bgpd.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_owned()
    }
}

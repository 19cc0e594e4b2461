//! Running the `gateway` daemon inside a lab namespace, and talking to it
//! through its CLI the way an operator would.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{Netns, Proc, cmd};

/// The `gateway` binary to test: `$GATEWAY_BIN`, else `gateway` in the cargo
/// profile directory this test binary was built into (`cargo test` builds it
/// there because the gateway package has integration tests of its own).
pub fn gateway_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GATEWAY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/gateway
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not inside a cargo target directory")?;
    let candidate = profile_dir.join("gateway");
    if !candidate.is_file() {
        bail!(
            "gateway binary not found at {} (build it with `cargo build -p gateway`, or set GATEWAY_BIN)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// A `gateway run` process in a namespace.
pub struct Gateway {
    bin: PathBuf,
    socket: PathBuf,
    netns: Netns,
    proc: Proc,
}

/// How long the daemon gets to load XDP and open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);

impl Gateway {
    /// Starts `gateway run --config CONFIG` in `netns` and waits until its
    /// control socket (`socket`, as written in the config) answers.
    pub fn start(netns: &Netns, bin: &Path, config: &Path, socket: &Path) -> Result<Self> {
        Self::start_with_env(
            netns,
            bin,
            config,
            socket,
            std::iter::empty::<(&str, &str)>(),
        )
    }

    /// [`Gateway::start`] with extra environment variables for the daemon
    /// (e.g. `GATEWAY_IKE_KEYLOG`), set after `RUST_LOG=info` so that they
    /// may also override it.
    pub fn start_with_env<I, K, V>(
        netns: &Netns,
        bin: &Path,
        config: &Path,
        socket: &Path,
        env: I,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut command = Command::new(bin);
        command
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env);
        let proc = netns.spawn(&command)?;
        let gateway = Gateway {
            bin: bin.to_owned(),
            socket: socket.to_owned(),
            netns: netns.clone(),
            proc,
        };
        let ready = crate::wait_until(START_TIMEOUT, Duration::from_millis(100), || {
            !gateway.proc.is_running()
                || gateway
                    .cli(["show", "version"])
                    .is_ok_and(|o| o.status.success())
        });
        if !gateway.proc.is_running() {
            bail!(
                "gateway exited during start-up; its log:\n{}",
                gateway.proc.stderr_text()
            );
        }
        if !ready {
            bail!(
                "gateway did not answer on {} within {START_TIMEOUT:?}; its log:\n{}",
                socket.display(),
                gateway.proc.stderr_text()
            );
        }
        Ok(gateway)
    }

    /// Runs `gateway --socket SOCKET ARGS...` in the namespace; returns its
    /// output whatever the exit status.
    pub fn cli<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.netns.name()])
            .arg(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args);
        cmd::run_unchecked(&mut command, CLI_TIMEOUT)
    }

    /// Runs a CLI command that must succeed and returns its stdout.
    pub fn cli_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.cli(&args)?;
        if !output.status.success() {
            bail!(
                "`gateway {}` failed ({}): {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `gateway show WHAT... --json`, read as the gateway's own report type
    /// (`gateway_report::...`): a field the daemon no longer sends, or sends
    /// as another type, is an error here rather than a zero.
    pub fn show_report<T: serde::de::DeserializeOwned>(&self, what: &[&str]) -> Result<T> {
        let mut args = vec!["show"];
        args.extend_from_slice(what);
        args.push("--json");
        let text = self.cli_ok(&args)?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "`gateway show {}` printed JSON that is not a {}: {text}",
                what.join(" "),
                std::any::type_name::<T>()
            )
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn process(&self) -> &Proc {
        &self.proc
    }

    /// Sends SIGTERM and waits for the daemon to exit.
    pub fn stop(self) -> Result<ExitStatus> {
        self.proc.signal(libc::SIGTERM)?;
        self.proc
            .wait_timeout(Duration::from_secs(15))
            .with_context(|| {
                format!(
                    "gateway did not exit after SIGTERM; its log:\n{}",
                    self.proc.stderr_text()
                )
            })
    }
}

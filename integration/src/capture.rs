//! Packet captures in lab namespaces (tcpdump) and decoding them with an
//! independent dissector (tshark), to check what our daemons put on the wire.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use integration::{Lab, capture::{Capture, tshark_verbose}};
//! let lab = Lab::new("cap")?;
//! let ns = lab.netns("hub")?;
//! let pcap = lab.temp_dir().join("hub.pcap");
//! let capture = Capture::start(&ns, "lo", "udp port 500", &pcap)?;
//! // ... traffic ...
//! capture.stop()?;
//! let text = tshark_verbose(&pcap, &[])?;
//! # let _ = text; Ok(()) }
//! ```

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{Netns, Proc, cmd};

/// How long tcpdump gets to open the interface, and to flush and exit.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for one tshark run over a test capture.
const TSHARK_TIMEOUT: Duration = Duration::from_mins(1);

/// A `tcpdump -w` running in a namespace. Dropping it without [`Capture::stop`]
/// kills it (the file may then miss its last packets).
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    path: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i INTERFACE --immediate-mode -U -n -w PATH FILTER`
    /// in `netns` and waits until it captures (it has printed `listening
    /// on`). Without `--immediate-mode`, packets wait in the kernel's ring
    /// (TPACKET_V3) and those still there at SIGINT are never written;
    /// `-U` writes each packet as it comes; `-Z root` keeps tcpdump from
    /// dropping to a user that may not write into the lab's directory.
    pub fn start(netns: &Netns, interface: &str, filter: &str, path: &Path) -> Result<Self> {
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-i",
                interface,
                "--immediate-mode",
                "-U",
                "-n",
                "-Z",
                "root",
                "-w",
            ])
            .arg(path)
            .arg(filter);
        let proc = netns.spawn(&command)?;
        proc.wait_for_output("listening on", CAPTURE_TIMEOUT)
            .with_context(|| format!("tcpdump on {interface} in netns {}", netns.name()))?;
        Ok(Capture {
            proc,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops tcpdump with SIGINT (it then flushes the file and prints its
    /// counters), waits for it to exit, and returns the file.
    pub fn stop(self) -> Result<PathBuf> {
        self.proc.signal(libc::SIGINT)?;
        let status = self.proc.wait_timeout(CAPTURE_TIMEOUT)?;
        let log = self.proc.stderr_text();
        if !status.success() {
            bail!("tcpdump exited with {status}: {log}");
        }
        if !log.contains(" captured") {
            bail!("tcpdump did not report its counters on exit: {log}");
        }
        Ok(self.path)
    }
}

/// `tshark -r PCAP -V` with the given options (e.g. `-o`, `-Y`), run outside
/// the lab's namespaces with a fresh, empty configuration directory (so the
/// user's Wireshark profile cannot change the result). Returns stdout; fails
/// if tshark does.
pub fn tshark_verbose(pcap: &Path, options: &[OsString]) -> Result<String> {
    let config = tempfile::tempdir().context("a temporary Wireshark configuration directory")?;
    tshark_verbose_in(pcap, config.path(), options)
}

/// Like [`tshark_verbose`], with Wireshark's personal configuration
/// directory (`WIRESHARK_CONFIG_DIR`, where the `ikev2_decryption_table` and
/// `esp_sa` UAT files are read from) set to `config_dir`.
pub fn tshark_verbose_in(pcap: &Path, config_dir: &Path, options: &[OsString]) -> Result<String> {
    let mut command = Command::new("tshark");
    command
        .env("WIRESHARK_CONFIG_DIR", config_dir)
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .arg("-V")
        .args(options);
    let output = cmd::run_checked(&mut command, TSHARK_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

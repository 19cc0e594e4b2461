//! Running external commands with a time bound and readable errors.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The command line of `cmd` as a shell would show it (arguments quoted when needed).
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` (stdin from /dev/null, stdout and stderr captured) and kills it
/// if it has not finished within `timeout`. A non-zero exit is not an error
/// here; see [`run_checked`].
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = command_line(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;

    // Read both pipes on helper threads so a chatty command cannot block on a
    // full pipe, and so a grandchild holding a pipe open cannot block us past
    // the deadline.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let readers: [(bool, Option<Box<dyn Read + Send>>); 2] = [
        (
            true,
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ),
    ];
    for (is_stdout, reader) in readers {
        let tx = tx.clone();
        if let Some(mut reader) = reader {
            thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = reader.read_to_end(&mut buf);
                let _ = tx.send((is_stdout, buf));
            });
        }
    }
    drop(tx);

    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{line}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{line}` did not finish within {timeout:?}; killed it");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };

    let mut output = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let grace = Duration::from_millis(200);
    while let Ok((is_stdout, buf)) = rx.recv_timeout(
        deadline
            .saturating_duration_since(Instant::now())
            .max(grace),
    ) {
        if is_stdout {
            output.stdout = buf;
        } else {
            output.stderr = buf;
        }
    }
    Ok(output)
}

/// Like [`run_unchecked`], but a non-zero exit is an error that names the
/// command line, the exit status, stderr and (if any) stdout.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = command_line(cmd);
    let output = run_unchecked(cmd, timeout)?;
    check(&line, output)
}

pub(crate) fn check(line: &str, output: Output) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    let mut msg = format!("`{line}` failed ({})", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stderr.trim().is_empty() {
        let _ = write!(msg, "\nstderr: {}", stderr.trim_end());
    }
    if !stdout.trim().is_empty() {
        let _ = write!(msg, "\nstdout: {}", tail(stdout.trim_end(), 4000));
    }
    bail!(msg)
}

/// The last `max` bytes of `s` (on a char boundary), marked when cut.
pub(crate) fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]{}", &s[start..])
}

/// Runs `ip ARGS...` on the host (checked, bounded by the default timeout).
pub(crate) fn ip<I, S>(args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_checked(
        Command::new("ip").args(args),
        crate::DEFAULT_COMMAND_TIMEOUT,
    )
}

/// A path as one `sh` word, single-quoted.
pub(crate) fn sh_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "gw-a-1-0-0-hub", "sh", "-c", "echo 'x y'"]);
        assert_eq!(
            command_line(&cmd),
            r"ip netns exec gw-a-1-0-0-hub sh -c 'echo '\''x y'\'''"
        );
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let err = run_checked(&mut cmd, Duration::from_secs(10)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("`sh -c 'echo oops >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("stderr: oops"), "{msg}");
    }

    #[test]
    fn timeout_kills() {
        let start = Instant::now();
        let err =
            run_unchecked(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(format!("{err}").contains("did not finish"), "{err}");
        // Killed at its bound, not after the 30 s of the sleep: a functional
        // bound well between the two, wide for a loaded machine.
        let took = start.elapsed();
        eprintln!("a 200 ms bound stopped `sleep 30` after {took:?}");
        assert!(took < Duration::from_secs(20), "{took:?}");
    }

    #[test]
    fn tail_cuts_on_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("aéb", 2), "[...]b");
    }
}

//! Running one command in the VM: the script that carries it in, qemu
//! with the two 9p shares, the console and the output read while it runs,
//! the time bound, and the status read back.

use std::{
    env,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::command_line;

use super::{
    VmImage, VmOptions, VmRun, memchr,
    qemu::{KERNEL_CMDLINE, MAX_STATUS, qemu_command, resolve_accel, status_from_exit_code},
};

/// `sh` quoting for one word.
fn sh_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The script the VM runs: environment, working directory, the command.
fn command_script<S: AsRef<str>>(argv: &[S], cwd: &Path, env: &[(String, String)]) -> String {
    let mut script = String::from("# written by integration::vm::run_in_vm\n");
    for (key, value) in env {
        let _ = writeln!(script, "export {key}={}", sh_word(value));
    }
    let _ = writeln!(script, "cd {} || exit 125", sh_word(&cwd.to_string_lossy()));
    let words: Vec<String> = argv.iter().map(|w| sh_word(w.as_ref())).collect();
    let _ = writeln!(script, "exec {}", words.join(" "));
    script
}

/// Host folders the VM does not see: it mounts fresh tmpfs over them (see
/// `init.sh`), so a checkout or binary under one is missing in the VM.
const FRESH_IN_VM: &[&str] = &["/tmp", "/run", "/dev"];

/// The host folder hiding `path` from the VM, if any.
fn hidden_in_vm(path: &Path) -> Option<&'static str> {
    FRESH_IN_VM
        .iter()
        .copied()
        .find(|dir| path.starts_with(dir))
}

fn command_env(options: &VmOptions) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), "/root".into()),
        ("TERM".into(), "dumb".into()),
        ("GATEWAY_IN_VM".into(), "1".into()),
    ];
    if let Some(cargo_bin) = env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")) {
        vars[0].1 = format!("{}:{}", vars[0].1, cargo_bin.display());
    }
    for key in [
        "RUST_BACKTRACE",
        "RUST_LOG",
        "CARGO_TARGET_DIR",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ] {
        if let Ok(value) = env::var(key) {
            vars.push((key.into(), value));
        }
    }
    vars.extend(options.env.iter().cloned());
    vars
}

pub(super) fn boot<S: AsRef<str>>(
    image: &VmImage,
    argv: &[S],
    options: &VmOptions,
) -> Result<VmRun> {
    let accel = resolve_accel(options.accel, image);
    let share = tempfile::Builder::new()
        .prefix("gateway-vm-")
        .tempdir()
        .context("creating the VM's share directory")?;
    // The VM runs as root over a share owned by root; 0755 is enough.
    fs::set_permissions(share.path(), fs::Permissions::from_mode(0o755))?;
    let cwd = match &options.cwd {
        Some(cwd) => cwd.clone(),
        None => env::current_dir().context("the current directory")?,
    };
    if let Some(dir) = hidden_in_vm(&cwd) {
        bail!(
            "{} is under {dir}, which the VM replaces with an empty tmpfs: run the VM tier \
             from a checkout elsewhere (e.g. under /root or /srv)",
            cwd.display()
        );
    }
    fs::write(
        share.path().join("cmd.sh"),
        command_script(argv, &cwd, &command_env(options)),
    )?;

    let mut cmd = qemu_command(
        image,
        accel,
        options.memory_mib,
        options.cpus,
        KERNEL_CMDLINE,
    );
    cmd.args([
        "-fsdev",
        "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
    ]);
    cmd.arg("-fsdev").arg(format!(
        "local,id=vmshare,path={},security_model=none,multidevs=remap",
        share.path().display()
    ));
    cmd.args(["-device", "virtio-9p-pci,fsdev=vmshare,mount_tag=vmshare"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = command_line(&cmd);
    if options.show_console {
        eprintln!("vm: {line}");
    }

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let console = Console::capture(&mut child, options.show_console, started);
    let output_path = share.path().join("output");
    let stream = options.stream_output.then_some(output_path.as_path());
    let status = wait_bounded(&mut child, started + options.timeout, stream)?;
    let total = started.elapsed();
    let (console, boot) = console.finish();
    let output = fs::read(&output_path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let rc_file = fs::read_to_string(share.path().join("rc"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());

    let tail = |text: &str| crate::cmd::tail(text.trim_end(), 3000);
    let Some(status) = status else {
        bail!(
            "the VM ({}) did not finish within {:?}; killed qemu.\nconsole:\n{}\noutput:\n{}",
            accel.name(),
            options.timeout,
            tail(&console),
            tail(&output)
        );
    };
    let from_exit = status.code().and_then(status_from_exit_code);
    let exit_code = match (rc_file, from_exit) {
        (Some(rc), Some(code)) if code == rc.min(MAX_STATUS) => rc,
        (Some(rc), Some(code)) => bail!(
            "the VM reported status {rc} in /vm/rc but {code} through isa-debug-exit\nconsole:\n{}",
            tail(&console)
        ),
        (rc, code) => bail!(
            "the VM gave no verdict (qemu {status}, /vm/rc {rc:?}, debug exit {code:?}): it \
             crashed or could not run the command\n`{line}`\nconsole:\n{}\noutput:\n{}",
            tail(&console),
            tail(&output)
        ),
    };
    Ok(VmRun {
        exit_code,
        output,
        console,
        accel,
        kernel: image.kernel_release.clone(),
        boot,
        total,
    })
}

/// Waits for qemu until `deadline`, then kills it (`None`); copies the
/// command's output file to stdout as it grows when `stream` is given.
fn wait_bounded(
    child: &mut std::process::Child,
    deadline: Instant,
    stream: Option<&Path>,
) -> Result<Option<std::process::ExitStatus>> {
    let mut streamed = 0usize;
    let status = loop {
        if let Some(path) = stream {
            streamed = stream_new_output(path, streamed);
        }
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    if let Some(path) = stream {
        stream_new_output(path, streamed);
    }
    Ok(status)
}

/// The VM's serial console (qemu's stdout and stderr), read on threads so
/// that qemu never blocks on a full pipe, and the time `/init` said it
/// starts the command.
struct Console {
    text: Arc<Mutex<Vec<u8>>>,
    boot_done: Arc<Mutex<Option<Duration>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Console {
    const COMMAND_STARTS: &[u8] = b"vm: running the command";

    fn capture(child: &mut std::process::Child, show: bool, started: Instant) -> Self {
        let console = Self {
            text: Arc::default(),
            boot_done: Arc::default(),
            readers: Vec::new(),
        };
        let pipes: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as _),
            child.stderr.take().map(|p| Box::new(p) as _),
        ];
        let mut readers = Vec::new();
        for mut pipe in pipes.into_iter().flatten() {
            let text = Arc::clone(&console.text);
            let boot_done = Arc::clone(&console.boot_done);
            readers.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if show {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                    }
                    let mut text = lock(&text);
                    let from = text.len().saturating_sub(Self::COMMAND_STARTS.len());
                    text.extend_from_slice(&buf[..n]);
                    if memchr(&text[from..], Self::COMMAND_STARTS).is_some() {
                        lock(&boot_done).get_or_insert_with(|| started.elapsed());
                    }
                }
            }));
        }
        Self { readers, ..console }
    }

    /// Waits for the readers (qemu has exited) and returns the text and the
    /// boot time.
    fn finish(self) -> (String, Option<Duration>) {
        for reader in self.readers {
            let _ = reader.join();
        }
        let text = String::from_utf8_lossy(&lock(&self.text)).into_owned();
        let boot = *lock(&self.boot_done);
        (text, boot)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Copies what the command wrote to `/vm/output` since `from` bytes to
/// stdout; returns the new length.
fn stream_new_output(path: &Path, from: usize) -> usize {
    let Ok(bytes) = fs::read(path) else {
        return from;
    };
    if bytes.len() > from {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&bytes[from..]);
        let _ = stdout.flush();
    }
    bytes.len().max(from)
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_script_quotes() {
        let script = command_script(
            &["sh", "-c", "echo 'hi' $X"],
            Path::new("/work/a b"),
            &[("X".into(), "it's".into())],
        );
        assert!(script.contains(r"export X='it'\''s'"), "{script}");
        assert!(script.contains("cd '/work/a b' || exit 125"), "{script}");
        assert!(
            script.contains(r"exec 'sh' '-c' 'echo '\''hi'\'' $X'"),
            "{script}"
        );
    }

    #[test]
    fn folders_the_vm_replaces_are_refused_up_front() {
        assert_eq!(hidden_in_vm(Path::new("/tmp/clone")), Some("/tmp"));
        assert_eq!(hidden_in_vm(Path::new("/run/x")), Some("/run"));
        assert_eq!(hidden_in_vm(Path::new("/work/clone")), None);
        assert_eq!(hidden_in_vm(Path::new("/tmpfoo")), None);
    }
}

//! Small helpers shared by the subcommands: building commands (with cargo's
//! bin directory on PATH), running them after printing the exact command
//! line, quiet probes, and a step timer.

use std::{
    env,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The workspace root: the directory above `xtask/`.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// The directories of `$PATH`.
fn path_dirs() -> Vec<PathBuf> {
    env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default()
}

/// `$PATH` with cargo's bin directory appended when it is not there yet, so
/// that tools installed by `cargo install` (bpf-linker) are found by the
/// commands we start, including `gateway/build.rs`. `None`: PATH is fine.
fn augmented_path() -> Option<OsString> {
    let bin = cargo_bin_dir()?;
    let mut dirs = path_dirs();
    if !bin.is_dir() || dirs.contains(&bin) {
        return None;
    }
    dirs.push(bin);
    env::join_paths(dirs).ok()
}

/// Whether cargo's bin directory is missing from the user's own `$PATH`.
pub fn cargo_bin_missing_from_path() -> bool {
    cargo_bin_dir().is_some_and(|bin| !path_dirs().contains(&bin))
}

/// Finds an executable the way the commands we start will: on `$PATH`, then
/// in cargo's bin directory.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .chain(cargo_bin_dir())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A command for `program`, run in the workspace root, with cargo's bin
/// directory on PATH.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    if let Some(path) = augmented_path() {
        cmd.env("PATH", path);
    }
    cmd
}

/// Quotes one word for a POSIX shell, only when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command line as one would type it in a shell: the environment
/// variables set for it (PATH aside, which only gains cargo's bin directory),
/// then the program and its arguments.
pub fn command_line(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        let value = value?;
        (key != "PATH").then(|| {
            format!(
                "{}={}",
                key.to_string_lossy(),
                shell_quote(&value.to_string_lossy())
            )
        })
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| shell_quote(&word.to_string_lossy()));
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

/// Prints the command line, runs the command with inherited stdio, and fails
/// with a message naming the command unless it exits successfully.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = command_line(cmd);
    println!("+ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command quietly and returns its output, whatever its exit status;
/// fails only when it cannot be started.
pub fn output(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot start `{}`", command_line(cmd)))
}

/// Runs a probe quietly: its stdout when it started and succeeded.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the gateway binary (`cargo build -p gateway`, with `--release`
/// if `release`) and returns its path in the target directory
/// (`$CARGO_TARGET_DIR` if set).
pub fn build_gateway(release: bool) -> anyhow::Result<PathBuf> {
    build_binary(
        "gateway",
        if release {
            "the gateway (release)"
        } else {
            "the gateway"
        },
        release,
    )
}

/// Builds the spoke simulator (`loadgen`) and returns its path.
pub fn build_loadgen(release: bool) -> anyhow::Result<PathBuf> {
    build_binary("loadgen", "the spoke simulator", release)
}

/// Builds the binary named like its package and returns its path.
fn build_binary(package: &str, what: &str, release: bool) -> anyhow::Result<PathBuf> {
    let step = Step::new("build", what);
    let mut cmd = command("cargo");
    cmd.args(["build", "--package", package, "--bin", package]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    let target = env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let binary = target
        .join(if release { "release" } else { "debug" })
        .join(package);
    anyhow::ensure!(
        binary.is_file(),
        "built {package} but {} is not there",
        binary.display()
    );
    step.say(format_args!("{} ready", binary.display()));
    Ok(binary)
}

/// A timed step of a subcommand; prints `<prefix>: <name>...` lines.
pub struct Step {
    prefix: &'static str,
    name: String,
    started: Instant,
}

impl Step {
    pub fn new(prefix: &'static str, name: impl Into<String>) -> Self {
        Self {
            prefix,
            name: name.into(),
            started: Instant::now(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints `<prefix>: <name>: <message>`.
    pub fn say(&self, message: impl std::fmt::Display) {
        println!("{}: {}: {message}", self.prefix, self.name);
    }
}

/// A duration for humans: `0.4s`, `12.3s`, `3m05s`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = duration.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(400)), "0.4s");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
    }

    #[test]
    fn command_lines_are_shell_ready() {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/x")
            .args(["install", "-y", "two words", "it's"]);
        assert_eq!(
            command_line(&cmd),
            r"DEBIAN_FRONTEND=noninteractive apt-get install -y 'two words' 'it'\''s'"
        );
        let mut cmd = Command::new("dpkg-query");
        cmd.args(["-f=${Status}", ""]);
        assert_eq!(command_line(&cmd), "dpkg-query '-f=${Status}' ''");
    }
}

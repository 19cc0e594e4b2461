//! The `gateway` binary as a user runs it without a daemon. (Having this
//! file also makes `cargo test` build the binary for the netns tests.)
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn version_flag() {
    let out = gateway().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("gateway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_example_configs_pass_config_check() {
    for example in ["hub.toml", "spoke.toml"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/").to_owned() + example;
        let out = gateway().args(["config", "check", &path]).output().unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("OK\n"));
    }
}

#[test]
fn show_without_a_daemon_says_what_to_check() {
    let dir = std::env::temp_dir().join(format!("gw-cli-{}", std::process::id()));
    let socket = dir.join("none.sock");
    let out = gateway()
        .args(["show", "xdp", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no gateway is answering") && stderr.contains("none.sock"),
        "{stderr}"
    );
}

#[test]
fn a_bad_spi_is_refused_before_anything_is_sent() {
    let out = gateway().args(["sa", "add-spi", "0x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an SPI"));
}

//! The daemon's life: start-up errors an operator can act on, one daemon per
//! control socket, and a clean exit (XDP detached) on SIGINT and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Command, time::Duration};

use integration::{
    Lab,
    gateway::{Gateway, gateway_bin},
    skip_unless_root,
};

fn hub_config(uplink: &str, dir: &std::path::Path) -> String {
    format!(
        "[hub]\nrole = \"hub\"\nlocal_address = \"172.25.9.1\"\nuplink = \"{uplink}\"\nstate_dir = \"{}\"\ncontrol_socket = \"{}\"\n",
        dir.join("state").display(),
        dir.join("gw.sock").display()
    )
}

#[test]
fn a_config_with_a_typo_is_refused_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    let text = hub_config("eth0", dir.path()).replace("uplink", "uplnk");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(gateway_bin().unwrap())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hub.toml") && stderr.contains("uplnk") && stderr.contains("hub.toml:4:"),
        "{stderr}"
    );

    let check = Command::new(gateway_bin().unwrap())
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("uplnk"));
}

#[test]
fn a_missing_uplink_is_named_in_the_error() {
    skip_unless_root!();
    let lab = Lab::new("nouplink").unwrap();
    let hub = lab.netns("hub").unwrap();
    let path = lab.temp_dir().join("hub.toml");
    std::fs::write(&path, hub_config("nosuchdev0", lab.temp_dir())).unwrap();
    let output = hub
        .exec_unchecked([
            gateway_bin().unwrap().to_str().unwrap(),
            "run",
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("hub.uplink")
            && stderr.contains("nosuchdev0")
            && stderr.contains("hub.toml"),
        "{stderr}"
    );
}

#[test]
fn sigint_detaches_xdp_and_exits_zero_and_a_second_daemon_is_refused() {
    skip_unless_root!();
    let lab = Lab::new("lifecycle").unwrap();
    let hub = lab.netns("hub").unwrap();
    let peer = lab.netns("peer").unwrap();
    let (uplink, _) = lab.veth(&hub, &peer).unwrap();
    let config = lab.temp_dir().join("hub.toml");
    std::fs::write(&config, hub_config(uplink.name(), lab.temp_dir())).unwrap();
    let socket = lab.temp_dir().join("gw.sock");
    let bin = gateway_bin().unwrap();
    let gateway = Gateway::start(&hub, &bin, &config, &socket).unwrap();

    let version: gateway_report::version::VersionInfo = gateway.show_report(&["version"]).unwrap();
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));

    // A second daemon with the same config must not steal the socket.
    let second = hub
        .exec_unchecked([
            bin.to_str().unwrap(),
            "run",
            "--config",
            config.to_str().unwrap(),
        ])
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{second:?}"
    );
    assert!(
        gateway.cli_ok(["show", "version"]).is_ok(),
        "the first daemon still answers"
    );

    let link = hub
        .ip(["-d", "link", "show", "dev", uplink.name()])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "XDP attached while running"
    );

    gateway.process().signal(libc::SIGINT).unwrap();
    let status = gateway
        .process()
        .wait_timeout(Duration::from_secs(15))
        .unwrap();
    assert!(
        status.success(),
        "exit status after SIGINT: {status}\n{}",
        gateway.process().stderr_text()
    );
    let log = gateway.process().stderr_text();
    assert!(
        log.contains("XDP uplink filter attached") && log.contains("XDP detached"),
        "{log}"
    );
    let link = hub
        .ip(["-d", "link", "show", "dev", uplink.name()])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "XDP left attached after exit"
    );
    assert!(!socket.exists(), "control socket removed on exit");
}

#[test]
fn an_interface_that_already_has_xdp_is_not_taken_over() {
    skip_unless_root!();
    let lab = Lab::new("xdpbusy").unwrap();
    let (a, b) = (lab.netns("a").unwrap(), lab.netns("b").unwrap());
    let (uplink_a, uplink_b) = lab.veth(&a, &b).unwrap();
    let bin = gateway_bin().unwrap();
    // Two gateways with different sockets on one uplink: the second refuses.
    let dir_one = lab.temp_dir().join("one");
    let dir_two = lab.temp_dir().join("two");
    for dir in [&dir_one, &dir_two] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("hub.toml"), hub_config(uplink_a.name(), dir)).unwrap();
    }
    let first = Gateway::start(
        &a,
        &bin,
        &dir_one.join("hub.toml"),
        &dir_one.join("gw.sock"),
    )
    .unwrap();
    let second = a
        .exec_unchecked([
            bin.to_str().unwrap(),
            "run",
            "--config",
            dir_two.join("hub.toml").to_str().unwrap(),
        ])
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("already has an XDP program") && stderr.contains(uplink_a.name()),
        "{stderr}"
    );
    assert!(
        !dir_two.join("gw.sock").exists(),
        "the refused daemon removed its socket"
    );
    assert!(
        first
            .cli_ok(["show", "xdp"])
            .unwrap()
            .contains("native mode")
    );
    drop(uplink_b);
}

/// On a kernel without esp4 or ip_gre, `datapath = "kernel"` is refused at
/// start naming what is missing, and `auto` runs the userspace datapath
/// and logs why.
#[test]
fn the_kernel_datapath_names_the_missing_kernel_features() {
    skip_unless_root!();
    let missing = integration::vm::missing_kernel_datapath_features();
    if missing.is_empty() {
        eprintln!(
            "SKIPPED: this kernel has ip_gre and esp4; the VM tier tests the kernel datapath"
        );
        return;
    }
    let lab = Lab::new("kdp").unwrap();
    let hub = lab.netns("hub").unwrap();
    let peer = lab.netns("peer").unwrap();
    let (uplink, _) = lab.veth(&hub, &peer).unwrap();
    uplink.add_addr("172.25.1.1/24").unwrap();
    let base = integration::flex_lab::hub_config(uplink.name(), lab.temp_dir());
    assert!(base.contains("datapath = \"userspace\""));

    let kernel = lab.temp_dir().join("kernel.toml");
    std::fs::write(
        &kernel,
        base.replace("datapath = \"userspace\"", "datapath = \"kernel\""),
    )
    .unwrap();
    let output = hub
        .exec_unchecked([
            gateway_bin().unwrap().to_str().unwrap(),
            "run",
            "--config",
            kernel.to_str().unwrap(),
        ])
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kernel.toml"), "{stderr}");
    for feature in &missing {
        assert!(stderr.contains(feature), "{feature} not named: {stderr}");
    }

    let auto = lab.temp_dir().join("auto.toml");
    std::fs::write(
        &auto,
        base.replace("datapath = \"userspace\"", "datapath = \"auto\""),
    )
    .unwrap();
    let socket = lab.temp_dir().join("hub.sock");
    let gateway = Gateway::start(&hub, &gateway_bin().unwrap(), &auto, &socket).unwrap();
    gateway
        .process()
        .wait_for_output("datapath: userspace", Duration::from_secs(10))
        .unwrap();
    let log = gateway.process().stderr_text() + &gateway.process().stdout_text();
    let line = log
        .lines()
        .find(|l| l.contains("datapath: userspace"))
        .unwrap()
        .to_owned();
    assert!(line.contains("auto"), "{line}");
    for feature in &missing {
        assert!(line.contains(feature), "{feature} not in {line}");
    }
    gateway.stop().unwrap();
}

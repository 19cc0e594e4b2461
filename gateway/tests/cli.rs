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

/// The IKEv2 hub's own bad configurations are refused by `gateway run`
/// before anything starts, naming the file and the key.
#[test]
fn run_refuses_an_unknown_pool_an_empty_keyring_and_overlapping_pools() {
    let dir = std::env::temp_dir().join(format!("gw-cli-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = format!(
        r#"[hub]
local_address = "172.25.9.1"
uplink = "eth0"
state_dir = "{state}"
control_socket = "{socket}"
[ikev2.profile.Flex]
match_identity_remote = ["fqdn-domain:cisco.com"]
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "K"
pool = "FlexSpokes"
virtual_template = 1
[ikev2.keyring.K.peer.Spokes]
address = "0.0.0.0/0"
pre_shared_key_local = "a"
pre_shared_key_remote = "b"
[pool.FlexSpokes]
first = "10.1.1.100"
last = "10.1.1.254"
[virtual_template.1]
unnumbered = "10.1.1.1"
"#,
        state = dir.join("state").display(),
        socket = dir.join("gw.sock").display()
    );
    let peer_start = base.find("[ikev2.keyring.K.peer.Spokes]").unwrap();
    let pool_start = base.find("[pool.FlexSpokes]").unwrap();
    let cases = [
        (
            "unknown-pool",
            base.replace("pool = \"FlexSpokes\"", "pool = \"FlexSpoke\""),
            "ikev2.profile.Flex.pool: refers to pool \"FlexSpoke\", which is not defined",
        ),
        (
            "empty-keyring",
            format!(
                "{}[ikev2.keyring.K]\n{}",
                &base[..peer_start],
                &base[pool_start..]
            ),
            "ikev2.keyring.K: has no peers",
        ),
        (
            "overlapping-pools",
            format!("{base}[pool.Other]\nfirst = \"10.1.1.200\"\nlast = \"10.1.2.10\"\n"),
            "overlaps pool \"FlexSpokes\"",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = gateway()
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}: started anyway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{name}.toml")) && stderr.contains(expected),
            "{name}: {stderr}"
        );
        assert!(
            !dir.join("state").exists(),
            "{name}: nothing created before the config was accepted"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `show bgp summary` and `show ip bgp` against a stand-in daemon: the CLI
/// decodes what the daemon sends and prints the IOS text, and `--json`
/// passes the body through.
#[test]
fn show_bgp_prints_what_the_daemon_answers() {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use gateway::bgp::show::{NeighborSummary, ShowPath, Summary, TableView};
    use gateway::bgp::show::{render_summary, render_table};
    use gateway::control::{ControlSocket, Handler, Request, Response};

    fn summary() -> Summary {
        Summary {
            router_id: Ipv4Addr::new(172, 25, 1, 1),
            asn: 65001,
            table_version: 3,
            prefixes: 2,
            paths: 2,
            listen_limit: 100,
            listen_ranges: vec![("10.1.1.0/24".into(), "Spokes".into())],
            neighbors: vec![NeighborSummary {
                address: Ipv4Addr::new(10, 1, 1, 100),
                dynamic: true,
                peer_group: Some("Spokes".into()),
                asn: 65001,
                msg_rcvd: 5,
                msg_sent: 6,
                table_version: 3,
                in_q: 0,
                out_q: 0,
                up_down_secs: Some(61),
                state: "Established".into(),
                prefixes_received: Some(1),
            }],
        }
    }
    fn view() -> TableView {
        TableView {
            version: 3,
            router_id: Ipv4Addr::new(172, 25, 1, 1),
            rows: vec![ShowPath {
                prefix: "192.168.101.0/24".parse().unwrap(),
                valid: true,
                best: true,
                suppressed: true,
                internal: true,
                next_hop: Ipv4Addr::new(10, 1, 1, 100),
                metric: Some(0),
                local_pref: Some(100),
                weight: 0,
                path: String::new(),
                origin: 'i',
                source: "10.1.1.100".into(),
                peer: None,
                originator_id: None,
                cluster_list: vec![],
                reason: Some("only".into()),
            }],
        }
    }
    struct Fake;
    impl Handler for Fake {
        fn handle(&self, request: Request) -> Response {
            match request {
                Request::ShowBgpSummary => Response::ok(&summary()),
                Request::ShowBgp => Response::ok(&view()),
                other => Response::error(format!("unexpected {other:?}")),
            }
        }
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.sock");
    let socket = runtime.block_on(ControlSocket::bind(&path)).unwrap();
    runtime.spawn(async move { socket.serve(Arc::new(Fake)).await });
    let show = |args: &[&str]| {
        let out = gateway()
            .args(args)
            .arg("--socket")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = show(&["show", "bgp", "summary"]);
    assert_eq!(text, render_summary(&summary()));
    assert!(text.contains("\n*10.1.1.100 "), "{text}");
    assert_eq!(show(&["show", "ip", "bgp", "summary"]), text);
    assert_eq!(show(&["show", "bgp"]), render_table(&view()));
    assert_eq!(show(&["show", "ip", "bgp"]), render_table(&view()));
    let json = show(&["show", "bgp", "summary", "--json"]);
    assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), summary());
    let json = show(&["show", "bgp", "--json"]);
    assert_eq!(serde_json::from_str::<TableView>(&json).unwrap(), view());
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;
use std::path::Path;

use super::*;

const HUB: &str = include_str!("../../../examples/hub.toml");
const SPOKE: &str = include_str!("../../../examples/spoke.toml");
const MINIMAL: &str = "[hub]\nlocal_address = \"192.0.2.1\"\nuplink = \"eth0\"\n";
const ORIGIN: &str = "test.toml";

/// The hub example with `from` replaced by `to` (`from` must be there).
fn hub_with(from: &str, to: &str) -> String {
    assert!(HUB.contains(from), "the hub example has no {from:?}");
    HUB.replacen(from, to, 1)
}

/// The validation problems of `text`, which must parse as TOML.
fn problems(text: &str) -> Vec<Problem> {
    match parse(text, ORIGIN) {
        Err(ConfigError::Invalid { origin, problems }) => {
            assert_eq!(origin, ORIGIN);
            problems
        }
        Err(e) => panic!("expected validation problems, got: {e}"),
        Ok(_) => panic!("expected validation problems, the config was accepted"),
    }
}

/// Asserts that `text` has exactly one problem, at `key`, saying `fragment`.
#[track_caller]
fn one_problem(text: &str, key: &str, fragment: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    assert_eq!(found[0].key, key, "{found:#?}");
    assert!(
        found[0].message.contains(fragment),
        "{:?} does not contain {fragment:?}",
        found[0].message
    );
}

/// Asserts that some problem of `text` is at `key` and says `fragment`.
#[track_caller]
fn has_problem(text: &str, key: &str, fragment: &str) {
    let found = problems(text);
    assert!(
        found
            .iter()
            .any(|p| p.key == key && p.message.contains(fragment)),
        "no problem at {key} saying {fragment:?} in {found:#?}"
    );
}

struct Syntax {
    line: usize,
    column: usize,
    key: String,
    message: String,
    display: String,
}

fn syntax(text: &str) -> Syntax {
    let Err(e) = parse(text, ORIGIN) else {
        panic!("expected a syntax error, the config was accepted")
    };
    let display = e.to_string();
    match e {
        ConfigError::Syntax {
            origin,
            line,
            column,
            key,
            message,
        } => {
            assert_eq!(origin, ORIGIN);
            Syntax {
                line,
                column,
                key,
                message,
                display,
            }
        }
        e => panic!("expected a syntax error, got: {e}"),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

// --- the examples and defaults -------------------------------------------

#[test]
fn hub_example_parses() {
    let c = parse(HUB, "examples/hub.toml").unwrap();
    assert_eq!(c.hub.role, Role::Hub);
    assert_eq!(c.hub.local_address, Ipv4Addr::new(172, 25, 1, 1));
    assert_eq!(c.hub.uplink, "eth0");
    assert_eq!(c.hub.datapath, Datapath::Auto);

    let p = &c.ikev2.profile["Flex_IKEv2"];
    assert_eq!(
        p.match_identity_remote,
        [IdentityMatch::FqdnDomain("cisco.com".into())]
    );
    assert_eq!(
        p.local_identity,
        Some(Identity::Fqdn("hub.cisco.com".into()))
    );
    assert_eq!(p.authentication_local, AuthMethod::PreShare);
    assert_eq!(p.keyring.as_deref(), Some("Flex_key"));
    assert_eq!(p.pool.as_deref(), Some("FlexSpokes"));
    assert_eq!(p.virtual_template, Some(1));
    assert!(
        p.route_set.is_empty() && !p.route_accept,
        "both commented out"
    );
    let dpd = p.dpd.as_ref().unwrap();
    assert_eq!(
        (dpd.interval, dpd.retry, dpd.mode),
        (30, 5, DpdMode::OnDemand)
    );

    let peer = &c.ikev2.keyring["Flex_key"].peer["Spokes"];
    assert_eq!(peer.address, Some("0.0.0.0/0".parse().unwrap()));
    assert_eq!(
        peer.pre_shared_key_local.as_ref().unwrap().expose(),
        "cisco"
    );

    let pool = &c.pool["FlexSpokes"];
    assert_eq!(pool.first, Ipv4Addr::new(10, 1, 1, 100));
    assert_eq!(pool.last, Ipv4Addr::new(10, 1, 1, 254));

    let vt = &c.virtual_template[&1];
    assert_eq!(
        vt.unnumbered,
        Unnumbered::Address(Ipv4Addr::new(10, 1, 1, 1))
    );
    assert_eq!((vt.mtu, vt.tcp_adjust_mss), (1400, Some(1360)));
    assert_eq!(vt.nhrp_network_id, Some(2));
    assert!(vt.nhrp_redirect && !vt.nhrp_shortcut);

    let bgp = c.bgp.as_ref().unwrap();
    assert_eq!(bgp.asn, 65001);
    assert_eq!(bgp.networks, ["192.168.0.0/16".parse().unwrap()]);
    assert!(bgp.aggregates[0].summary_only);
    assert_eq!(bgp.listen_limit, 5000);
    assert_eq!(bgp.listen_range[0].prefix.to_string(), "10.1.1.0/24");
    assert_eq!(bgp.listen_range[0].peer_group, "Spokes");
    assert_eq!(bgp.peer_group["Spokes"].remote_as, 65001);
    let n = &bgp.neighbor[0];
    assert_eq!(n.address, Ipv4Addr::new(192, 168, 0, 1));
    assert!(n.route_reflector_client && n.unsuppress);
    assert_eq!(n.next_hop, Some(Ipv4Addr::new(192, 168, 0, 2)));

    assert!(c.xdp.enabled);
    assert_eq!(
        (c.xdp.mode, c.xdp.ike_rate, c.xdp.ike_burst),
        (XdpMode::Auto, 20, 40)
    );
}

#[test]
fn spoke_example_parses() {
    let c = parse(SPOKE, "examples/spoke.toml").unwrap();
    assert_eq!(c.hub.role, Role::Spoke);
    let t = &c.tunnel[&1];
    assert_eq!(t.destination, Ipv4Addr::new(172, 25, 1, 1));
    assert_eq!(t.ikev2_profile, "Flex_IKEv2");
    assert!(t.nhrp_shortcut);
    assert_eq!(c.virtual_template[&1].unnumbered, Unnumbered::Tunnel(1));
    let bgp = c.bgp.as_ref().unwrap();
    assert!(bgp.listen_range.is_empty());
    assert_eq!(bgp.neighbor[0].address, Ipv4Addr::new(10, 1, 1, 1));
}

#[test]
fn spoke_and_hub_agree() {
    let hub = parse(HUB, "hub").unwrap();
    let spoke = parse(SPOKE, "spoke").unwrap();
    // The spoke dials the hub's address ...
    assert_eq!(spoke.tunnel[&1].destination, hub.hub.local_address);
    // ... and peers with BGP at the hub's template address, inside the range.
    assert_eq!(
        Unnumbered::Address(spoke.bgp.as_ref().unwrap().neighbor[0].address),
        hub.virtual_template[&1].unnumbered
    );
    let range = hub.bgp.as_ref().unwrap().listen_range[0].prefix;
    let pool = &hub.pool["FlexSpokes"];
    assert!(range.contains(pool.first) && range.contains(pool.last));
}

#[test]
fn load_reads_the_file_and_names_it() {
    let dir = std::env::temp_dir().join(format!("gateway-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("hub.toml");
    std::fs::write(&good, HUB).unwrap();
    assert_eq!(load(&good).unwrap().hub.uplink, "eth0");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, hub_with("pool = \"FlexSpokes\"", "pool = \"X\"")).unwrap();
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: ikev2.profile.Flex_IKEv2.pool: ",
            bad.display()
        )),
        "{e}"
    );

    let missing = dir.join("missing.toml");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minimal_config_gets_the_defaults() {
    let c = parse(MINIMAL, ORIGIN).unwrap();
    assert_eq!(c.hub.role, Role::Hub);
    assert_eq!(c.hub.datapath, Datapath::Auto);
    assert_eq!(c.hub.state_dir, Path::new("/var/lib/gateway"));
    assert_eq!(c.hub.control_socket, Path::new("/run/gateway/gateway.sock"));
    assert!(c.ikev2.profile.is_empty() && c.ikev2.keyring.is_empty());
    assert!(c.pool.is_empty() && c.virtual_template.is_empty() && c.tunnel.is_empty());
    assert!(c.bgp.is_none());
    assert!(c.xdp.enabled);
    assert_eq!(
        (c.xdp.mode, c.xdp.ike_rate, c.xdp.ike_burst),
        (XdpMode::Auto, 20, 40)
    );
    assert!(!c.xdp.spread_esp, "ESP spreading is off by default");
}

#[test]
fn partial_tables_get_defaults() {
    let text = format!(
        "{MINIMAL}[xdp]\nike_rate = 0\n[bgp]\nasn = 65001\n[virtual_template.1]\nunnumbered = \"10.9.9.9\"\n"
    );
    let c = parse(&text, ORIGIN).unwrap();
    assert_eq!(
        (
            c.xdp.enabled,
            c.xdp.ike_rate,
            c.xdp.ike_burst,
            c.xdp.spread_esp
        ),
        (true, 0, 40, false)
    );
    let spread = parse(&format!("{MINIMAL}[xdp]\nspread_esp = true\n"), ORIGIN).unwrap();
    assert!(spread.xdp.spread_esp && spread.xdp.ike_rate == 20);
    let bgp = c.bgp.unwrap();
    assert!(bgp.log_neighbor_changes && bgp.install_routes);
    assert_eq!(bgp.listen_limit, 100);
    assert_eq!(bgp.router_id, None);
    let vt = &c.virtual_template[&1];
    assert_eq!(vt.mtu, 1400);
    assert_eq!(vt.tcp_adjust_mss, None);
    assert!(!vt.nhrp_redirect && !vt.nhrp_shortcut);
}

#[test]
fn secrets_are_redacted() {
    let c = parse(HUB, ORIGIN).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert!(
        json.contains("\"pre_shared_key_local\":\"<redacted>\""),
        "{json}"
    );
    assert!(!json.contains("cisco\""), "{json}");
    let debug = format!("{c:?}");
    assert!(
        debug.contains("<redacted>") && !debug.contains("\"cisco\""),
        "{debug}"
    );
}

#[test]
fn running_config_round_trips_through_toml() {
    for example in [HUB, SPOKE] {
        let c = parse(example, ORIGIN).unwrap();
        let text = toml::to_string(&c).unwrap();
        let again = parse(&text, "running-config").unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::to_value(&again).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn serializes_in_the_config_spelling() {
    let c = parse(SPOKE, ORIGIN).unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["hub"]["role"], "spoke");
    assert_eq!(
        v["ikev2"]["profile"]["Flex_IKEv2"]["authentication_local"],
        "pre-share"
    );
    assert_eq!(
        v["ikev2"]["profile"]["Flex_IKEv2"]["dpd"]["mode"],
        "on-demand"
    );
    assert_eq!(
        v["ikev2"]["profile"]["Flex_IKEv2"]["match_identity_remote"][0],
        "fqdn-domain:cisco.com"
    );
    assert_eq!(
        v["ikev2"]["keyring"]["Flex_key"]["peer"]["Spokes"]["address"],
        "0.0.0.0/0"
    );
    assert_eq!(v["virtual_template"]["1"]["unnumbered"], "Tunnel1");
    assert_eq!(v["bgp"]["networks"][0], "192.168.101.0/24");
}

// --- TOML and schema errors: file, line:column, key path -----------------

#[test]
fn unknown_top_level_key_is_rejected() {
    let text = format!("# comment\nbogus = 1\n{MINIMAL}");
    let e = syntax(&text);
    assert_eq!((e.line, e.column), (2, 1));
    assert_eq!(e.key, "bogus");
    assert!(e.message.contains("unknown key `bogus`"), "{}", e.message);
    assert!(
        e.display
            .starts_with("test.toml:2:1: bogus: unknown key `bogus`"),
        "{}",
        e.display
    );

    // After [hub], a key belongs to [hub]: that is where it is unknown.
    let e = syntax(&format!("{MINIMAL}bogus = 1\n"));
    assert_eq!((e.line, e.key.as_str()), (4, "hub.bogus"));

    let e = syntax(&format!("{MINIMAL}[routing]\nx = 1\n"));
    assert_eq!((e.line, e.key.as_str()), (4, "routing"));
    assert!(e.message.contains("unknown key `routing`"), "{}", e.message);
}

#[test]
fn unknown_nested_key_is_rejected() {
    let text = hub_with("pool = \"FlexSpokes\"", "poool = \"FlexSpokes\"");
    let e = syntax(&text);
    assert_eq!(e.line, line_of(&text, "poool"));
    assert_eq!(e.column, 1);
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2.poool");
    assert!(e.message.contains("unknown key `poool`"), "{}", e.message);
    assert!(
        e.display.starts_with(&format!(
            "test.toml:{}:1: ikev2.profile.Flex_IKEv2.poool: ",
            e.line
        )),
        "{}",
        e.display
    );

    // Inside an inline table.
    let text = hub_with(
        "mode = \"on-demand\" }",
        "mode = \"on-demand\", intervall = 3 }",
    );
    let e = syntax(&text);
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2.dpd.intervall");
    assert_eq!(e.line, line_of(&text, "intervall"));

    // In an array of tables.
    let text = hub_with("next_hop = ", "nexthop = ");
    let e = syntax(&text);
    assert_eq!(e.key, "bgp.neighbor[0].nexthop");
    assert_eq!(e.line, line_of(&text, "nexthop"));

    // Deep: a keyring peer.
    let text = hub_with("pre_shared_key_remote", "pre_shared_key_remot");
    let e = syntax(&text);
    assert_eq!(
        e.key,
        "ikev2.keyring.Flex_key.peer.Spokes.pre_shared_key_remot"
    );
}

#[test]
fn wrong_type_names_the_line() {
    let text = hub_with("mtu = 1400", "mtu = \"1400\"");
    let e = syntax(&text);
    assert_eq!(e.line, line_of(&text, "mtu = \"1400\""));
    assert_eq!(e.column, 7);
    assert_eq!(e.key, "virtual_template.1.mtu");
    assert!(
        e.message == "invalid type: string \"1400\", expected an integer in 0..=65535",
        "{}",
        e.message
    );

    let text = hub_with("asn = 65001", "asn = -1");
    let e = syntax(&text);
    assert_eq!(
        (e.key.as_str(), e.line),
        ("bgp.asn", line_of(&text, "asn = -1"))
    );

    let text = hub_with("nhrp_redirect = true", "nhrp_redirect = \"yes\"");
    assert_eq!(syntax(&text).key, "virtual_template.1.nhrp_redirect");
}

#[test]
fn bad_values_name_the_key_and_say_why() {
    let text = hub_with("prefix = \"10.1.1.0/24\"", "prefix = \"10.1.1.1/24\"");
    let e = syntax(&text);
    assert_eq!(e.key, "bgp.listen_range[0].prefix");
    assert_eq!(e.line, line_of(&text, "10.1.1.1/24"));
    assert!(e.message.contains("host bits set"), "{}", e.message);
    assert!(e.message.contains("\"10.1.1.0/24\""), "{}", e.message);

    let e = syntax(&hub_with(
        "networks = [\"192.168.0.0/16\"]",
        "networks = [\"192.168.0.0 255.255.0.0\"]",
    ));
    assert_eq!(e.key, "bgp.networks[0]");
    assert!(
        e.message.contains("write \"192.168.0.0/16\""),
        "{}",
        e.message
    );

    let e = syntax(&hub_with("datapath = \"auto\"", "datapath = \"dpdk\""));
    assert_eq!(e.key, "hub.datapath");
    assert!(
        e.message.contains(
            "unknown value \"dpdk\", expected one of \"auto\", \"kernel\", \"userspace\""
        ),
        "{}",
        e.message
    );

    let e = syntax(&hub_with(
        "local_address = \"172.25.1.1\"",
        "local_address = \"172.25.1\"",
    ));
    assert_eq!(e.key, "hub.local_address");

    let e = syntax(&hub_with(
        "\"fqdn:hub.cisco.com\"",
        "\"fqdn:hub..cisco.com\"",
    ));
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2.local_identity");
    assert!(e.message.contains("empty label"), "{}", e.message);

    let e = syntax(&hub_with(
        "[\"fqdn-domain:cisco.com\"]",
        "[\"domain:cisco.com\"]",
    ));
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2.match_identity_remote[0]");
    assert!(
        e.message.contains("unknown identity type \"domain\""),
        "{}",
        e.message
    );

    let e = syntax(&hub_with(
        "[\"fqdn-domain:cisco.com\"]",
        "[\"address:0.0.0.0\"]",
    ));
    assert!(e.message.contains("\"0.0.0.0/0\""), "{}", e.message);

    let e = syntax(&hub_with(
        "[\"fqdn-domain:cisco.com\"]",
        "[\"fqdn-domain:.cisco.com\"]",
    ));
    assert!(
        e.message.contains("without the leading dot"),
        "{}",
        e.message
    );

    let e = syntax(&hub_with(
        "address = \"0.0.0.0/0\"",
        "address = \"0.0.0.0\"",
    ));
    assert_eq!(e.key, "ikev2.keyring.Flex_key.peer.Spokes.address");

    let e = syntax(&hub_with("[virtual_template.1]", "[virtual_template.01]"));
    assert_eq!(e.key, "virtual_template.01");
    assert!(
        e.message.contains("not an interface number"),
        "{}",
        e.message
    );

    let e = syntax(&hub_with(
        "unnumbered = \"10.1.1.1\"",
        "unnumbered = \"Loopback100\"",
    ));
    assert_eq!(e.key, "virtual_template.1.unnumbered");
}

#[test]
fn missing_keys_and_tables_are_named() {
    let e = syntax("[xdp]\nenabled = false\n");
    assert!(e.message == "missing table [hub]", "{}", e.message);
    assert!(e.display.starts_with("test.toml:1:1: "), "{}", e.display);

    let e = syntax("[hub]\nuplink = \"eth0\"\n");
    assert_eq!((e.line, e.key.as_str()), (1, "hub"));
    assert!(e.message == "missing key `local_address`", "{}", e.message);

    let text = hub_with("authentication_remote = \"pre-share\"\n", "");
    let e = syntax(&text);
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2");
    assert!(e.message.contains("authentication_remote"), "{}", e.message);
}

#[test]
fn toml_syntax_errors_have_a_position() {
    let e = syntax("[hub\nlocal_address = \"1.2.3.4\"\n");
    assert_eq!((e.line, e.column), (1, 5));
    assert!(e.display.starts_with("test.toml:1:5: "), "{}", e.display);
    assert!(!e.display.contains('\n'), "{}", e.display);

    let e = syntax(&format!("{MINIMAL}uplink = \"eth1\"\n"));
    assert_eq!(e.line, 4);
    assert!(e.message.contains("duplicate key"), "{}", e.message);
}

#[test]
fn line_column_counts_characters() {
    let text = "a = 1\nb = \"ü\" x\n";
    assert_eq!(error::line_column(text, 0), (1, 1));
    assert_eq!(error::line_column(text, 6), (2, 1));
    let x = text.find('x').unwrap();
    assert_eq!(error::line_column(text, x), (2, 9));
    assert_eq!(error::line_column(text, text.len() + 5), (3, 1));
}

// --- validation: one failing case per rule ---------------------------------

#[test]
fn undefined_pool_is_reported_in_one_readable_line() {
    let text = hub_with("pool = \"FlexSpokes\"", "pool = \"FlexSpoke\"");
    let e = parse(&text, "examples/hub.toml").unwrap_err().to_string();
    assert_eq!(
        e,
        "examples/hub.toml: ikev2.profile.Flex_IKEv2.pool: refers to pool \"FlexSpoke\", \
         which is not defined (defined: FlexSpokes)"
    );
}

#[test]
fn profile_references_must_exist() {
    one_problem(
        &hub_with("keyring = \"Flex_key\"", "keyring = \"Flex_keys\""),
        "ikev2.profile.Flex_IKEv2.keyring",
        "refers to keyring \"Flex_keys\", which is not defined (defined: Flex_key)",
    );
    one_problem(
        &hub_with("virtual_template = 1", "virtual_template = 2"),
        "ikev2.profile.Flex_IKEv2.virtual_template",
        "refers to virtual_template \"2\", which is not defined (defined: 1)",
    );
    one_problem(
        &hub_with("virtual_template = 1\n", ""),
        "ikev2.profile.Flex_IKEv2.virtual_template",
        "is missing",
    );
    let no_pools = hub_with(
        "[pool.FlexSpokes]\nfirst = \"10.1.1.100\"\nlast = \"10.1.1.254\"\n",
        "",
    );
    one_problem(
        &no_pools,
        "ikev2.profile.Flex_IKEv2.pool",
        "no pools are defined",
    );
}

#[test]
fn route_accept_is_a_profile_flag() {
    // The example's commented line, switched on.
    let text = hub_with("# route_accept = true", "route_accept = true");
    let c = parse(&text, ORIGIN).unwrap();
    assert!(c.ikev2.profile["Flex_IKEv2"].route_accept);
    let again = parse(&toml::to_string(&c).unwrap(), "running-config").unwrap();
    assert!(again.ikev2.profile["Flex_IKEv2"].route_accept);
    // A boolean, named by its key when it is not one.
    let s = syntax(&hub_with("# route_accept = true", "route_accept = \"any\""));
    assert_eq!(
        s.key, "ikev2.profile.Flex_IKEv2.route_accept",
        "{}",
        s.message
    );
}

#[test]
fn pre_share_needs_a_keyring_and_keys() {
    one_problem(
        &hub_with("keyring = \"Flex_key\"\n", ""),
        "ikev2.profile.Flex_IKEv2.keyring",
        "authentication_local = \"pre-share\" needs a keyring",
    );
    one_problem(
        &hub_with("pre_shared_key_remote = \"cisco\"\n", ""),
        "ikev2.keyring.Flex_key.peer.Spokes.pre_shared_key_remote",
        "is missing; profile \"Flex_IKEv2\" uses this keyring with authentication_remote",
    );
    // Certificates need no keyring.
    let certs = hub_with("keyring = \"Flex_key\"\n", "")
        .replace("\"pre-share\"", "\"rsa-sig\"")
        .replace(
            "[ikev2.keyring.Flex_key.peer.Spokes]",
            "[ikev2.keyring.Unused.peer.Spokes]",
        );
    parse(&certs, ORIGIN).unwrap();
}

#[test]
fn psks_must_be_non_empty_and_unpadded() {
    one_problem(
        &hub_with(
            "pre_shared_key_local = \"cisco\"",
            "pre_shared_key_local = \"\"",
        ),
        "ikev2.keyring.Flex_key.peer.Spokes.pre_shared_key_local",
        "is empty",
    );
    one_problem(
        &hub_with(
            "pre_shared_key_local = \"cisco\"",
            "pre_shared_key_local = \"cisco \"",
        ),
        "ikev2.keyring.Flex_key.peer.Spokes.pre_shared_key_local",
        "trailing blanks",
    );
}

#[test]
fn keyring_peer_has_exactly_one_of_address_and_identity() {
    one_problem(
        &hub_with(
            "address = \"0.0.0.0/0\"",
            "address = \"0.0.0.0/0\"\nidentity = \"fqdn:spoke1.cisco.com\"",
        ),
        "ikev2.keyring.Flex_key.peer.Spokes",
        "has both address and identity",
    );
    one_problem(
        &hub_with("address = \"0.0.0.0/0\"  ", "# "),
        "ikev2.keyring.Flex_key.peer.Spokes",
        "needs address",
    );
    let by_identity = hub_with(
        "address = \"0.0.0.0/0\"",
        "identity = \"fqdn:spoke1.cisco.com\"",
    );
    let c = parse(&by_identity, ORIGIN).unwrap();
    assert_eq!(
        c.ikev2.keyring["Flex_key"].peer["Spokes"].identity,
        Some(Identity::Fqdn("spoke1.cisco.com".into()))
    );
}

#[test]
fn keyring_must_have_peers_and_no_duplicates() {
    let text = format!("{HUB}\n[ikev2.keyring.Empty]\n");
    one_problem(&text, "ikev2.keyring.Empty", "has no peers");

    let text = format!(
        "{HUB}\n[ikev2.keyring.Flex_key.peer.Again]\naddress = \"0.0.0.0/0\"\n\
         pre_shared_key_local = \"k\"\npre_shared_key_remote = \"k\"\n"
    );
    // Peers are checked in name order: "Again" comes first, "Spokes" repeats it.
    one_problem(
        &text,
        "ikev2.keyring.Flex_key.peer.Spokes.address",
        "also the address of peer \"Again\"",
    );
}

#[test]
fn names_are_restricted() {
    let text = hub_with("[pool.FlexSpokes]", "[pool.\"Flex Spokes\"]")
        .replace("pool = \"FlexSpokes\"", "pool = \"Flex Spokes\"");
    one_problem(&text, "pool.\"Flex Spokes\"", "contains ' '");

    let text = format!("{HUB}\n[bgp.peer_group.\"\"]\nremote_as = 65001\n");
    one_problem(&text, "bgp.peer_group.\"\"", "peer group name is empty");
}

#[test]
fn dpd_ranges_are_the_ios_ones() {
    one_problem(
        &hub_with("interval = 30", "interval = 5"),
        "ikev2.profile.Flex_IKEv2.dpd.interval",
        "5 is out of range; expected 10..=3600",
    );
    one_problem(
        &hub_with("interval = 30", "interval = 3601"),
        "ikev2.profile.Flex_IKEv2.dpd.interval",
        "out of range",
    );
    one_problem(
        &hub_with("retry = 5", "retry = 1"),
        "ikev2.profile.Flex_IKEv2.dpd.retry",
        "1 is out of range; expected 2..=60",
    );
    one_problem(
        &hub_with("retry = 5", "retry = 61"),
        "ikev2.profile.Flex_IKEv2.dpd.retry",
        "out of range",
    );
}

#[test]
fn match_identities_are_checked() {
    one_problem(
        &hub_with("[\"fqdn-domain:cisco.com\"]", "[]"),
        "ikev2.profile.Flex_IKEv2.match_identity_remote",
        "matches no peer",
    );
    one_problem(
        &hub_with("[\"fqdn-domain:cisco.com\"]", "[\"any\", \"any\"]"),
        "ikev2.profile.Flex_IKEv2.match_identity_remote",
        "lists \"any\" twice",
    );
    let text = format!(
        "{HUB}\n[ikev2.profile.Other]\nmatch_identity_remote = [\"fqdn-domain:cisco.com\"]\n\
         authentication_local = \"rsa-sig\"\nauthentication_remote = \"rsa-sig\"\n\
         virtual_template = 1\n"
    );
    one_problem(
        &text,
        "ikev2.profile.Other.match_identity_remote",
        "also matched by profile \"Flex_IKEv2\"",
    );
}

#[test]
fn proposals_must_be_non_empty() {
    let with = |line: &str| {
        hub_with(
            "virtual_template = 1\n",
            &format!("virtual_template = 1\n{line}\n"),
        )
    };
    parse(&with("proposals = [\"aes256-sha256-modp2048\"]"), ORIGIN).unwrap();
    one_problem(
        &with("proposals = []"),
        "ikev2.profile.Flex_IKEv2.proposals",
        "is empty",
    );
    one_problem(
        &with("esp_proposals = [\"aes256gcm16\", \"\"]"),
        "ikev2.profile.Flex_IKEv2.esp_proposals[1]",
        "is not a proposal",
    );
    one_problem(
        &with("proposals = [\"aes256--sha256\"]"),
        "ikev2.profile.Flex_IKEv2.proposals[0]",
        "is not a proposal",
    );
}

#[test]
fn pool_first_must_not_be_after_last() {
    one_problem(
        &hub_with("last = \"10.1.1.254\"", "last = \"10.1.1.99\""),
        "pool.FlexSpokes",
        "first (10.1.1.100) is after last (10.1.1.99)",
    );
}

#[test]
fn pools_must_not_overlap() {
    let text = format!("{HUB}\n[pool.More]\nfirst = \"10.1.1.200\"\nlast = \"10.1.2.10\"\n");
    // "More" sorts before "FlexSpokes"? No: 'F' < 'M', so FlexSpokes is checked first.
    one_problem(
        &text,
        "pool.More",
        "overlaps pool \"FlexSpokes\" (10.1.1.100..10.1.1.254)",
    );
    let text = format!("{HUB}\n[pool.More]\nfirst = \"10.1.2.1\"\nlast = \"10.1.2.10\"\n");
    parse(&text, ORIGIN).unwrap();
}

#[test]
fn pools_must_not_hold_the_hubs_own_addresses() {
    one_problem(
        &hub_with("first = \"10.1.1.100\"", "first = \"10.1.1.1\""),
        "pool.FlexSpokes",
        "contains 10.1.1.1, the unnumbered address of virtual_template.1",
    );
    let text = hub_with("first = \"10.1.1.100\"", "first = \"10.1.1.2\"").replace(
        "local_address = \"172.25.1.1\"",
        "local_address = \"10.1.1.50\"",
    );
    one_problem(&text, "pool.FlexSpokes", "the hub's local_address");
    let text = hub_with("last = \"10.1.1.254\"", "last = \"224.0.0.9\"")
        .replace("first = \"10.1.1.100\"", "first = \"224.0.0.1\"");
    has_problem(
        &text,
        "pool.FlexSpokes.first",
        "224.0.0.1 is a multicast address",
    );
    has_problem(
        &text,
        "pool.FlexSpokes.last",
        "224.0.0.9 is a multicast address",
    );
}

#[test]
fn mtu_and_mss_ranges() {
    one_problem(
        &hub_with("mtu = 1400", "mtu = 500"),
        "virtual_template.1.mtu",
        "500 is out of range; expected 576..=9000",
    );
    one_problem(
        &hub_with("mtu = 1400", "mtu = 9001"),
        "virtual_template.1.mtu",
        "out of range",
    );
    one_problem(
        &hub_with("tcp_adjust_mss = 1360", "tcp_adjust_mss = 1361"),
        "virtual_template.1.tcp_adjust_mss",
        "expected 500..=1360",
    );
    one_problem(
        &hub_with("tcp_adjust_mss = 1360", "tcp_adjust_mss = 499"),
        "virtual_template.1.tcp_adjust_mss",
        "out of range",
    );
}

#[test]
fn nhrp_needs_a_network_id() {
    one_problem(
        &hub_with("nhrp_network_id = 2\n", ""),
        "virtual_template.1.nhrp_redirect",
        "needs nhrp_network_id",
    );
    one_problem(
        &hub_with("nhrp_network_id = 2", "nhrp_network_id = 0"),
        "virtual_template.1.nhrp_network_id",
        "out of range",
    );
}

#[test]
fn nhrp_timers_default_as_ios_and_are_checked() {
    let c = parse(HUB, "hub").unwrap();
    let vt = &c.virtual_template[&1];
    assert_eq!((vt.nhrp_holdtime, vt.nhrp_redirect_timeout), (7200, 8));
    let c = parse(
        &hub_with(
            "nhrp_redirect = true",
            "nhrp_redirect = true\nnhrp_holdtime = 60\nnhrp_redirect_timeout = 2",
        ),
        "hub",
    )
    .unwrap();
    let vt = &c.virtual_template[&1];
    assert_eq!((vt.nhrp_holdtime, vt.nhrp_redirect_timeout), (60, 2));
    one_problem(
        &hub_with(
            "nhrp_redirect = true",
            "nhrp_redirect = true\nnhrp_holdtime = 0",
        ),
        "virtual_template.1.nhrp_holdtime",
        "out of range",
    );
    one_problem(
        &hub_with(
            "nhrp_redirect = true",
            "nhrp_redirect = true\nnhrp_redirect_timeout = 301",
        ),
        "virtual_template.1.nhrp_redirect_timeout",
        "out of range",
    );
    one_problem(
        &SPOKE.replace(
            "nhrp_shortcut = true                # IOS",
            "nhrp_holdtime = 0\nnhrp_shortcut = true # IOS",
        ),
        "tunnel.1.nhrp_holdtime",
        "out of range",
    );
}

#[test]
fn tunnels_are_checked() {
    one_problem(
        &SPOKE.replace("ikev2_profile = \"Flex_IKEv2\"", "ikev2_profile = \"Flex\""),
        "tunnel.1.ikev2_profile",
        "refers to ikev2 profile \"Flex\", which is not defined (defined: Flex_IKEv2)",
    );
    one_problem(
        &SPOKE.replace(
            "destination = \"172.25.1.1\"",
            "destination = \"172.16.1.101\"",
        ),
        "tunnel.1.destination",
        "own local_address",
    );
    // Shortcuts are cloned from the profile's template: without one, no shortcuts.
    let text = SPOKE
        .replace(
            "virtual_template = 1                                # spoke-to-spoke",
            "# ",
        )
        .replace("[virtual_template.1]", "[virtual_template.2]");
    one_problem(&text, "tunnel.1.nhrp_shortcut", "which has none");
    one_problem(
        &SPOKE.replace("unnumbered = \"Tunnel1\"", "unnumbered = \"Tunnel2\""),
        "virtual_template.1.unnumbered",
        "refers to Tunnel2, which is not defined",
    );
}

#[test]
fn bgp_asn_is_checked() {
    one_problem(
        &hub_with("asn = 65001", "asn = 0"),
        "bgp.asn",
        "not a valid AS number",
    );
    one_problem(
        &hub_with("asn = 65001", "asn = 23456"),
        "bgp.asn",
        "AS_TRANS",
    );
    // 4-byte AS numbers are fine (and make the session eBGP here, so no RR).
    let text = hub_with("asn = 65001", "asn = 4200000001")
        .replace("remote_as = 65001", "remote_as = 4200000001");
    parse(&text, ORIGIN).unwrap();
}

#[test]
fn bgp_timers_are_checked() {
    let with = |timers: &str| {
        hub_with(
            "[bgp.peer_group.Spokes]\nremote_as = 65001\n",
            &format!("[bgp.peer_group.Spokes]\nremote_as = 65001\ntimers = {timers}\n"),
        )
    };
    parse(&with("{ keepalive = 10, hold = 30 }"), ORIGIN).unwrap();
    parse(&with("{ keepalive = 0, hold = 0 }"), ORIGIN).unwrap();
    one_problem(
        &with("{ keepalive = 1, hold = 2 }"),
        "bgp.peer_group.Spokes.timers.hold",
        "expected 0 (no hold timer) or 3..=65535",
    );
    one_problem(
        &with("{ keepalive = 30, hold = 30 }"),
        "bgp.peer_group.Spokes.timers.keepalive",
        "must be less than hold (30)",
    );
    one_problem(
        &with("{ keepalive = 10, hold = 0 }"),
        "bgp.peer_group.Spokes.timers.keepalive",
        "hold 0",
    );
    let text = hub_with(
        "next_hop = ",
        "timers = { keepalive = 90, hold = 60 }\nnext_hop = ",
    );
    one_problem(&text, "bgp.neighbor[0].timers.keepalive", "less than hold");
    let text = hub_with(
        "listen_limit = 5000",
        "listen_limit = 5000\ntimers = { keepalive = 60, hold = 1 }",
    );
    one_problem(&text, "bgp.timers.hold", "out of range");
}

#[test]
fn listen_limit_range() {
    one_problem(
        &hub_with("listen_limit = 5000", "listen_limit = 0"),
        "bgp.listen_limit",
        "0 is out of range; expected 1..=10000",
    );
    one_problem(
        &hub_with("listen_limit = 5000", "listen_limit = 10001"),
        "bgp.listen_limit",
        "out of range",
    );
}

#[test]
fn listen_range_needs_its_peer_group() {
    one_problem(
        &hub_with("peer_group = \"Spokes\"", "peer_group = \"spokes\""),
        "bgp.listen_range[0].peer_group",
        "refers to peer group \"spokes\", which is not defined (defined: Spokes)",
    );
    let text =
        format!("{HUB}\n[[bgp.listen_range]]\nprefix = \"10.1.1.0/24\"\npeer_group = \"Spokes\"\n");
    one_problem(
        &text,
        "bgp.listen_range[1].prefix",
        "also bgp.listen_range[0]",
    );
}

#[test]
fn spoke_has_no_listen_range() {
    let text = SPOKE.replace(
        "[[bgp.neighbor]]",
        "[[bgp.listen_range]]\nprefix = \"10.1.1.0/24\"\npeer_group = \"Spokes\"\n\n\
         [bgp.peer_group.Spokes]\nremote_as = 65001\n\n[[bgp.neighbor]]",
    );
    one_problem(
        &text,
        "bgp.listen_range",
        "a spoke does not accept dynamic neighbors",
    );
}

#[test]
fn neighbors_are_checked() {
    one_problem(
        &hub_with(
            "remote_as = 65001\nroute_reflector_client",
            "remote_as = 65002\nroute_reflector_client",
        ),
        "bgp.neighbor[0].route_reflector_client",
        "route reflection is for iBGP neighbors",
    );
    one_problem(
        &hub_with("address = \"192.168.0.1\"", "address = \"172.25.1.1\""),
        "bgp.neighbor[0].address",
        "own address",
    );
    one_problem(
        &hub_with("address = \"192.168.0.1\"", "address = \"10.1.1.1\""),
        "bgp.neighbor[0].address",
        "10.1.1.1 is this box's own address",
    );
    let text = format!("{HUB}\n[[bgp.neighbor]]\naddress = \"192.168.0.1\"\nremote_as = 65001\n");
    one_problem(&text, "bgp.neighbor[1].address", "also bgp.neighbor[0]");
    one_problem(
        &hub_with("next_hop = \"192.168.0.2\"", "next_hop = \"0.0.0.0\""),
        "bgp.neighbor[0].next_hop",
        "unspecified",
    );
    one_problem(
        &hub_with(
            "remote_as = 65001\nroute_reflector_client",
            "remote_as = 0\nroute_reflector_client",
        ),
        "bgp.neighbor[0].remote_as",
        "not a valid AS number",
    );
}

#[test]
fn bgp_lists_have_no_duplicates() {
    one_problem(
        &hub_with(
            "networks = [\"192.168.0.0/16\"]",
            "networks = [\"192.168.0.0/16\", \"192.168.0.0/16\"]",
        ),
        "bgp.networks[1]",
        "listed twice",
    );
    one_problem(
        &hub_with("router_id = \"172.25.1.1\"", "router_id = \"0.0.0.0\""),
        "bgp.router_id",
        "unspecified",
    );
}

#[test]
fn xdp_burst_must_be_positive_when_rate_limited() {
    one_problem(
        &hub_with("ike_burst = 40", "ike_burst = 0"),
        "xdp.ike_burst",
        "at least 1 when ike_rate > 0",
    );
    parse(
        &hub_with("ike_burst = 40", "ike_burst = 0").replace("ike_rate = 20", "ike_rate = 0"),
        ORIGIN,
    )
    .unwrap();
    let e = syntax(&hub_with("mode = \"auto\"   ", "mode = \"generic\" "));
    assert_eq!(e.key, "xdp.mode");
}

#[test]
fn uplink_is_an_interface_name() {
    one_problem(
        &hub_with("uplink = \"eth0\"", "uplink = \"\""),
        "hub.uplink",
        "is empty",
    );
    one_problem(
        &hub_with("uplink = \"eth0\"", "uplink = \"enp0s31f6-uplink0\""),
        "hub.uplink",
        "is 17 bytes long; Linux interface names have at most 15",
    );
    parse(
        &hub_with("uplink = \"eth0\"", "uplink = \"enp0s31f6.100ab\""),
        ORIGIN,
    )
    .unwrap();
    one_problem(
        &hub_with("uplink = \"eth0\"", "uplink = \"eth0/1\""),
        "hub.uplink",
        "contains '/'",
    );
}

#[test]
fn hub_paths_and_address_are_checked() {
    one_problem(
        &hub_with(
            "state_dir = \"/var/lib/gateway\"",
            "state_dir = \"var/lib/gateway\"",
        ),
        "hub.state_dir",
        "not an absolute path",
    );
    let long = format!("/run/{}.sock", "x".repeat(110));
    one_problem(
        &hub_with(
            "control_socket = \"/run/gateway/gateway.sock\"",
            &format!("control_socket = \"{long}\""),
        ),
        "hub.control_socket",
        "at most 107",
    );
    has_problem(
        &hub_with(
            "local_address = \"172.25.1.1\"",
            "local_address = \"0.0.0.0\"",
        ),
        "hub.local_address",
        "unspecified",
    );
}

#[test]
fn all_problems_are_reported_one_per_line() {
    let text = hub_with("pool = \"FlexSpokes\"", "pool = \"Nope\"")
        .replace("interval = 30", "interval = 1")
        .replace("mtu = 1400", "mtu = 100")
        .replace("asn = 65001", "asn = 0")
        .replace("peer_group = \"Spokes\"", "peer_group = \"Hubs\"")
        .replace("ike_burst = 40", "ike_burst = 0")
        .replace("uplink = \"eth0\"", "uplink = \"\"");
    let found = problems(&text);
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "hub.uplink",
        "ikev2.profile.Flex_IKEv2.pool",
        "ikev2.profile.Flex_IKEv2.dpd.interval",
        "virtual_template.1.mtu",
        "bgp.asn",
        "bgp.listen_range[0].peer_group",
        "xdp.ike_burst",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(found.len(), 7, "{found:#?}");

    let e = parse(&text, "examples/hub.toml").unwrap_err().to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), found.len());
    assert!(
        lines.iter().all(|l| l.starts_with("examples/hub.toml: ")),
        "{e}"
    );
    assert_eq!(
        lines[0],
        "examples/hub.toml: hub.uplink: is empty; name the interface facing the spokes (e.g. \"eth0\")"
    );
}

// --- value types -------------------------------------------------------------

#[test]
fn identities() {
    for ok in [
        "fqdn:hub.cisco.com",
        "address:172.25.1.1",
        "email:ops@cisco.com",
        "key-id:spoke_1",
    ] {
        assert_eq!(ok.parse::<Identity>().unwrap().to_string(), ok);
    }
    for bad in [
        "hub.cisco.com",
        "fqdn:",
        "fqdn:-hub.cisco.com",
        "fqdn:hub.cisco.com.",
        "fqdn:a b",
        "address:1.2.3",
        "email:cisco.com",
        "key-id:",
        "dn:cn=x",
    ] {
        assert!(bad.parse::<Identity>().is_err(), "{bad} accepted");
    }
    for ok in [
        "any",
        "fqdn-domain:cisco.com",
        "fqdn:spoke1.cisco.com",
        "address:0.0.0.0/0",
        "address:172.16.1.1/32",
        "email-domain:cisco.com",
        "key-id:k",
    ] {
        assert_eq!(ok.parse::<IdentityMatch>().unwrap().to_string(), ok);
    }
    assert_eq!(
        "address:172.16.1.1".parse::<IdentityMatch>().unwrap(),
        IdentityMatch::Address("172.16.1.1/32".parse().unwrap())
    );
    let e = "address:10.0.0.1/8".parse::<IdentityMatch>().unwrap_err();
    assert!(e.contains("\"10.0.0.0/8\""), "{e}");
}

#[test]
fn unnumbered_forms() {
    assert_eq!(
        "10.1.1.1".parse::<Unnumbered>().unwrap(),
        Unnumbered::Address(Ipv4Addr::new(10, 1, 1, 1))
    );
    assert_eq!(
        "Tunnel1".parse::<Unnumbered>().unwrap(),
        Unnumbered::Tunnel(1)
    );
    assert_eq!(
        "tunnel12".parse::<Unnumbered>().unwrap().to_string(),
        "Tunnel12"
    );
    for bad in ["Tunnel", "Tunnel0", "Tunnel01", "Loopback100", ""] {
        assert!(bad.parse::<Unnumbered>().is_err(), "{bad} accepted");
    }
}

#[test]
fn bgp_redistribute_takes_connected_and_static_only() {
    let ok = parse(
        &format!("{MINIMAL}[bgp]\nasn = 65001\nredistribute = [\"connected\", \"static\"]\n"),
        ORIGIN,
    )
    .unwrap();
    assert_eq!(
        ok.bgp.unwrap().redistribute,
        vec![Redistribute::Connected, Redistribute::Static]
    );
    let text = format!("{MINIMAL}[bgp]\nasn = 65001\nredistribute = [\"ospf\"]\n");
    let e = syntax(&text);
    assert_eq!(e.line, line_of(&text, "redistribute"));
    assert!(e.key.starts_with("bgp.redistribute"), "{}", e.key);
    assert!(e.message.contains("ospf"), "{}", e.message);
}

// --- lifetimes and PFS (IOS `lifetime`, `set security-association
// lifetime`, `set pfs`) --------------------------------------------------

/// The policy's `Rekey` of the hub example's profile, its text changed.
fn rekey_of(text: &str) -> crate::ike::policy::Rekey {
    let c = parse(text, ORIGIN).unwrap();
    let policy = crate::ike::policy::Policy::from_config(&c).unwrap();
    assert_eq!(policy.profiles.len(), 1);
    policy.profiles[0].rekey
}

#[test]
fn lifetimes_default_to_the_ios_ones() {
    use crate::ike::policy::Rekey;

    // The examples spell the defaults out; leaving the keys out is the same.
    let c = parse(HUB, ORIGIN).unwrap();
    let p = &c.ikev2.profile["Flex_IKEv2"];
    assert_eq!(
        (
            p.lifetime,
            p.ipsec_lifetime_seconds,
            p.ipsec_lifetime_kilobytes,
            p.pfs
        ),
        (86_400, 3_600, 4_608_000, None)
    );
    let bare = HUB
        .lines()
        .filter(|l| !l.starts_with("lifetime =") && !l.starts_with("ipsec_lifetime_"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!bare.contains("ipsec_lifetime_seconds"));
    let rekey = rekey_of(&bare);
    assert_eq!(rekey, Rekey::default());
    assert_eq!(
        (
            rekey.ike_lifetime.as_secs(),
            rekey.ipsec_lifetime.as_secs(),
            rekey.ipsec_kilobytes,
            rekey.pfs
        ),
        (86_400, 3_600, 4_608_000, None)
    );
    let spoke = parse(SPOKE, ORIGIN).unwrap();
    assert_eq!(spoke.ikev2.profile["Flex_IKEv2"].lifetime, 86_400);
}

#[test]
fn each_lifetime_key_and_pfs_reach_the_policy() {
    use crate::ike::crypto::DhGroup;

    let text = hub_with("lifetime = 86400", "lifetime = 600")
        .replacen(
            "ipsec_lifetime_seconds = 3600",
            "ipsec_lifetime_seconds = 120",
            1,
        )
        .replacen(
            "ipsec_lifetime_kilobytes = 4608000",
            "ipsec_lifetime_kilobytes = 2560",
            1,
        )
        .replacen("# pfs = \"ecp256\"", "pfs = \"ecp384\"", 1);
    let rekey = rekey_of(&text);
    assert_eq!(rekey.ike_lifetime.as_secs(), 600);
    assert_eq!(rekey.ipsec_lifetime.as_secs(), 120);
    assert_eq!(rekey.ipsec_kilobytes, 2560);
    assert_eq!(rekey.pfs, Some(DhGroup::Ecp384));

    // Every group the proposals know, spelled as they spell it.
    for (name, group) in [
        ("modp2048", DhGroup::Modp2048),
        ("ecp256", DhGroup::Ecp256),
        ("ecp384", DhGroup::Ecp384),
        ("ecp521", DhGroup::Ecp521),
        ("curve25519", DhGroup::Curve25519),
        ("x25519", DhGroup::Curve25519),
    ] {
        let text = hub_with("# pfs = \"ecp256\"", &format!("pfs = \"{name}\""));
        assert_eq!(rekey_of(&text).pfs, Some(group), "{name}");
        // `show running-config` writes it back in the canonical spelling.
        let c = parse(&text, ORIGIN).unwrap();
        let again = toml::to_string(&c).unwrap();
        assert!(
            again.contains(&format!("pfs = \"{}\"", group_name(group))),
            "{again}"
        );
    }
    // The upper ends of the ranges are accepted.
    let text = hub_with(
        "ipsec_lifetime_kilobytes = 4608000",
        "ipsec_lifetime_kilobytes = 4294967295",
    )
    .replacen(
        "ipsec_lifetime_seconds = 3600",
        "ipsec_lifetime_seconds = 86400",
        1,
    );
    let rekey = rekey_of(&text);
    assert_eq!(
        (rekey.ipsec_lifetime.as_secs(), rekey.ipsec_kilobytes),
        (86_400, 4_294_967_295)
    );
}

fn group_name(group: crate::ike::crypto::DhGroup) -> &'static str {
    use crate::ike::crypto::DhGroup;
    match group {
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Ecp521 => "ecp521",
        DhGroup::Curve25519 => "curve25519",
    }
}

#[test]
fn lifetimes_out_of_the_ios_ranges_are_refused_naming_the_key() {
    let p = "ikev2.profile.Flex_IKEv2";
    for (from, to, key, message) in [
        (
            "lifetime = 86400",
            "lifetime = 9",
            "lifetime",
            "9 is out of range; expected 10..=86400 seconds",
        ),
        (
            "lifetime = 86400",
            "lifetime = 86401",
            "lifetime",
            "86401 is out of range; expected 10..=86400 seconds",
        ),
        (
            "ipsec_lifetime_seconds = 3600",
            "ipsec_lifetime_seconds = 0",
            "ipsec_lifetime_seconds",
            "0 is out of range; expected 10..=86400 seconds",
        ),
        (
            "ipsec_lifetime_seconds = 3600",
            "ipsec_lifetime_seconds = 100000",
            "ipsec_lifetime_seconds",
            "100000 is out of range; expected 10..=86400 seconds",
        ),
        (
            "ipsec_lifetime_kilobytes = 4608000",
            "ipsec_lifetime_kilobytes = 2559",
            "ipsec_lifetime_kilobytes",
            "2559 is out of range; expected 2560..=4294967295 kilobytes",
        ),
        (
            "ipsec_lifetime_kilobytes = 4608000",
            "ipsec_lifetime_kilobytes = 4294967296",
            "ipsec_lifetime_kilobytes",
            "4294967296 is out of range; expected 2560..=4294967295 kilobytes",
        ),
    ] {
        let text = hub_with(from, to);
        one_problem(&text, &format!("{p}.{key}"), message);
        // The whole line, as the operator sees it, starts with the file.
        let e = parse(&text, ORIGIN).unwrap_err().to_string();
        assert_eq!(e, format!("{ORIGIN}: {p}.{key}: {message}"));
    }

    let text = hub_with("lifetime = 86400", "lifetime = -5");
    let e = syntax(&text);
    assert_eq!(
        (e.key.as_str(), e.line),
        (
            "ikev2.profile.Flex_IKEv2.lifetime",
            line_of(&text, "lifetime = -5")
        )
    );
    assert!(
        e.message.ends_with("expected a non-negative integer"),
        "{}",
        e.message
    );

    let text = hub_with("# pfs = \"ecp256\"", "pfs = \"group2\"");
    let e = syntax(&text);
    assert_eq!(e.key, "ikev2.profile.Flex_IKEv2.pfs");
    assert!(
        e.message
            .contains("unknown Diffie-Hellman group \"group2\"")
            && e.message.contains("\"ecp256\""),
        "{}",
        e.message
    );
}

// --- NAT keepalives (IOS `crypto ikev2 nat keepalive`) -------------------

#[test]
fn nat_keepalive_defaults_to_20_s_takes_0_for_off_and_refuses_the_rest_of_what_ios_does() {
    let line = "nat_keepalive = 20 ";
    assert!(HUB.contains(line), "the example spells the default out");
    let bare = HUB.replacen(line, "# nat_keepalive = 20 ", 1);
    let c = parse(&bare, ORIGIN).unwrap();
    assert_eq!(
        c.ikev2.nat_keepalive_interval(),
        Some(std::time::Duration::from_secs(20))
    );
    assert_eq!(
        parse(MINIMAL, ORIGIN)
            .unwrap()
            .ikev2
            .nat_keepalive_interval(),
        Some(std::time::Duration::from_secs(20)),
        "without an [ikev2] table too"
    );
    let off = parse(&hub_with(line, "nat_keepalive = 0 "), ORIGIN).unwrap();
    assert_eq!(off.ikev2.nat_keepalive_interval(), None);
    for (value, ok) in [(4, false), (5, true), (3600, true), (3601, false)] {
        let text = hub_with(line, &format!("nat_keepalive = {value} "));
        if ok {
            parse(&text, ORIGIN).unwrap();
        } else {
            one_problem(
                &text,
                "ikev2.nat_keepalive",
                &format!(
                    "{value} is out of range; expected 5..=3600 seconds (or 0 for no keepalives)"
                ),
            );
        }
    }
}

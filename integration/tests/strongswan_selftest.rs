//! Self-test of `integration::strongswan`: real strongSwan peers (charon with
//! kernel-libipsec) in lab namespaces. Needs root; without it each test
//! prints "skipped: needs root (netns)" and returns.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use integration::strongswan::{Charon, CharonConfig, HubParams, IkeSa, SpokeParams, StartAction};
use integration::{Lab, Netns, skip_unless_root, wait_until};

const HUB: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 1);
/// The hub's LAN, an address on its `lo` (the hub's `local_ts` is 10.1.2.0/24).
const HUB_LAN_ADDR: &str = "10.1.2.1";
const POOL_FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
const POOL_LAST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 254);

fn in_pool(ip: Ipv4Addr) -> bool {
    (POOL_FIRST..=POOL_LAST).contains(&ip)
}

fn spoke_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 25, 1, 1 + n)
}

fn spoke_params(n: u8) -> SpokeParams {
    let mut p = SpokeParams::new(spoke_addr(n), HUB);
    p.local_id = format!("spoke{n}.example");
    p
}

/// A hub namespace with 172.25.1.1/24 on its uplink and the LAN address on lo.
fn hub_netns(lab: &Lab) -> Netns {
    let hub = lab.netns("hub").unwrap();
    hub.add_addr("lo", &format!("{HUB_LAN_ADDR}/32")).unwrap();
    hub
}

fn start_hub(lab: &Lab, netns: &Netns) -> Charon {
    let hub = Charon::start(
        netns,
        &lab.temp_dir().join("hub"),
        &CharonConfig::hub(&HubParams::new(HUB)),
    )
    .unwrap();
    hub.load_all().unwrap();
    hub
}

fn start_spoke(lab: &Lab, netns: &Netns, params: &SpokeParams) -> Charon {
    let spoke = Charon::start(
        netns,
        &lab.temp_dir().join(netns.label()),
        &CharonConfig::spoke(params),
    )
    .unwrap();
    spoke.load_all().unwrap();
    spoke
}

fn only(sas: &[IkeSa]) -> &IkeSa {
    assert_eq!(sas.len(), 1, "{sas:#?}");
    &sas[0]
}

fn ping(netns: &Netns, count: u32) {
    netns
        .exec_timeout(
            [
                "ping",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "2",
                HUB_LAN_ADDR,
            ],
            Duration::from_secs(15),
        )
        .unwrap();
}

/// One hub, one spoke over a veth: the spoke gets a virtual IP from the
/// hub's pool, both ends show the same CHILD_SA, and pings to the hub's LAN
/// go through kernel-libipsec's ESP-in-UDP.
#[test]
fn spoke_and_hub_establish_and_ping() {
    skip_unless_root!();
    let started = Instant::now();
    let lab = Lab::new("swan1").unwrap();
    let hub_ns = hub_netns(&lab);
    let spoke_ns = lab.netns("spoke1").unwrap();
    let (h, s) = lab.veth(&hub_ns, &spoke_ns).unwrap();
    h.add_addr(&format!("{HUB}/24")).unwrap();
    s.add_addr(&format!("{}/24", spoke_addr(1))).unwrap();

    let hub = start_hub(&lab, &hub_ns);
    let params = spoke_params(1);
    let spoke = start_spoke(&lab, &spoke_ns, &params);
    let t = Instant::now();
    spoke.initiate(&params.name, &params.child).unwrap();
    let initiate = t.elapsed();
    eprintln!(
        "timing: charon start hub {:?}, spoke {:?}; initiate (IKE_SA_INIT + IKE_AUTH + CHILD_SA) {initiate:?}",
        hub.started_in(),
        spoke.started_in()
    );

    let spoke_sas = spoke.list_sas().unwrap();
    let sa = only(&spoke_sas);
    assert_eq!(sa.name, "spoke");
    assert_eq!(sa.state, "ESTABLISHED");
    assert!(sa.initiator);
    assert_eq!(sa.local_id, "spoke1.example");
    assert_eq!(sa.remote_id, "hub.example");
    assert_eq!(sa.remote_host.to_string(), HUB.to_string());
    assert_eq!((sa.local_port, sa.remote_port), (4500, 4500));
    assert_eq!(sa.encr_alg.as_deref(), Some("AES_CBC"));
    assert_eq!(sa.encr_keysize, Some(256));
    assert_eq!(sa.integ_alg.as_deref(), Some("HMAC_SHA2_256_128"));
    assert_eq!(sa.prf_alg.as_deref(), Some("PRF_HMAC_SHA2_256"));
    assert_eq!(sa.dh_group.as_deref(), Some("CURVE_25519"));
    let vip = sa.local_vip_v4().expect("a virtual IP");
    assert!(in_pool(vip), "{vip} not in the pool");
    let child = sa.child("hub").unwrap();
    assert_eq!(child.state, "INSTALLED");
    assert_eq!(child.mode, "TUNNEL");
    assert_eq!(child.protocol, "ESP");
    assert!(child.encap);
    assert_eq!(child.encr_alg.as_deref(), Some("AES_GCM_16"));
    assert_eq!(child.encr_keysize, Some(256));
    assert_eq!(child.integ_alg, None);
    assert_eq!(child.local_ts, [format!("{vip}/32")]);
    assert_eq!(child.remote_ts, ["10.1.2.0/24"]);

    let hub_sas = hub.list_sas().unwrap();
    let hsa = only(&hub_sas);
    assert_eq!(hsa.name, "hub");
    assert_eq!(hsa.state, "ESTABLISHED");
    assert!(!hsa.initiator);
    assert_eq!(hsa.remote_id, "spoke1.example");
    assert_eq!(hsa.remote_vip_v4(), Some(vip));
    assert_eq!(
        (hsa.initiator_spi, hsa.responder_spi),
        (sa.initiator_spi, sa.responder_spi)
    );
    let hchild = hsa.child("spokes").unwrap();
    assert_eq!(hchild.state, "INSTALLED");
    assert!(hchild.encap);
    assert_eq!(
        (hchild.spi_in, hchild.spi_out),
        (child.spi_out, child.spi_in)
    );
    assert_eq!(hchild.local_ts, child.remote_ts);
    assert_eq!(hchild.remote_ts, child.local_ts);
    assert!(hub.log_contains(&format!(
        "assigning virtual IP {vip} to peer 'spoke1.example'"
    )));

    ping(&spoke_ns, 3);
    let after = spoke.list_sas().unwrap();
    let c = only(&after).child("hub").unwrap();
    assert!(c.packets_out >= 3 && c.packets_in >= 3, "{c:#?}");
    let hub_after = hub.list_sas().unwrap();
    let hc = only(&hub_after).child("spokes").unwrap();
    assert!(hc.packets_in >= 3 && hc.packets_out >= 3, "{hc:#?}");

    spoke.terminate_ike("spoke").unwrap();
    assert!(spoke.list_sas().unwrap().is_empty());
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || hub.list_sas().unwrap().is_empty()
    ));
    eprintln!("timing: whole test {:?}", started.elapsed());
}

/// A spoke with the wrong PSK: the hub answers AUTHENTICATION_FAILED and no
/// SA is left on either side.
#[test]
fn wrong_psk_fails_authentication() {
    skip_unless_root!();
    let started = Instant::now();
    let lab = Lab::new("swan2").unwrap();
    let hub_ns = hub_netns(&lab);
    let spoke_ns = lab.netns("spoke1").unwrap();
    let (h, s) = lab.veth(&hub_ns, &spoke_ns).unwrap();
    h.add_addr(&format!("{HUB}/24")).unwrap();
    s.add_addr(&format!("{}/24", spoke_addr(1))).unwrap();

    let hub = start_hub(&lab, &hub_ns);
    let mut params = spoke_params(1);
    params.psk = "not-the-hub-psk".to_owned();
    let spoke = start_spoke(&lab, &spoke_ns, &params);

    let err = spoke
        .initiate(&params.name, &params.child)
        .expect_err("initiate with a wrong PSK must fail");
    let msg = format!("{err:#}");
    assert!(msg.contains("AUTHENTICATION_FAILED"), "{msg}");
    let short = Duration::from_secs(5);
    spoke
        .wait_for_log("received AUTHENTICATION_FAILED notify error", short)
        .unwrap();
    hub.wait_for_log(
        "tried 1 shared key for 'hub.example' - 'spoke1.example', but MAC mismatched",
        short,
    )
    .unwrap();
    assert!(hub.log_contains("generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]"));
    assert!(spoke.list_sas().unwrap().is_empty());
    assert!(wait_until(short, Duration::from_millis(50), || hub
        .list_sas()
        .unwrap()
        .is_empty()));
    eprintln!("timing: whole test {:?}", started.elapsed());
}

/// Two spokes behind a bridge get different addresses from the hub's pool;
/// the second one initiates by itself (`start_action = start`).
#[test]
fn two_spokes_get_different_virtual_ips() {
    skip_unless_root!();
    let started = Instant::now();
    let lab = Lab::new("swan3").unwrap();
    let wan = lab.netns("wan").unwrap();
    wan.ip(["link", "add", "br0", "type", "bridge"]).unwrap();
    wan.set_link_up("br0").unwrap();
    let hub_ns = hub_netns(&lab);
    let (uplink, port) = lab.veth(&hub_ns, &wan).unwrap();
    wan.ip(["link", "set", port.name(), "master", "br0"])
        .unwrap();
    uplink.add_addr(&format!("{HUB}/24")).unwrap();
    let hub = start_hub(&lab, &hub_ns);

    let mut spokes = Vec::new();
    for n in 1..=2u8 {
        let netns = lab.netns(&format!("spoke{n}")).unwrap();
        let (link, port) = lab.veth(&netns, &wan).unwrap();
        wan.ip(["link", "set", port.name(), "master", "br0"])
            .unwrap();
        link.add_addr(&format!("{}/24", spoke_addr(n))).unwrap();
        let mut params = spoke_params(n);
        if n == 2 {
            params.start_action = StartAction::Start;
        }
        let charon = start_spoke(&lab, &netns, &params);
        spokes.push((netns, params, charon));
    }

    let (_, p1, spoke1) = &spokes[0];
    spoke1.initiate(&p1.name, &p1.child).unwrap();
    let (_, p2, spoke2) = &spokes[1];
    let sa2 = spoke2
        .wait_established(&p2.name, &[&p2.child], Duration::from_secs(10))
        .unwrap();
    let sa1 = only(&spoke1.list_sas().unwrap()).clone();

    let vip1 = sa1.local_vip_v4().unwrap();
    let vip2 = sa2.local_vip_v4().unwrap();
    assert_ne!(vip1, vip2);
    assert!(in_pool(vip1) && in_pool(vip2), "{vip1} {vip2}");

    let hub_sas = hub.list_sas().unwrap();
    assert_eq!(hub_sas.len(), 2, "{hub_sas:#?}");
    for (sa, vip, id) in [
        (&sa1, vip1, "spoke1.example"),
        (&sa2, vip2, "spoke2.example"),
    ] {
        let h = hub_sas
            .iter()
            .find(|h| h.remote_id == id)
            .unwrap_or_else(|| panic!("no hub SA for {id}: {hub_sas:#?}"));
        assert_eq!(h.remote_vip_v4(), Some(vip));
        assert_eq!(h.remote_host, sa.local_host);
        let (hc, sc) = (&h.children[0], &sa.children[0]);
        assert_eq!((hc.spi_in, hc.spi_out), (sc.spi_out, sc.spi_in));
    }
    for (netns, _, _) in &spokes {
        ping(netns, 1);
    }
    eprintln!("timing: whole test {:?}", started.elapsed());
}

/// A plugin of the load list that charon cannot load is an error of
/// `Charon::start` (charon itself only warns), and `stop` ends charon with
/// SIGTERM.
#[test]
fn missing_plugin_is_an_error_and_stop_is_clean() {
    skip_unless_root!();
    let lab = Lab::new("swan4").unwrap();
    let ns = lab.netns("peer").unwrap();
    let mut conf = CharonConfig::spoke(&spoke_params(1));
    conf.plugins.push("no-such-plugin".to_owned());
    let err = Charon::start(&ns, &lab.temp_dir().join("bad"), &conf).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("could not load plugins: no-such-plugin"),
        "{msg}"
    );

    let charon = Charon::start(
        &ns,
        &lab.temp_dir().join("good"),
        &CharonConfig::spoke(&spoke_params(1)),
    )
    .unwrap();
    let log = charon.log_path();
    let t = Instant::now();
    let status = charon.stop().unwrap();
    eprintln!("timing: charon stop {:?} ({status})", t.elapsed());
    // Stopping is SIGTERM, then SIGKILL after a grace period: a charon that
    // ignored SIGTERM dies of the SIGKILL.
    assert_ne!(
        status.signal(),
        Some(libc::SIGKILL),
        "charon ignored SIGTERM ({status})"
    );
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("SIGTERM received, shutting down"), "{text}");
}

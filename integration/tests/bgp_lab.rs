//! The BGP overlay of the seed documents, against FRR's bgpd as the
//! independent peer: a hub with `bgp listen range 10.1.1.0/24 peer-group
//! Spokes` and `aggregate-address 192.168.0.0/16 summary-only`; own spokes
//! 1 and 2 running the gateway's BGP client; spoke 3 carrying only the
//! tunnel, with FRR's bgpd as its BGP speaker; and FRR's bgpd on the hub's
//! LAN standing in for the DMVPN hub (a static iBGP neighbor, route
//! reflector client, `unsuppress-map`, `set ip next-hop`). IKE pushes only
//! the tunnel addresses: every LAN route comes from BGP.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use gateway_report::bgp::{NeighborSummary, Summary, TableView};
use integration::{
    flex_lab::{
        self, BgpSpec, DMVPN_LAN, FlexLab, HUB_LAN_GATEWAY, HUB_LAN_HOST, LabSpec, Which,
        spoke_lan_host, spoke_lan_prefix,
    },
    frr::{self, Bgpd},
    gateway::gateway_bin,
};

const SUMMARY: &str = "192.168.0.0/16";
const DMVPN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);

fn skip_without_tools() -> bool {
    let mut missing = flex_lab::missing_tools(false);
    if !frr::installed() {
        missing.push("FRR bgpd/vtysh");
    }
    if missing.is_empty() {
        return false;
    }
    eprintln!("SKIPPED: missing {missing:?}; run `cargo xtask setup`");
    true
}

/// How long after a spoke's IKE session ends its prefix may take to go at
/// the hub and at the DMVPN hub: a functional bound, well under the BGP
/// hold time (15 s) that would remove it anyway, and wide for a loaded
/// machine (each check runs `gateway show` and `vtysh`).
const WITHDRAW_BOUND: Duration = Duration::from_secs(5);

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match probe() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} (last error: {last})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The prefixes of `show bgp --json` on one of our boxes.
fn our_prefixes(lab: &FlexLab, on: Which) -> Result<BTreeSet<String>> {
    let table: TableView = lab.show_report(on, &["bgp"])?;
    Ok(table.rows.into_iter().map(|r| r.prefix).collect())
}

fn frr_prefixes(bgpd: &Bgpd) -> Result<BTreeSet<String>> {
    Ok(bgpd.routes()?.into_iter().map(|(p, _)| p).collect())
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The hub's neighbors (`show bgp summary --json`).
fn hub_neighbors(lab: &FlexLab) -> Result<Vec<NeighborSummary>> {
    let summary: Summary = lab.show_report(Which::Hub, &["bgp", "summary"])?;
    Ok(summary.neighbors)
}

#[test]
fn seed_overlay_with_frr_spoke_and_frr_dmvpn_hub() {
    if skip_without_tools() {
        return;
    }
    let gateway = gateway_bin().unwrap();
    let spec = LabSpec {
        bgp: Some(BgpSpec {
            own_bgp_spokes: 2,
            lan_neighbor: Some(HUB_LAN_HOST),
        }),
        ..LabSpec::new(3, false)
    };
    let mut lab = FlexLab::new(&gateway, "bgp", &spec).unwrap();
    let dir = lab.lab().temp_dir().to_owned();
    // The DMVPN hub first: our hub dials it as soon as it starts.
    // A host of the DMVPN side, behind the DMVPN hub.
    lab.hub_lan()
        .ip(["addr", "add", &format!("{DMVPN_HOST}/32"), "dev", "lo"])
        .unwrap();
    let dmvpn = Bgpd::start(
        lab.hub_lan(),
        &dir.join("frr-dmvpn"),
        &flex_lab::frr_lan_hub_config(HUB_LAN_HOST),
    )
    .unwrap();
    lab.start_daemons().unwrap();
    lab.wait_sessions(3, Duration::from_mins(1)).unwrap();
    let frr_spoke = Bgpd::start(
        lab.spoke(3),
        &dir.join("frr-spoke3"),
        &flex_lab::frr_spoke_config(3),
    )
    .unwrap();
    dynamic_neighbors_and_the_summary(&lab, &frr_spoke);
    traffic_follows_bgp(&lab);
    dmvpn_hub_gets_the_specifics(&lab, &dmvpn);
    a_dead_spoke_is_withdrawn_at_once(&lab, &dmvpn);
}

/// (a) Every spoke is a dynamic neighbor with its LAN prefix; each spoke
/// gets only the summary.
fn dynamic_neighbors_and_the_summary(lab: &FlexLab, frr_spoke: &Bgpd) {
    let neighbors = wait_for(
        "3 dynamic neighbors with 1 prefix each",
        Duration::from_mins(1),
        || {
            let n = hub_neighbors(lab)?;
            let spokes: Vec<_> = n.iter().filter(|n| n.dynamic).collect();
            Ok((spokes.len() == 3
                && spokes
                    .iter()
                    .all(|n| n.state == "Established" && n.prefixes_received == Some(1)))
            .then_some(n))
        },
    );
    for k in 1..=3 {
        let pool = lab.spoke_pool_address(k).unwrap();
        assert!(
            neighbors.iter().any(|n| n.address == pool && n.dynamic),
            "spoke {k} ({pool}) is not a dynamic neighbor: {neighbors:?}"
        );
    }
    let text = lab.show(Which::Hub, &["bgp", "summary"]).unwrap();
    println!("{text}");
    for k in 1..=3 {
        let pool = lab.spoke_pool_address(k).unwrap();
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("*{pool} ")))
            .unwrap_or_else(|| panic!("no `*{pool}` row in:\n{text}"));
        assert!(
            row.trim_end().ends_with(" 1"),
            "State/PfxRcd is not 1: {row}"
        );
    }
    assert!(text.contains("* Dynamically created based on a listen range command"));
    let hub_table = our_prefixes(lab, Which::Hub).unwrap();
    for k in 1..=3 {
        assert!(hub_table.contains(&spoke_lan_prefix(k)), "{hub_table:?}");
    }
    let hub_text = lab.show(Which::Hub, &["bgp"]).unwrap();
    println!("{hub_text}");
    assert!(
        hub_text
            .lines()
            .any(|l| l.trim_start().starts_with("s>i") && l.contains(&spoke_lan_prefix(1))),
        "spoke 1's LAN is not shown suppressed:\n{hub_text}"
    );

    // Each spoke gets only the summary (and has its own LAN).
    for k in 1..=2 {
        let want = set(&[SUMMARY, &spoke_lan_prefix(k)]);
        wait_for(
            &format!("spoke {k}'s table"),
            Duration::from_secs(20),
            || Ok((our_prefixes(lab, Which::Spoke(k))? == want).then_some(())),
        );
    }
    let want = set(&[SUMMARY, &spoke_lan_prefix(3)]);
    wait_for("the FRR spoke's table", Duration::from_secs(20), || {
        Ok((frr_prefixes(frr_spoke)? == want).then_some(()))
    });

    // Route refresh (RFC 2918): FRR asks, the hub sends its table again.
    let hub = flex_lab::HUB_TUNNEL_ADDRESS.to_string();
    let updates = |bgpd: &Bgpd| -> Result<(u64, u64)> {
        let v = bgpd.json(&format!("show bgp neighbors {hub} json"))?;
        let stats = &v[&hub]["messageStats"];
        Ok((
            stats["routeRefreshSent"]
                .as_u64()
                .context("routeRefreshSent")?,
            stats["updatesRecv"].as_u64().context("updatesRecv")?,
        ))
    };
    let (refreshes, before) = updates(frr_spoke).unwrap();
    frr_spoke
        .vtysh(&format!("clear bgp ipv4 unicast {hub} soft in"))
        .unwrap();
    wait_for(
        "the hub's answer to ROUTE-REFRESH",
        Duration::from_secs(10),
        || {
            let (r, after) = updates(frr_spoke)?;
            Ok((r > refreshes && after > before).then_some(()))
        },
    );
    assert_eq!(frr_prefixes(frr_spoke).unwrap(), want);
}

/// Spoke LAN <-> spoke LAN over the BGP routes: spoke 1 has only the hub's
/// summary, the hub has spoke 2's LAN via its virtual-access.
fn traffic_follows_bgp(lab: &FlexLab) {
    let r = flex_lab::ping(lab.spoke_lan(1), spoke_lan_host(2), 3).unwrap();
    assert!(r.received >= 2, "LAN1 -> LAN2: {r:?}\n{}", lab.logs());
    let r = flex_lab::ping(lab.spoke_lan(2), spoke_lan_host(1), 3).unwrap();
    assert!(r.received >= 2, "LAN2 -> LAN1: {r:?}\n{}", lab.logs());
    let r = flex_lab::ping(lab.hub_lan(), spoke_lan_host(1), 3).unwrap();
    assert!(r.received >= 2, "hub LAN -> LAN1: {r:?}\n{}", lab.logs());
    let spoke1_routes =
        String::from_utf8_lossy(&lab.spoke(1).ip(["route", "show", SUMMARY]).unwrap().stdout)
            .into_owned();
    assert!(
        spoke1_routes.contains("gw-tun0"),
        "spoke 1: {spoke1_routes}"
    );
    let hub_routes = String::from_utf8_lossy(
        &lab.hub()
            .ip(["route", "show", spoke_lan_prefix(2).as_str()])
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(hub_routes.contains("gw-tun0"), "hub: {hub_routes}");
}

/// (b) The DMVPN hub gets the specifics with the rewritten next hop.
fn dmvpn_hub_gets_the_specifics(lab: &FlexLab, dmvpn: &Bgpd) {
    dmvpn
        .wait_established(&HUB_LAN_GATEWAY.to_string(), Duration::from_secs(30))
        .unwrap();
    let routes = wait_for(
        "the specifics at the DMVPN hub",
        Duration::from_secs(20),
        || {
            let routes = dmvpn.routes()?;
            let have: BTreeSet<String> = routes.iter().map(|(p, _)| p.clone()).collect();
            Ok((1..=3)
                .all(|k| have.contains(&spoke_lan_prefix(k)))
                .then_some(routes))
        },
    );
    for (prefix, hops) in routes.iter().filter(|(p, _)| p.as_str() != DMVPN_LAN) {
        assert_eq!(
            hops,
            &vec![HUB_LAN_GATEWAY.to_string()],
            "{prefix} at the DMVPN hub: next hop not rewritten"
        );
    }
    // Its DMVPN route goes into the hub's kernel via the DMVPN hub (no
    // virtual-access reaches that next hop), and still only the summary
    // goes to the spokes: they reach the DMVPN side through it.
    let route = wait_for(
        "the DMVPN route in the hub's kernel",
        Duration::from_secs(20),
        || {
            let out = lab.hub().ip(["route", "show", DMVPN_LAN])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(text
                .contains(&format!("via {HUB_LAN_HOST}"))
                .then_some(text))
        },
    );
    println!("hub: {route}");
    assert_eq!(
        our_prefixes(lab, Which::Spoke(1)).unwrap(),
        set(&[SUMMARY, &spoke_lan_prefix(1)])
    );
    let r = flex_lab::ping(lab.spoke_lan(1), DMVPN_HOST, 3).unwrap();
    assert!(
        r.received >= 2,
        "LAN1 -> the DMVPN side: {r:?}\n{}",
        lab.logs()
    );
}

/// (c) Spoke 2 dies without a word: the hub's dead peer detection ends its
/// IKE session, and its prefix goes at the hub and at the DMVPN hub with
/// it, not when the BGP hold time (15 s) runs out: within
/// [`WITHDRAW_BOUND`] of the session's end (the time it took is printed).
fn a_dead_spoke_is_withdrawn_at_once(lab: &FlexLab, dmvpn: &Bgpd) {
    let spoke2_pool = lab.spoke_pool_address(2).unwrap();
    lab.gateway(Which::Spoke(2))
        .unwrap()
        .process()
        .signal(libc::SIGKILL)
        .unwrap();
    let lan2 = spoke_lan_prefix(2);
    wait_for(
        "the hub to end spoke 2's IKE session",
        Duration::from_mins(1),
        || {
            Ok(lab
                .sessions()?
                .iter()
                .all(|s| s.assigned_address != Some(spoke2_pool))
                .then_some(()))
        },
    );
    let ike_gone = Instant::now();
    let withdrawn = wait_for("the withdrawal", WITHDRAW_BOUND, || {
        let at_hub = !our_prefixes(lab, Which::Hub)?.contains(&lan2);
        let at_dmvpn = !frr_prefixes(dmvpn)?.contains(&lan2);
        Ok((at_hub && at_dmvpn).then(Instant::now))
    });
    let took = withdrawn.duration_since(ike_gone);
    println!(
        "spoke 2's prefix withdrawn {:.2}s after its IKE session was seen gone (bound {:.0}s)",
        took.as_secs_f64(),
        WITHDRAW_BOUND.as_secs_f64()
    );
    assert!(
        hub_neighbors(lab)
            .unwrap()
            .iter()
            .all(|n| n.address != spoke2_pool),
        "the dynamic neighbor of spoke 2 is still listed"
    );
    let hub_log = lab.gateway(Which::Hub).unwrap().process().stdout_text()
        + &lab.gateway(Which::Hub).unwrap().process().stderr_text();
    assert!(
        hub_log.contains(&format!("%BGP-5-ADJCHANGE: neighbor *{spoke2_pool} Down")),
        "no neighbor change logged:\n{hub_log}"
    );
    if let Err(e) = check_logs(&hub_log) {
        panic!("{e:#}");
    }
}

/// The hub logged each spoke's session coming up, as IOS does with
/// `bgp log-neighbor-changes`.
fn check_logs(log: &str) -> Result<()> {
    let ups = log
        .lines()
        .filter(|l| l.contains("%BGP-5-ADJCHANGE: neighbor *") && l.ends_with(" Up"))
        .count();
    if ups < 3 {
        bail!("{ups} dynamic neighbors logged Up, expected 3:\n{log}");
    }
    Ok(())
}

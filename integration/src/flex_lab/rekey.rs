//! Watching rekeys: the rekeys each side logged ([`gateway_rekeys`],
//! [`strongswan_rekeys`]), and whether the hub's and a spoke's views of
//! their SAs hold only the current SPIs ([`SpiWatch`], fed with
//! [`FlexLab::spi_snapshot`]).
//!
//! "Only the current SPIs": during a rekey (make-before-break, RFC 7296
//! section 2.8) a peer briefly has two CHILD_SAs, the datapath two SA pairs
//! on its interface, and the XDP filter both inbound SPIs; once the old
//! CHILD_SA's DELETE is done, each of them holds one again. [`SpiWatch`]
//! notes every such surplus (and every inbound SPI that one view has and
//! another has not) with the time it was first seen, and reports the ones
//! that lasted longer than a bound.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::Result;
use gateway_report::{
    ike::SaReport, interfaces::DatapathReport, ipsec::IpsecSaReport, xdp::XdpReport,
};

use super::{FlexLab, Which};

/// The log line of a CHILD_SA rekey (hub and spoke, both roles).
pub const CHILD_REKEY_LOG: &str = "%IKEV2-5-CHILD_REKEY:";
/// The log line of an IKE SA rekey.
pub const IKE_REKEY_LOG: &str = "%IKEV2-5-IKE_REKEY:";
/// The log line of a peer that moved (NAT rebinding).
pub const PEER_MOVED_LOG: &str = "%IKEV2-5-PEER_MOVED:";

/// Rekeys one gateway logged, by who started them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RekeyCounts {
    pub child_initiated: usize,
    pub child_answered: usize,
    pub ike_initiated: usize,
    pub ike_answered: usize,
}

impl RekeyCounts {
    pub fn child(&self) -> usize {
        self.child_initiated + self.child_answered
    }

    pub fn ike(&self) -> usize {
        self.ike_initiated + self.ike_answered
    }
}

/// The rekeys in a gateway's log (`%IKEV2-5-CHILD_REKEY: ... (initiated)`
/// and the like) whose line names `peer` (its address or identity; empty:
/// every peer).
pub fn gateway_rekeys(log: &str, peer: &str) -> RekeyCounts {
    let mut counts = RekeyCounts::default();
    for line in log.lines().filter(|l| mentions(l, peer)) {
        let initiated = line.contains("(initiated)");
        let answered = line.contains("(answered)");
        if line.contains(CHILD_REKEY_LOG) {
            counts.child_initiated += usize::from(initiated);
            counts.child_answered += usize::from(answered);
        } else if line.contains(IKE_REKEY_LOG) {
            counts.ike_initiated += usize::from(initiated);
            counts.ike_answered += usize::from(answered);
        }
    }
    counts
}

/// Whether `line` has `word` with no digit or dot right after it (so
/// that 172.25.1.5 is not 172.25.1.51).
fn mentions(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        !line[at + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// The CHILD_SA rekeys of a gateway's log as (old, new) inbound SPIs.
pub fn gateway_child_rekey_spis(log: &str) -> Vec<(u32, u32)> {
    log.lines()
        .filter(|l| l.contains(CHILD_REKEY_LOG))
        .filter_map(|l| {
            let rest = &l[l.find("SPI in ")? + "SPI in ".len()..];
            let mut words = rest.split_whitespace();
            let old = parse_spi(words.next()?)?;
            let _arrow = words.next().filter(|w| *w == "->")?;
            let new = parse_spi(words.next()?)?;
            Some((old, new))
        })
        .collect()
}

/// `0x1234abcd` (or without `0x`) as a number.
pub fn parse_spi(text: &str) -> Option<u32> {
    let hex = text.trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(hex, 16).ok()
}

/// (CHILD_SA rekeys, IKE_SA rekeys) in a charon log, in either role: the
/// CHILD_SAs established (`CHILD_SA hub{N} established with SPIs`,
/// counted by their unique id N) other than the first of each IKE_SA
/// that was authenticated (`IKE_SA spoke[M] established between`: the
/// first one, and any reauthentication, which charon falls back to when a
/// peer refuses CREATE_CHILD_SA, and which is no rekey), and the IKE_SAs
/// `rekeyed between`. (A rekeyed IKE_SA keeps its CHILD_SAs: no CHILD_SA
/// is established with it.)
pub fn strongswan_rekeys(log: &str) -> (usize, usize) {
    let children: BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains(" established with SPIs "))
        .filter_map(|l| {
            let rest = &l[l.find("CHILD_SA ")? + "CHILD_SA ".len()..];
            rest.split_whitespace().next()
        })
        .collect();
    let ike_line = |what: &str| {
        log.lines()
            .filter(|l| l.contains("IKE_SA ") && l.contains(what))
            .count()
    };
    let authenticated = ike_line(" established between ");
    let rekeyed = ike_line(" rekeyed between ");
    (children.len().saturating_sub(authenticated), rekeyed)
}

/// What one gateway says about its SAs at one moment.
#[derive(Clone, Debug)]
pub struct SpiSnapshot {
    /// `show crypto session`.
    pub sessions: Vec<SaReport>,
    /// `show interfaces virtual-access`: the datapath's SA pairs.
    pub datapath: DatapathReport,
    /// `show xdp`: the inbound SPIs the uplink filter passes.
    pub xdp: XdpReport,
    /// `show crypto ipsec sa`: the SA pairs per interface.
    pub ipsec: IpsecSaReport,
}

impl FlexLab {
    /// The SAs of the hub or an own spoke, as its three views show them.
    pub fn spi_snapshot(&self, on: Which) -> Result<SpiSnapshot> {
        Ok(SpiSnapshot {
            sessions: self.show_report(on, &["crypto", "session"])?,
            datapath: self.show_report(on, &["interfaces", "virtual-access"])?,
            xdp: self.show_report(on, &["xdp"])?,
            ipsec: self.show_report(on, &["crypto", "ipsec", "sa"])?,
        })
    }
}

impl SpiSnapshot {
    /// Every way in which this snapshot holds more than the current SPIs,
    /// keyed (the key stays the same while the surplus lasts) with a
    /// description.
    pub fn surplus(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut by_peer: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        let mut child_spis = BTreeSet::new();
        for sa in &self.sessions {
            let peer = sa.identity.clone().unwrap_or_else(|| sa.remote.clone());
            let entry = by_peer.entry(peer).or_default();
            entry.0 += 1;
            for child in &sa.children {
                entry.1.push(child.spi_in.clone());
                child_spis.extend(parse_spi(&child.spi_in));
            }
        }
        for (peer, (ike_sas, children)) in by_peer {
            if ike_sas > 1 {
                out.insert(
                    format!("ike:{peer}"),
                    format!("{ike_sas} IKE SAs of {peer}"),
                );
            }
            if children.len() > 1 {
                out.insert(
                    format!("child:{peer}"),
                    format!("CHILD_SAs of {peer} with inbound SPIs {children:?}"),
                );
            }
        }
        let mut pairs: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for sa in &self.datapath.sas {
            pairs.entry(sa.va).or_default().push(sa.spi_in);
        }
        for (va, spis) in &pairs {
            if spis.len() > 1 {
                out.insert(
                    format!("pairs:{va}"),
                    format!("datapath SA pairs on interface {va}: inbound {}", hex(spis)),
                );
            }
        }
        let datapath: BTreeSet<u32> = pairs.values().flatten().copied().collect();
        let xdp: BTreeSet<u32> = self.xdp.sas.iter().map(|s| s.spi).collect();
        let ipsec: BTreeSet<u32> = self.ipsec.spis_in().into_iter().collect();
        // What the views are held against: the CHILD_SAs; where `show
        // crypto session` lists no IKE SA at all (a spoke, whose IKE SA
        // with its hub it does not list), the datapath's SA pairs.
        let (reference, what, views) = if self.sessions.is_empty() {
            (
                &datapath,
                "SA pair of the datapath",
                vec![("xdp", &xdp), ("ipsec-sa", &ipsec)],
            )
        } else {
            (
                &child_spis,
                "CHILD_SA",
                vec![("datapath", &datapath), ("xdp", &xdp), ("ipsec-sa", &ipsec)],
            )
        };
        for (name, set) in views {
            for spi in set.difference(reference) {
                out.insert(
                    format!("{name}-extra:{spi:08x}"),
                    format!("inbound SPI {spi:#010x} in the {name} but in no {what}"),
                );
            }
            for spi in reference.difference(set) {
                out.insert(
                    format!("{name}-missing:{spi:08x}"),
                    format!("the {what} with inbound SPI {spi:#010x} is not in the {name}"),
                );
            }
        }
        out
    }

    /// What the box dropped on the way in, for a run's figures: ESP for an
    /// unknown SPI (XDP and datapath), the datapath's other drops, and the
    /// current SAs' replays and ICV failures.
    pub fn drops(&self) -> String {
        let xdp_unknown: u64 = self
            .xdp
            .verdicts
            .iter()
            .filter(|v| v.drop && v.verdict.contains("unknown_spi"))
            .map(|v| v.packets)
            .sum();
        let g = &self.datapath.global;
        let replayed: u64 = self.datapath.sas.iter().map(|s| s.replayed).sum();
        let auth_failed: u64 = self.datapath.sas.iter().map(|s| s.auth_failed).sum();
        format!(
            "unknown SPI {xdp_unknown} (XDP) + {} (datapath), no route {}, wrong endpoint {}, \
             malformed {}, replayed {replayed}, ICV failed {auth_failed}",
            g.unknown_spi, g.no_route, g.wrong_endpoint, g.malformed
        )
    }

    /// Every inbound SPI the snapshot holds, in any view.
    pub fn inbound_spis(&self) -> BTreeSet<u32> {
        let children = self
            .sessions
            .iter()
            .flat_map(|s| &s.children)
            .filter_map(|c| parse_spi(&c.spi_in));
        let pairs = self.datapath.sas.iter().map(|s| s.spi_in);
        let xdp = self.xdp.sas.iter().map(|s| s.spi);
        let ipsec = self.ipsec.sas().map(|s| s.spi_in);
        children.chain(pairs).chain(xdp).chain(ipsec).collect()
    }
}

/// Keeps track of surpluses ([`SpiSnapshot::surplus`]) over time: each
/// must be gone within `bound` of being first seen.
#[derive(Debug)]
pub struct SpiWatch {
    bound: Duration,
    since: BTreeMap<String, Instant>,
    /// The longest a surplus lasted (as sampled).
    pub longest: Duration,
    /// Surpluses that lasted longer than the bound (once each).
    pub violations: Vec<String>,
    reported: BTreeSet<String>,
    /// Snapshots taken, and ones that failed.
    pub samples: usize,
    pub failed_samples: Vec<String>,
}

impl SpiWatch {
    pub fn new(bound: Duration) -> Self {
        SpiWatch {
            bound,
            since: BTreeMap::new(),
            longest: Duration::ZERO,
            violations: Vec::new(),
            reported: BTreeSet::new(),
            samples: 0,
            failed_samples: Vec::new(),
        }
    }

    /// Takes in one snapshot of gateway `label` taken at `now`.
    pub fn observe(&mut self, label: &str, now: Instant, snapshot: Result<SpiSnapshot>) {
        self.samples += 1;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(e) => {
                self.failed_samples.push(format!("{label}: {e:#}"));
                return;
            }
        };
        let surplus = snapshot.surplus();
        let prefix = format!("{label}/");
        self.since.retain(|key, _| {
            !key.starts_with(&prefix) || surplus.contains_key(&key[prefix.len()..])
        });
        for (key, what) in surplus {
            let key = format!("{prefix}{key}");
            let since = *self.since.entry(key.clone()).or_insert(now);
            let lasted = now.saturating_duration_since(since);
            self.longest = self.longest.max(lasted);
            if lasted > self.bound && self.reported.insert(key) {
                let mut text = format!("{label}: {what} for {:.1} s", lasted.as_secs_f64());
                let _ = write!(
                    text,
                    " (inbound SPIs now {})",
                    hex(&snapshot.inbound_spis())
                );
                self.violations.push(text);
            }
        }
    }
}

fn hex<'a>(spis: impl IntoIterator<Item = &'a u32>) -> String {
    let list: Vec<String> = spis.into_iter().map(|s| format!("{s:#010x}")).collect();
    format!("[{}]", list.join(", "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gateway_report::ike::{ChildReport, IpsecMode};

    #[test]
    fn counts_the_gateways_rekey_lines() {
        let log = "\
2026-01-01T00:00:01Z INFO %IKEV2-5-CHILD_REKEY: CHILD_SA rekeyed. Peer 172.25.1.51:4500 SPI in 0x0000abcd -> 0xc0000002 (answered)
2026-01-01T00:00:02Z INFO %IKEV2-5-CHILD_REKEY: CHILD_SA rekeyed. Peer 172.25.1.52:4500 SPI in 0xc0000003 -> 0xc0000004 (initiated)
2026-01-01T00:00:03Z INFO %IKEV2-5-IKE_REKEY: IKE SA rekeyed. Peer 172.25.1.51:4500 SPI 00000000000000aa -> 00000000000000bb (answered)
2026-01-01T00:00:04Z INFO Crypto tunnel is UP 172.25.1.51
";
        let a = gateway_rekeys(log, "172.25.1.51");
        assert_eq!(
            (a.child_answered, a.ike_answered, a.child_initiated),
            (1, 1, 0)
        );
        let b = gateway_rekeys(log, "172.25.1.52");
        assert_eq!((b.child_initiated, b.child(), b.ike()), (1, 1, 0));
        assert_eq!(gateway_rekeys(log, "").child(), 2);
        assert_eq!(gateway_rekeys(log, "172.25.1.5"), RekeyCounts::default());
        assert_eq!(
            gateway_child_rekey_spis(log),
            [(0xabcd, 0xc000_0002), (0xc000_0003, 0xc000_0004)]
        );
    }

    #[test]
    fn counts_charons_rekeys() {
        let log = "\
10:00:00 14[IKE] <spoke|1> IKE_SA spoke[1] established between 172.25.1.51[swan-a]...172.25.1.1[hub]
10:00:00 14[IKE] <spoke|1> CHILD_SA hub{1} established with SPIs c1_i c2_o and TS 10.1.1.100/32 === 192.168.0.0/16
10:00:20 14[IKE] <spoke|1> inbound CHILD_SA hub{2} established with SPIs c3_i c4_o and TS 10.1.1.100/32 === 192.168.0.0/16
10:00:20 14[IKE] <spoke|1> outbound CHILD_SA hub{2} established with SPIs c3_i c4_o and TS 10.1.1.100/32 === 192.168.0.0/16
10:00:40 14[IKE] <spoke|1> CHILD_SA hub{3} established with SPIs c5_i c6_o and TS 10.1.1.100/32 === 192.168.0.0/16
10:01:00 14[IKE] <spoke|2> IKE_SA spoke[2] rekeyed between 172.25.1.51[swan-a]...172.25.1.1[hub]
";
        assert_eq!(strongswan_rekeys(log), (2, 1));
        assert_eq!(strongswan_rekeys(""), (0, 0));
        // A reauthentication (a new IKE_SA with a new CHILD_SA) is no rekey.
        let reauth = format!(
            "{log}10:01:10 09[IKE] <spoke|3> IKE_SA spoke[3] established between 172.25.1.51[swan-a]...172.25.1.1[hub]\n\
             10:01:10 09[IKE] <spoke|3> CHILD_SA hub{{4}} established with SPIs c7_i c8_o and TS 10.1.1.100/32 === 192.168.0.0/16\n"
        );
        assert_eq!(strongswan_rekeys(&reauth), (2, 1));
    }

    fn session(identity: &str, spis_in: &[&str]) -> SaReport {
        SaReport {
            tunnel_id: 1,
            local: "172.25.1.1/4500".into(),
            remote: "172.25.1.51/4500".into(),
            status: "READY".into(),
            encryption: String::new(),
            prf: String::new(),
            hash: None,
            dh_group: 31,
            auth_sign: None,
            auth_verify: None,
            lifetime_s: 0,
            active_time_s: 0,
            spi_i: "1".into(),
            spi_r: "2".into(),
            identity: Some(identity.into()),
            profile: None,
            assigned_address: None,
            nat_t: true,
            children: spis_in
                .iter()
                .map(|s| ChildReport {
                    spi_in: (*s).into(),
                    spi_out: "0x00000001".into(),
                    mode: IpsecMode::Tunnel,
                    encryption: String::new(),
                    integrity: None,
                    local_ts: Vec::new(),
                    remote_ts: Vec::new(),
                    transform: String::new(),
                    esn: false,
                    active_s: 0,
                    lifetime_s: 0,
                    lifetime_kb: 0,
                    outbound: true,
                })
                .collect(),
        }
    }

    fn snapshot(children: &[&str], pairs: &[u32], xdp: &[u32]) -> SpiSnapshot {
        snapshot_with_ipsec(children, pairs, xdp, pairs)
    }

    fn snapshot_with_ipsec(
        children: &[&str],
        pairs: &[u32],
        xdp: &[u32],
        ipsec: &[u32],
    ) -> SpiSnapshot {
        let datapath: DatapathReport = serde_json::from_value(serde_json::json!({
            "kind": "userspace", "workers": 1, "virtual_access": [],
            "sas": pairs.iter().map(|s| serde_json::json!({
                "va": 1, "spi_in": s, "spi_out": 1, "rx_packets": 0, "rx_bytes": 0,
                "tx_packets": 0, "tx_bytes": 0, "replayed": 0, "auth_failed": 0})).collect::<Vec<_>>(),
            "global": {"unknown_spi": 0, "malformed": 0, "no_route": 0, "wrong_endpoint": 0,
                "nhrp_to_control": 0, "hairpin_events": 0, "hairpin_events_lost": 0, "ttl_expired": 0}
        }))
        .unwrap();
        let xdp: XdpReport = serde_json::from_value(serde_json::json!({
            "interface": "u", "mode": "skb", "ike_rate_per_s": 1, "ike_burst": 1, "spread_cpus": 0,
            "verdicts": [],
            "sas": xdp.iter().map(|s| serde_json::json!({
                "spi": s, "packets": 0, "bytes": 0, "last_seen_ms_ago": null})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let ipsec: IpsecSaReport = serde_json::from_value(serde_json::json!({
            "interfaces": [{
                "interface": "Virtual-Access1", "tunnel_id": 1, "local": null,
                "remote": "172.25.1.11", "remote_port": 4500, "pkts_encaps": 0,
                "pkts_decaps": 0, "pkts_replay_failed": 0, "pkts_verify_failed": 0,
                "current_outbound_spi": null,
                "sas": ipsec.iter().map(|s| serde_json::json!({
                    "spi_in": s, "spi_out": 1, "transform": null, "mode": null, "esn": null,
                    "packets_in": 0, "bytes_in": 0, "packets_out": 0, "bytes_out": 0,
                    "active_s": null, "remaining_kb": null, "remaining_s": null,
                    "outbound": true, "status": "ACTIVE"})).collect::<Vec<_>>(),
            }],
        }))
        .unwrap();
        SpiSnapshot {
            sessions: vec![session("fqdn:a", children)],
            datapath,
            xdp,
            ipsec,
        }
    }

    #[test]
    fn show_crypto_ipsec_sa_is_held_to_the_current_spis_too() {
        let stale = snapshot_with_ipsec(&["0x00000011"], &[0x11], &[0x11], &[0x10, 0x11]);
        let keys: Vec<String> = stale.surplus().into_keys().collect();
        assert_eq!(keys, ["ipsec-sa-extra:00000010"]);
        let short = snapshot_with_ipsec(&["0x00000011"], &[0x11], &[0x11], &[]);
        let keys: Vec<String> = short.surplus().into_keys().collect();
        assert_eq!(keys, ["ipsec-sa-missing:00000011"]);
        assert!(stale.inbound_spis().contains(&0x10));
    }

    #[test]
    fn a_surplus_that_outlasts_the_bound_is_a_violation() {
        let clean = snapshot(&["0x00000010"], &[0x10], &[0x10]);
        assert!(clean.surplus().is_empty(), "{:?}", clean.surplus());
        let rekeying = snapshot(&["0x00000010", "0x00000011"], &[0x10, 0x11], &[0x10, 0x11]);
        let keys: Vec<String> = rekeying.surplus().into_keys().collect();
        assert_eq!(keys, ["child:fqdn:a", "pairs:1"]);
        let stale_xdp = snapshot(&["0x00000011"], &[0x11], &[0x10, 0x11]);
        let keys: Vec<String> = stale_xdp.surplus().into_keys().collect();
        assert_eq!(keys, ["xdp-extra:00000010"]);
        // Without sessions (a spoke), XDP is held against the datapath.
        let mut spoke = snapshot(&[], &[0x11], &[0x11]);
        spoke.sessions.clear();
        assert!(spoke.surplus().is_empty(), "{:?}", spoke.surplus());
        let mut spoke = snapshot(&[], &[0x11], &[0x10, 0x11]);
        spoke.sessions.clear();
        let keys: Vec<String> = spoke.surplus().into_keys().collect();
        assert_eq!(keys, ["xdp-extra:00000010"]);

        let t0 = Instant::now();
        let mut watch = SpiWatch::new(Duration::from_secs(10));
        watch.observe("hub", t0, Ok(rekeying.clone()));
        watch.observe("hub", t0 + Duration::from_secs(5), Ok(rekeying.clone()));
        watch.observe("hub", t0 + Duration::from_secs(6), Ok(clean.clone()));
        // A new surplus starts its own clock.
        watch.observe("hub", t0 + Duration::from_secs(7), Ok(stale_xdp.clone()));
        watch.observe("hub", t0 + Duration::from_secs(16), Ok(stale_xdp.clone()));
        assert!(watch.violations.is_empty(), "{:?}", watch.violations);
        assert_eq!(watch.longest, Duration::from_secs(9));
        watch.observe("hub", t0 + Duration::from_secs(18), Ok(stale_xdp.clone()));
        watch.observe("hub", t0 + Duration::from_secs(19), Ok(stale_xdp));
        assert_eq!(watch.violations.len(), 1, "{:?}", watch.violations);
        assert!(
            watch.violations[0].contains("0x00000010"),
            "{:?}",
            watch.violations
        );
        watch.observe("spoke", t0, Err(anyhow::anyhow!("no socket")));
        assert_eq!((watch.samples, watch.failed_samples.len()), (8, 1));
    }
}

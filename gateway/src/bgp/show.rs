//! The operator's views of BGP: `show bgp summary` (IOS `show ip bgp
//! summary`) and `show bgp` (IOS `show bgp ipv4 unicast`), built from the
//! instance's neighbor table and the RIB as the report types of
//! [`gateway_report::bgp`] (what the control socket sends), and rendered
//! as IOS text for the CLI.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Instant;

pub use gateway_report::bgp::{NeighborSummary, ShowPath, Summary, TableView};

use super::{
    fsm::State,
    neighbors::PeerSettings,
    rib::{Rib, Source, TableEntry},
    types::{AsSegment, Origin},
};
use crate::config;

/// What `show bgp summary` needs of one neighbor of the instance's table.
#[derive(Clone, Copy, Debug)]
pub struct NeighborFacts<'a> {
    pub settings: &'a PeerSettings,
    pub state: State,
    pub msg_rcvd: u64,
    pub msg_sent: u64,
    /// Messages queued for the socket.
    pub out_q: u64,
    /// When the session last came up or went down.
    pub since: Option<Instant>,
    /// The table version last sent.
    pub table_version: u64,
    /// Prefixes in its Adj-RIB-In, when the RIB has the peer.
    pub accepted: Option<usize>,
}

/// `show bgp summary` as data.
pub fn summary<'a>(
    bgp: &config::Bgp,
    router_id: Ipv4Addr,
    rib: &Rib,
    neighbors: impl IntoIterator<Item = NeighborFacts<'a>>,
    now: Instant,
) -> Summary {
    let neighbors = neighbors
        .into_iter()
        .map(|n| NeighborSummary {
            address: n.settings.address,
            dynamic: n.settings.dynamic.is_some(),
            peer_group: n.settings.dynamic.clone(),
            asn: n.settings.remote_as,
            msg_rcvd: n.msg_rcvd,
            msg_sent: n.msg_sent,
            table_version: n.table_version,
            in_q: 0,
            out_q: n.out_q,
            up_down_secs: n.since.map(|t| now.saturating_duration_since(t).as_secs()),
            state: n.state.to_string(),
            prefixes_received: (n.state == State::Established).then(|| n.accepted.unwrap_or(0)),
        })
        .collect();
    Summary {
        router_id,
        asn: bgp.asn,
        table_version: rib.table_version(),
        prefixes: rib.prefixes().count(),
        paths: rib.table().len(),
        listen_limit: bgp.listen_limit,
        listen_ranges: bgp
            .listen_range
            .iter()
            .map(|r| (r.prefix.to_string(), r.peer_group.clone()))
            .collect(),
        neighbors,
    }
}

/// `show bgp summary` as IOS prints it:
///
/// ```text
/// BGP router identifier 172.25.1.1, local AS number 65001
/// BGP table version is 13, main routing table version 13
/// 4 network entries
/// 5 path entries
///
/// Neighbor        V           AS MsgRcvd MsgSent   TblVer  InQ OutQ Up/Down  State/PfxRcd
/// *10.1.1.101     4        65001      83      82       13    0    0 01:10:46        1
/// 192.168.0.2     4        65001       0       0        1    0    0 never    Active
/// * Dynamically created based on a listen range command
/// ...
/// ```
///
/// IOS adds "using N bytes of memory" to the entry counts and lines about
/// attribute and cache memory; those figures would be made up here, so they
/// are left out (scripts that parse IOS skip lines they do not match).
pub fn render_summary(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "BGP router identifier {}, local AS number {}",
        s.router_id, s.asn
    );
    // Routes go to the kernel as the table changes, so the main routing
    // table is at the BGP table's version.
    let _ = writeln!(
        out,
        "BGP table version is {v}, main routing table version {v}",
        v = s.table_version
    );
    let _ = writeln!(out, "{} network entries", s.prefixes);
    let _ = writeln!(out, "{} path entries", s.paths);

    let mut neighbors: Vec<&NeighborSummary> = s.neighbors.iter().collect();
    neighbors.sort_by_key(|n| n.address);
    if !neighbors.is_empty() {
        out.push_str(
            "\nNeighbor        V           AS MsgRcvd MsgSent   TblVer  InQ OutQ Up/Down  State/PfxRcd\n",
        );
    }
    for n in &neighbors {
        let address = if n.dynamic {
            format!("*{}", n.address)
        } else {
            n.address.to_string()
        };
        // Each number has at least one space before it: a wide one pushes
        // the rest of the line right, as on IOS.
        let _ = write!(
            out,
            "{address:<15} 4 {:>12} {:>7} {:>7} {:>8} {:>4} {:>4} {:<8} ",
            n.asn,
            n.msg_rcvd,
            n.msg_sent,
            n.table_version,
            n.in_q,
            n.out_q,
            up_down(n.up_down_secs),
        );
        if n.state == "Established" {
            let _ = writeln!(out, "{:>8}", n.prefixes_received.unwrap_or(0));
        } else {
            let _ = writeln!(out, "{}", n.state);
        }
    }

    let dynamic = neighbors.iter().filter(|n| n.dynamic).count();
    if dynamic > 0 || !s.listen_ranges.is_empty() {
        render_listen_ranges(&mut out, s, dynamic);
    }
    out
}

/// The lines after the table about `bgp listen range` (IOS prints them
/// with the trailing spaces kept here).
fn render_listen_ranges(out: &mut String, s: &Summary, dynamic: usize) {
    let ranges = s.listen_ranges.len();
    out.push_str("* Dynamically created based on a listen range command\n");
    let _ = writeln!(
        out,
        "Dynamically created neighbors: {dynamic}, Subnet ranges: {ranges}"
    );
    // Peer groups in the order their first range is configured.
    let mut groups: Vec<&str> = Vec::new();
    for (_, group) in &s.listen_ranges {
        if !groups.contains(&group.as_str()) {
            groups.push(group);
        }
    }
    for group in groups {
        let _ = writeln!(out, "\nBGP peergroup {group} listen range group members: ");
        for (prefix, _) in s.listen_ranges.iter().filter(|(_, g)| g == group) {
            let _ = writeln!(out, "  {prefix} ");
        }
    }
    let _ = writeln!(
        out,
        "\nTotal dynamically created neighbors: {dynamic}/({} max), Subnet ranges: {ranges}",
        s.listen_limit
    );
}

/// The Up/Down column as IOS writes it: `never`, `01:10:46` under a day,
/// `3d04h` under a week, `2w1d` under a year, then `1y28w`.
pub fn up_down(secs: Option<u64>) -> String {
    const DAY: u64 = 86_400;
    let Some(s) = secs else {
        return "never".to_owned();
    };
    let days = s / DAY;
    match days {
        0 => format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        1..7 => format!("{days}d{:02}h", s % DAY / 3600),
        7..365 => format!("{}w{}d", days / 7, days % 7),
        _ => format!("{}y{}w", days / 365, days % 365 / 7),
    }
}

/// `show bgp` as data: every path of every prefix, prefixes in order, the
/// best path first.
pub fn table_view(rib: &Rib) -> TableView {
    TableView {
        version: rib.table_version(),
        router_id: rib.router_id(),
        rows: rib.table().iter().map(show_path).collect(),
    }
}

fn show_path(e: &TableEntry<'_>) -> ShowPath {
    let p = e.path;
    let ibgp = p.peer.is_some_and(|f| f.ibgp);
    ShowPath {
        prefix: e.prefix.to_string(),
        valid: true,
        best: e.best.is_some(),
        suppressed: e.suppressed,
        internal: ibgp,
        next_hop: p.attrs.next_hop,
        metric: p.attrs.med,
        local_pref: if ibgp {
            Some(p.local_pref())
        } else {
            p.attrs.local_pref
        },
        weight: p.weight(),
        path: as_path_string(&p.attrs.as_path),
        origin: origin_code(p.attrs.origin),
        source: match p.source {
            Source::Network => "network".to_owned(),
            Source::Aggregate => "aggregate".to_owned(),
            Source::Redistributed => "redistribute".to_owned(),
            Source::Peer(_) => p.peer.map_or_else(String::new, |f| f.address.to_string()),
        },
        peer: p.source.peer().map(|id| id.0),
        originator_id: p.attrs.originator_id,
        cluster_list: p.attrs.cluster_list.clone(),
        reason: e.best.map(|step| step.name().to_owned()),
    }
}

/// AS_PATH as IOS prints it: `65002 65003 {65004,65005}`.
pub fn as_path_string(path: &[AsSegment]) -> String {
    let mut s = String::new();
    for seg in path {
        if !s.is_empty() {
            s.push(' ');
        }
        match seg {
            AsSegment::Sequence(v) => {
                let list: Vec<String> = v.iter().map(u32::to_string).collect();
                s.push_str(&list.join(" "));
            }
            AsSegment::Set(v) => {
                let list: Vec<String> = v.iter().map(u32::to_string).collect();
                let _ = write!(s, "{{{}}}", list.join(","));
            }
        }
    }
    s
}

fn origin_code(o: Origin) -> char {
    match o {
        Origin::Igp => 'i',
        Origin::Egp => 'e',
        Origin::Incomplete => '?',
    }
}

/// `show bgp` as IOS prints it:
///
/// ```text
/// BGP table version is 7, local router ID is 172.25.1.1
/// Status codes: s suppressed, * valid, > best, i - internal
/// Origin codes: i - IGP, e - EGP, ? - incomplete
///
///      Network          Next Hop            Metric LocPrf Weight Path
///  *>  192.168.0.0/16   0.0.0.0                            32768 i
///  s>i 192.168.101.0/24 10.1.1.100               0    100      0 i
/// ```
pub fn render_table(view: &TableView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "BGP table version is {}, local router ID is {}",
        view.version, view.router_id
    );
    out.push_str("Status codes: s suppressed, * valid, > best, i - internal\n");
    out.push_str("Origin codes: i - IGP, e - EGP, ? - incomplete\n\n");
    out.push_str("     Network          Next Hop            Metric LocPrf Weight Path\n");
    let mut last: Option<&str> = None;
    for r in &view.rows {
        let status = if r.suppressed { 's' } else { '*' };
        let best = if r.best { '>' } else { ' ' };
        let internal = if r.internal { 'i' } else { ' ' };
        let network = if last == Some(r.prefix.as_str()) {
            ""
        } else {
            r.prefix.as_str()
        };
        last = Some(&r.prefix);
        let _ = write!(out, " {status}{best}{internal} ");
        if network.len() > 16 {
            // IOS wraps a long prefix onto its own line.
            let _ = write!(out, "{network}\n{:22}", "");
        } else {
            let _ = write!(out, "{network:<17}");
        }
        let num = |v: Option<u32>| v.map_or_else(String::new, |v| v.to_string());
        let path = if r.path.is_empty() {
            r.origin.to_string()
        } else {
            format!("{} {}", r.path, r.origin)
        };
        let _ = writeln!(
            out,
            "{:<20}{:>6} {:>6} {:>6} {path}",
            r.next_hop.to_string(),
            num(r.metric),
            num(r.local_pref),
            r.weight,
        );
    }
    out
}

#[cfg(test)]
mod tests;

//! `show bgp summary` (IOS `show ip bgp summary`): the speaker's numbers
//! and one line per neighbor, as data ([`Summary`], what the control socket
//! sends) and as IOS text ([`render_summary`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Everything `show bgp summary` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub table_version: u64,
    /// Prefixes in the Loc-RIB ("N network entries") and paths ("N path entries").
    pub prefixes: usize,
    pub paths: usize,
    /// IOS `bgp listen limit`.
    pub listen_limit: u32,
    /// `bgp listen range` lines: (prefix as "a.b.c.d/len", peer group).
    pub listen_ranges: Vec<(String, String)>,
    pub neighbors: Vec<NeighborSummary>,
}

/// One line of the neighbor table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeighborSummary {
    pub address: Ipv4Addr,
    /// Accepted through a listen range: `*` before the address.
    pub dynamic: bool,
    pub peer_group: Option<String>,
    pub asn: u32,
    pub msg_rcvd: u64,
    pub msg_sent: u64,
    /// The table version the peer has been sent up to.
    pub table_version: u64,
    pub in_q: u64,
    pub out_q: u64,
    /// Seconds since the session came up (Established) or went down; None: never up.
    pub up_down_secs: Option<u64>,
    /// FSM state name ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"), or "Idle (Admin)" etc.
    pub state: String,
    /// Prefixes accepted from the peer, when Established.
    pub prefixes_received: Option<usize>,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn established(address: &str, dynamic: bool, up: u64, pfx: usize) -> NeighborSummary {
        NeighborSummary {
            address: ip(address),
            dynamic,
            peer_group: dynamic.then(|| "Spokes".to_owned()),
            asn: 65001,
            msg_rcvd: 83,
            msg_sent: 82,
            table_version: 13,
            in_q: 0,
            out_q: 0,
            up_down_secs: Some(up),
            state: "Established".to_owned(),
            prefixes_received: Some(pfx),
        }
    }

    /// The seed hub: two spokes through the listen range (one with a
    /// MsgRcvd too wide for its column), the inter-hub neighbor up three
    /// days, and a second static neighbor that never came up. Given out of
    /// order.
    fn hub() -> Summary {
        let mut wide = established("10.1.1.100", true, 44, 1);
        wide.msg_rcvd = 123_456_789;
        wide.msg_sent = 4321;
        let mut interhub = established("192.168.0.1", false, 3 * 86_400 + 4 * 3600 + 5, 4);
        interhub.msg_rcvd = 97;
        interhub.msg_sent = 99;
        let never = NeighborSummary {
            table_version: 1,
            msg_rcvd: 0,
            msg_sent: 0,
            up_down_secs: None,
            state: "Active".to_owned(),
            prefixes_received: None,
            ..established("192.168.0.2", false, 0, 0)
        };
        Summary {
            router_id: ip("172.25.1.1"),
            asn: 65001,
            table_version: 13,
            prefixes: 4,
            paths: 5,
            listen_limit: 5000,
            listen_ranges: vec![("10.1.1.0/24".to_owned(), "Spokes".to_owned())],
            neighbors: vec![
                interhub,
                never,
                established("10.1.1.101", true, 4246, 1),
                wide,
            ],
        }
    }

    #[test]
    fn render_like_ios() {
        let want = "\
BGP router identifier 172.25.1.1, local AS number 65001
BGP table version is 13, main routing table version 13
4 network entries
5 path entries

Neighbor        V           AS MsgRcvd MsgSent   TblVer  InQ OutQ Up/Down  State/PfxRcd
*10.1.1.100     4        65001 123456789    4321       13    0    0 00:00:44        1
*10.1.1.101     4        65001      83      82       13    0    0 01:10:46        1
192.168.0.1     4        65001      97      99       13    0    0 3d04h           4
192.168.0.2     4        65001       0       0        1    0    0 never    Active
* Dynamically created based on a listen range command
Dynamically created neighbors: 2, Subnet ranges: 1

BGP peergroup Spokes listen range group members: \n  10.1.1.0/24 \n
Total dynamically created neighbors: 2/(5000 max), Subnet ranges: 1
";
        assert_eq!(render_summary(&hub()), want);
    }

    #[test]
    fn ranges_listed_under_their_peer_group() {
        let s = Summary {
            listen_ranges: vec![
                ("10.1.1.0/24".to_owned(), "Spokes".to_owned()),
                ("10.9.0.0/16".to_owned(), "Labs".to_owned()),
                ("10.1.2.0/24".to_owned(), "Spokes".to_owned()),
            ],
            neighbors: vec![],
            ..hub()
        };
        let text = render_summary(&s);
        assert!(
            !text.contains("Neighbor "),
            "no table without neighbors: {text}"
        );
        assert!(
            text.ends_with(
                "Dynamically created neighbors: 0, Subnet ranges: 3\n\n\
                 BGP peergroup Spokes listen range group members: \n  10.1.1.0/24 \n  10.1.2.0/24 \n\n\
                 BGP peergroup Labs listen range group members: \n  10.9.0.0/16 \n\n\
                 Total dynamically created neighbors: 0/(5000 max), Subnet ranges: 3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn no_listen_range_no_footer() {
        let s = Summary {
            listen_ranges: vec![],
            neighbors: vec![established("192.168.0.1", false, 10, 4)],
            ..hub()
        };
        let text = render_summary(&s);
        assert!(
            text.ends_with("00:00:10        4\n") && !text.contains("Dynamically"),
            "{text}"
        );
    }

    #[test]
    fn up_down_formats() {
        let cases = [
            (None, "never"),
            (Some(0), "00:00:00"),
            (Some(86_399), "23:59:59"),
            (Some(86_400), "1d00h"),
            (Some(6 * 86_400 + 19 * 3600), "6d19h"),
            (Some(7 * 86_400), "1w0d"),
            (Some(13 * 86_400 + 3600), "1w6d"),
            (Some(365 * 86_400), "1y0w"),
            (Some((365 + 200) * 86_400), "1y28w"),
        ];
        for (secs, want) in cases {
            assert_eq!(up_down(secs), want, "{secs:?}");
        }
    }

    #[test]
    fn json_round_trip() {
        let s = hub();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["listen_ranges"][0][1], "Spokes");
        assert_eq!(v["neighbors"][1]["up_down_secs"], serde_json::Value::Null);
    }
}

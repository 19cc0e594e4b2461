//! `show bgp` (IOS `show bgp ipv4 unicast`): every path of every prefix
//! with its status codes, as data ([`Rib::table`], sent on the control
//! socket as a [`TableView`]) and as IOS text ([`render_table`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Path, PeerId, Rib, Source, Step};
use crate::bgp::types::{AsSegment, Origin};
use crate::net::Ipv4Prefix;

/// One path, one line of `show bgp`. The flags are IOS's status codes.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowPath {
    pub prefix: Ipv4Prefix,
    /// `*`: every path in the table passed the inbound checks.
    pub valid: bool,
    /// `>`.
    pub best: bool,
    /// `s`: inside a `summary-only` aggregate.
    pub suppressed: bool,
    /// `i`: learned over iBGP.
    pub internal: bool,
    pub next_hop: Ipv4Addr,
    /// MED.
    pub metric: Option<u32>,
    /// LOCAL_PREF (IOS shows it for iBGP-learned paths).
    pub local_pref: Option<u32>,
    pub weight: u32,
    /// AS_PATH as IOS prints it: `65002 65003 {65004,65005}`.
    pub path: String,
    /// `i`, `e` or `?`.
    pub origin: char,
    /// `network`, `aggregate`, `redistribute`, or the peer.
    pub source: String,
    pub peer: Option<PeerId>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// For the best path: the best-path step that chose it.
    pub reason: Option<Step>,
}

/// What the daemon answers to `show bgp`: the rows and the two numbers of
/// the header, for [`render_table`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    pub version: u64,
    pub router_id: Ipv4Addr,
    pub rows: Vec<ShowPath>,
}

impl TableView {
    /// The IOS text.
    pub fn render(&self) -> String {
        render_table(self.version, self.router_id, &self.rows)
    }
}

pub(super) fn as_path_string(path: &[AsSegment]) -> String {
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

fn show_path(prefix: Ipv4Prefix, p: &Path, suppressed: bool, best: Option<Step>) -> ShowPath {
    ShowPath {
        prefix,
        valid: true,
        best: best.is_some(),
        suppressed,
        internal: p.peer.is_some_and(|f| f.ibgp),
        next_hop: p.attrs.next_hop,
        metric: p.attrs.med,
        local_pref: if p.peer.is_some_and(|f| f.ibgp) {
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
        peer: p.source.peer(),
        originator_id: p.attrs.originator_id,
        cluster_list: p.attrs.cluster_list.clone(),
        reason: best,
    }
}

impl Rib {
    /// Every path of every prefix, prefixes in order, the best path first.
    pub fn table(&self) -> Vec<ShowPath> {
        let mut rows = Vec::new();
        for (&prefix, d) in &self.loc.table {
            let best = d.best.as_ref();
            if let Some((b, step)) = best {
                rows.push(show_path(prefix, b, d.suppressed, Some(*step)));
            }
            for p in &d.paths {
                if best.is_some_and(|(b, _)| b.source == p.source) {
                    continue;
                }
                rows.push(show_path(prefix, p, d.suppressed, None));
            }
        }
        rows
    }

    /// `show bgp` as the control socket sends it.
    pub fn view(&self) -> TableView {
        TableView {
            version: self.table_version(),
            router_id: self.router_id(),
            rows: self.table(),
        }
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
pub fn render_table(version: u64, router_id: Ipv4Addr, rows: &[ShowPath]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "BGP table version is {version}, local router ID is {router_id}"
    );
    out.push_str("Status codes: s suppressed, * valid, > best, i - internal\n");
    out.push_str("Origin codes: i - IGP, e - EGP, ? - incomplete\n\n");
    out.push_str("     Network          Next Hop            Metric LocPrf Weight Path\n");
    let mut last: Option<Ipv4Prefix> = None;
    for r in rows {
        let status = if r.suppressed { 's' } else { '*' };
        let best = if r.best { '>' } else { ' ' };
        let internal = if r.internal { 'i' } else { ' ' };
        let network = if last == Some(r.prefix) {
            String::new()
        } else {
            r.prefix.to_string()
        };
        last = Some(r.prefix);
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

//! BGP: `show bgp summary` and `show bgp`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Everything `show bgp summary` prints (IOS `show ip bgp summary`).
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

/// One path, one line of `show bgp` (IOS `show bgp ipv4 unicast`). The
/// flags are IOS's status codes.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowPath {
    /// "a.b.c.d/len".
    pub prefix: String,
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
    /// The number the speaker gave the session the path came from.
    pub peer: Option<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// For the best path: the best-path step that chose it, in kebab case
    /// (`only`, `weight`, `local-pref`, ..., `neighbor-address`).
    pub reason: Option<String>,
}

/// What the daemon answers to `show bgp`: the rows and the two numbers of
/// the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableView {
    pub version: u64,
    pub router_id: Ipv4Addr,
    pub rows: Vec<ShowPath>,
}

//! NHRP (RFC 2332) as FlexVPN hubs and spokes speak it over GRE (protocol
//! type 0x2001), with Cisco's Traffic Indication (draft-detienne-dmvpn):
//!
//! - the hub ([`redirect::Redirector`]) sends a Traffic Indication to a
//!   spoke whose traffic to another spoke passed through it, and forwards
//!   Resolution Requests and replies between spokes; it keeps no cache;
//! - a spoke ([`shortcut::Shortcuts`]) resolves the destination through
//!   the hub; the spoke that owns it opens an IKEv2 session to the
//!   requester and answers over it; the requester routes the destination
//!   through the new tunnel until the entry's holding time runs out.
//!
//! Both are state machines without I/O; [`task`] owns the datapath,
//! timers and IKE side.

pub mod redirect;
pub mod shortcut;
pub mod task;
pub mod wire;

use std::{fmt::Write as _, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

/// Hop count of the NHRP packets we originate (RFC 2332 section 5.2.0.1:
/// "set to a value sufficient to reach the destination").
pub const HOP_COUNT: u8 = 16;

/// Resolution Request flags (RFC 2332 section 5.2.1): Q, the requester is
/// a router.
pub const FLAG_Q: u16 = 0x8000;
/// Resolution Reply: A, the answer is authoritative (the owner gave it).
pub const FLAG_A: u16 = 0x4000;
/// Purge Request: N, no Purge Reply wanted (section 5.2.5).
pub const FLAG_N: u16 = 0x8000;

/// Error codes of the Error Indication (RFC 2332 section 5.2.7).
pub mod error_code {
    pub const LOOP_DETECTED: u16 = 3;
    pub const PROTOCOL_ADDRESS_UNREACHABLE: u16 = 6;
    pub const HOP_COUNT_EXCEEDED: u16 = 15;
}

/// CIE code of a negative Resolution Reply: no binding exists (section
/// 5.2.2).
pub const CIE_NO_BINDING: u8 = 12;

/// This box as NHRP knows it: its NBMA (outer) address and its address
/// inside the tunnels (the protocol address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Station {
    pub nbma: Ipv4Addr,
    pub protocol: Ipv4Addr,
}

/// What `show ip nhrp traffic` counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NhrpTraffic {
    pub redirects_sent: u64,
    /// Hairpin events inside the redirect timeout of their pair.
    pub redirects_suppressed: u64,
    pub redirects_received: u64,
    pub resolution_requests_sent: u64,
    pub resolution_requests_received: u64,
    pub resolution_requests_forwarded: u64,
    pub resolution_replies_sent: u64,
    pub resolution_replies_received: u64,
    pub resolution_replies_forwarded: u64,
    pub error_indications_sent: u64,
    pub error_indications_received: u64,
    pub purge_requests_sent: u64,
    pub purge_requests_received: u64,
    pub purge_replies_received: u64,
    pub shortcuts_installed: u64,
    pub shortcuts_expired: u64,
    pub shortcuts_purged: u64,
    pub tunnels_opened: u64,
    pub tunnels_closed: u64,
    /// Packets that did not parse, or that this box cannot act on.
    pub malformed: u64,
}

/// One row of `show ip nhrp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NhrpEntryView {
    /// The prefix the entry resolves (`192.168.2.0/24`, or a peer's
    /// tunnel address `/32`).
    pub target: String,
    /// The peer's tunnel address (the next hop).
    pub via: Ipv4Addr,
    /// The peer's outer address.
    pub nbma: Ipv4Addr,
    pub interface: String,
    pub created_s: u64,
    pub expires_s: u64,
    /// IOS's: `router`, `rib`, `nho` (a shortcut), `nhop` (a next hop), and
    /// `dynamic` (learnt, not configured: every entry here).
    pub flags: Vec<String>,
}

/// `show ip nhrp`: the cache. A hub's is always empty (FlexVPN hubs only
/// redirect).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NhrpView {
    /// `hub`, `spoke`, or `off` when no interface has NHRP.
    pub role: String,
    pub entries: Vec<NhrpEntryView>,
}

/// What `clear ip nhrp` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NhrpCleared {
    pub entries: usize,
    pub tunnels_closed: usize,
    /// Redirect rate-limit slots forgotten (a hub).
    pub redirect_pairs: usize,
}

/// IOS's `hh:mm:ss`, or `NdNNh` beyond a day.
fn clock(seconds: u64) -> String {
    if seconds >= 86_400 {
        format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600)
    } else {
        format!(
            "{:02}:{:02}:{:02}",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )
    }
}

/// `show ip nhrp` in the IOS layout.
pub fn render_entries(view: &NhrpView) -> String {
    let mut out = String::new();
    if view.role == "off" {
        return "NHRP is not enabled on any interface (nhrp_network_id).\n".to_owned();
    }
    if view.entries.is_empty() && view.role == "hub" {
        return "No NHRP entries: this hub only redirects (FlexVPN hubs keep no cache).\n"
            .to_owned();
    }
    for e in &view.entries {
        let _ = writeln!(out, "{} via {}", e.target, e.via);
        let _ = writeln!(
            out,
            "   {} created {}, expire {}",
            e.interface,
            clock(e.created_s),
            clock(e.expires_s)
        );
        let kind = if e.flags.iter().any(|f| f == "dynamic") {
            "dynamic"
        } else {
            "static"
        };
        let flags: Vec<&str> = e
            .flags
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "dynamic")
            .collect();
        let _ = writeln!(out, "   Type: {kind}, Flags: {}", flags.join(" "));
        let _ = writeln!(out, "   NBMA address: {}", e.nbma);
    }
    out
}

/// `show ip nhrp traffic` in the spirit of IOS's.
pub fn render_traffic(t: &NhrpTraffic) -> String {
    let rows = [
        ("Traffic Indication (redirect) sent", t.redirects_sent),
        ("Traffic Indication suppressed", t.redirects_suppressed),
        ("Traffic Indication received", t.redirects_received),
        ("Resolution Request sent", t.resolution_requests_sent),
        (
            "Resolution Request received",
            t.resolution_requests_received,
        ),
        (
            "Resolution Request forwarded",
            t.resolution_requests_forwarded,
        ),
        ("Resolution Reply sent", t.resolution_replies_sent),
        ("Resolution Reply received", t.resolution_replies_received),
        ("Resolution Reply forwarded", t.resolution_replies_forwarded),
        ("Error Indication sent", t.error_indications_sent),
        ("Error Indication received", t.error_indications_received),
        ("Purge Request sent", t.purge_requests_sent),
        ("Purge Request received", t.purge_requests_received),
        ("Purge Reply received", t.purge_replies_received),
        ("Shortcuts installed", t.shortcuts_installed),
        ("Shortcuts expired", t.shortcuts_expired),
        ("Shortcuts purged", t.shortcuts_purged),
        ("Shortcut tunnels opened", t.tunnels_opened),
        ("Shortcut tunnels closed", t.tunnels_closed),
        ("Malformed or unusable packets", t.malformed),
    ];
    let mut out = String::new();
    for (what, n) in rows {
        let _ = writeln!(out, "  {n:>8} {what}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_in_the_ios_layout() {
        let view = NhrpView {
            role: "spoke".into(),
            entries: vec![NhrpEntryView {
                target: "192.168.2.0/24".into(),
                via: Ipv4Addr::new(10, 1, 1, 102),
                nbma: Ipv4Addr::new(172, 16, 1, 102),
                interface: "Virtual-Access1".into(),
                created_s: 5,
                expires_s: 3594,
                flags: vec![
                    "router".into(),
                    "rib".into(),
                    "nho".into(),
                    "dynamic".into(),
                ],
            }],
        };
        let text = render_entries(&view);
        assert_eq!(
            text,
            "192.168.2.0/24 via 10.1.1.102\n   Virtual-Access1 created 00:00:05, expire 00:59:54\n   \
             Type: dynamic, Flags: router rib nho\n   NBMA address: 172.16.1.102\n"
        );
        assert!(
            render_entries(&NhrpView {
                role: "hub".into(),
                entries: vec![]
            })
            .contains("only redirects")
        );
        assert_eq!(clock(90_000), "1d01h");
        let traffic = render_traffic(&NhrpTraffic {
            redirects_sent: 3,
            ..NhrpTraffic::default()
        });
        assert!(
            traffic.contains("       3 Traffic Indication (redirect) sent"),
            "{traffic}"
        );
    }
}

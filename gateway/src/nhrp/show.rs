//! `show ip nhrp`, `show ip nhrp traffic` and `clear ip nhrp` as text, in
//! the IOS layout, from the views the daemon sends.

use std::fmt::Write as _;

use gateway_report::nhrp::{NhrpCleared, NhrpTraffic, NhrpView};

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

/// What `clear ip nhrp` did, in one line.
pub fn render_cleared(c: &NhrpCleared) -> String {
    format!(
        "NHRP cleared: {} entries, {} shortcut tunnels closing, {} redirect limits reset\n",
        c.entries, c.tunnels_closed, c.redirect_pairs
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use gateway_report::nhrp::NhrpEntryView;

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

//! `show xdp` as a table: where the filter is attached, its settings, the
//! packets of each verdict, and the inbound SAs it passes.

use std::fmt::Write as _;

use gateway_report::xdp::XdpReport;

/// `show xdp` as a table.
pub fn render_xdp(report: &XdpReport) -> String {
    let mut out = String::new();
    match (&report.interface, &report.mode) {
        (Some(interface), Some(mode)) => {
            let _ = writeln!(out, "XDP uplink filter on {interface} ({mode} mode)");
        }
        _ => out.push_str("XDP uplink filter loaded, not attached\n"),
    }
    if report.ike_rate_per_s == 0 {
        out.push_str("IKE rate limit: off\n");
    } else {
        let _ = writeln!(
            out,
            "IKE rate limit: {} packets/s per source, burst {}",
            report.ike_rate_per_s, report.ike_burst
        );
    }
    if report.spread_cpus == 0 {
        out.push_str("ESP spreading: off (passed on the receiving CPU)\n");
    } else {
        let _ = writeln!(
            out,
            "ESP spreading: over {} CPUs by SPI hash (CPU map redirect)",
            report.spread_cpus
        );
    }
    let _ = writeln!(
        out,
        "\n{:<30} {:>8} {:>14} {:>16}",
        "Verdict", "Action", "Packets", "Bytes"
    );
    for v in &report.verdicts {
        let _ = writeln!(
            out,
            "{:<30} {:>8} {:>14} {:>16}",
            v.verdict, v.action, v.packets, v.bytes
        );
    }
    let _ = writeln!(out, "\nInbound SAs: {}", report.sas.len());
    if !report.sas.is_empty() {
        let _ = writeln!(
            out,
            "{:<12} {:>14} {:>16}  Last seen",
            "SPI", "Packets", "Bytes"
        );
        for sa in &report.sas {
            let seen = match sa.last_seen_ms_ago {
                None => "never".to_owned(),
                Some(ms) => format!("{}.{}s ago", ms / 1000, (ms % 1000) / 100),
            };
            let _ = writeln!(
                out,
                "{:<12} {:>14} {:>16}  {seen}",
                format!("{:#010x}", sa.spi),
                sa.packets,
                sa.bytes
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gateway_report::xdp::{SaReport, VerdictReport};

    use super::*;

    #[test]
    fn xdp_table_shows_counters_and_sas() {
        let report = XdpReport {
            interface: Some("veth0".into()),
            mode: Some("native".into()),
            ike_rate_per_s: 20,
            ike_burst: 40,
            spread_cpus: 4,
            verdicts: vec![
                VerdictReport {
                    verdict: "pass_ike".into(),
                    action: "pass".into(),
                    drop: false,
                    packets: 3,
                    bytes: 210,
                },
                VerdictReport {
                    verdict: "redirect_esp_in_udp".into(),
                    action: "redirect".into(),
                    drop: false,
                    packets: 5,
                    bytes: 700,
                },
            ],
            sas: vec![
                SaReport {
                    spi: 0xc0ff_ee01,
                    packets: 2,
                    bytes: 200,
                    last_seen_ms_ago: Some(1500),
                },
                SaReport {
                    spi: 7,
                    packets: 0,
                    bytes: 0,
                    last_seen_ms_ago: None,
                },
            ],
        };
        let text = render_xdp(&report);
        assert!(
            text.starts_with("XDP uplink filter on veth0 (native mode)\n"),
            "{text}"
        );
        assert!(text.contains("20 packets/s per source, burst 40"));
        assert!(text.contains("ESP spreading: over 4 CPUs"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("pass_ike") && l.ends_with("210") && l.contains(" 3 "))
        );
        assert!(
            text.lines().any(|l| l.starts_with("redirect_esp_in_udp")
                && l.contains(" redirect ")
                && l.ends_with("700")),
            "{text}"
        );
        let off = render_xdp(&XdpReport {
            spread_cpus: 0,
            ..report.clone()
        });
        assert!(off.contains("ESP spreading: off"), "{off}");
        assert!(text.contains("0xc0ffee01") && text.contains("1.5s ago"));
        assert!(
            text.lines()
                .any(|l| l.starts_with("0x00000007") && l.ends_with("never"))
        );
    }
}

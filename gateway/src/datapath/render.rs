//! `show interfaces virtual-access` as text: one block per interface in
//! the spirit of IOS `show interfaces`, then the SAs, then the drops.

use std::fmt::Write as _;

use crate::iface::DatapathReport;

pub fn render_interfaces(report: &DatapathReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Datapath: {} ({} worker{})",
        report.kind,
        report.workers,
        if report.workers == 1 { "" } else { "s" }
    );
    if report.virtual_access.is_empty() {
        out.push_str("\nNo virtual-access interfaces.\n");
    }
    for va in &report.virtual_access {
        let inner = va
            .peer_inner
            .map_or_else(|| "none".to_owned(), |a| a.to_string());
        let _ = writeln!(out, "\n{} is up, line protocol is up", va.name);
        let _ = writeln!(
            out,
            "  Peer {} (outer {}), MTU {} bytes",
            inner, va.remote_outer, va.mtu
        );
        let _ = writeln!(
            out,
            "  {} packets input, {} bytes; {} packets output, {} bytes",
            va.rx_packets, va.rx_bytes, va.tx_packets, va.tx_bytes
        );
        let _ = writeln!(
            out,
            "  {} spoofed sources dropped, {} too big (ICMP sent), {} hairpinned",
            va.rx_spoofed, va.tx_too_big, va.hairpinned
        );
    }
    if !report.sas.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<18} {:<10} {:<10} {:>10} {:>10} {:>8} {:>8}",
            "Interface", "SPI in", "SPI out", "Pkts in", "Pkts out", "Replay", "Auth"
        );
        for sa in &report.sas {
            let _ = writeln!(
                out,
                "{:<18} {:<10} {:<10} {:>10} {:>10} {:>8} {:>8}",
                sa.va.to_string(),
                format!("{:08x}", sa.spi_in),
                format!("{:08x}", sa.spi_out),
                sa.rx_packets,
                sa.tx_packets,
                sa.replayed,
                sa.auth_failed
            );
        }
    }
    let g = &report.global;
    let _ = writeln!(
        out,
        "\nDrops: unknown SPI {}, malformed {}, no route {}, wrong endpoint {}",
        g.unknown_spi, g.malformed, g.no_route, g.wrong_endpoint
    );
    let _ = writeln!(
        out,
        "Events: NHRP to control {}, hairpin {} (lost {})",
        g.nhrp_to_control, g.hairpin_events, g.hairpin_events_lost
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::{SaCounters, VaCounters, VaId};

    #[test]
    fn renders_interfaces_sas_and_drops() {
        let report = DatapathReport {
            kind: "userspace".into(),
            workers: 2,
            virtual_access: vec![VaCounters {
                id: VaId::virtual_access(1),
                name: "Virtual-Access1".into(),
                peer_inner: Some(
                    "10.1.1.100"
                        .parse()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                ),
                remote_outer: "172.16.1.2:4500".into(),
                mtu: 1400,
                rx_packets: 5,
                rx_spoofed: 1,
                ..VaCounters::default()
            }],
            sas: vec![SaCounters {
                va: VaId::virtual_access(1),
                spi_in: 0xc000_0001,
                spi_out: 0x0bad_cafe,
                rx_packets: 5,
                ..SaCounters::default()
            }],
            global: crate::iface::GlobalCounters {
                unknown_spi: 3,
                ..Default::default()
            },
        };
        let text = render_interfaces(&report);
        assert!(text.contains("Datapath: userspace (2 workers)"), "{text}");
        assert!(
            text.contains("Virtual-Access1 is up, line protocol is up"),
            "{text}"
        );
        assert!(
            text.contains("Peer 10.1.1.100 (outer 172.16.1.2:4500), MTU 1400"),
            "{text}"
        );
        assert!(text.contains("1 spoofed sources dropped"), "{text}");
        assert!(text.contains("c0000001   0badcafe"), "{text}");
        assert!(text.contains("unknown SPI 3"), "{text}");
    }
}

//! `show interfaces virtual-access` as text: one block per interface in
//! the spirit of IOS `show interfaces`, then the SAs, then the datapath's
//! drops and events. Every counter of each set is printed, by iterating the
//! set (`gateway_report::interfaces`), so none can be counted unseen.

use std::fmt::Write as _;

use gateway_report::{
    counters::{Counter, Counters},
    interfaces::{DatapathReport, SaCounter},
};

use crate::iface::VaId;

/// Counters per line in the interface and datapath blocks.
const PER_LINE: usize = 4;

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
        counter_lines(&mut out, va);
    }
    if !report.sas.is_empty() {
        let _ = write!(
            out,
            "\n{:<18} {:<10} {:<10}",
            "Interface", "SPI in", "SPI out"
        );
        for &c in SaCounter::ALL {
            let _ = write!(out, " {:>w$}", c.label(), w = column(c));
        }
        out.push('\n');
        for sa in &report.sas {
            let _ = write!(
                out,
                "{:<18} {:<10} {:<10}",
                VaId::from_raw(sa.va).to_string(),
                format!("{:08x}", sa.spi_in),
                format!("{:08x}", sa.spi_out),
            );
            for &c in SaCounter::ALL {
                let _ = write!(out, " {:>w$}", sa.get(c), w = column(c));
            }
            out.push('\n');
        }
    }
    out.push_str("\nDatapath counters:\n");
    counter_lines(&mut out, &report.global);
    out
}

/// "  5 packets input, 420 bytes input, ...", [`PER_LINE`] to a line.
fn counter_lines<R: Counters>(out: &mut String, report: &R) {
    for line in <R::Id as Counter>::ALL.chunks(PER_LINE) {
        let items: Vec<String> = line
            .iter()
            .map(|&c| format!("{} {}", report.get(c), c.label()))
            .collect();
        let _ = writeln!(out, "  {}", items.join(", "));
    }
}

/// The width of an SA counter's column.
fn column(c: SaCounter) -> usize {
    c.label().len().max(10)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gateway_report::interfaces::{
        GlobalCounter, GlobalCounters, SaCounters, VaCounter, VaCounters,
    };

    use super::*;

    fn report() -> DatapathReport {
        DatapathReport {
            kind: "userspace".into(),
            workers: 2,
            virtual_access: vec![VaCounters {
                id: VaId::virtual_access(1).raw(),
                name: "Virtual-Access1".into(),
                peer_inner: Some(std::net::Ipv4Addr::new(10, 1, 1, 100)),
                remote_outer: "172.16.1.2:4500".into(),
                mtu: 1400,
                rx_packets: 5,
                rx_spoofed: 1,
                ..VaCounters::default()
            }],
            sas: vec![SaCounters {
                va: VaId::virtual_access(1).raw(),
                spi_in: 0xc000_0001,
                spi_out: 0x0bad_cafe,
                rx_packets: 5,
                ..SaCounters::default()
            }],
            global: GlobalCounters {
                unknown_spi: 3,
                ..Default::default()
            },
        }
    }

    #[test]
    fn renders_interfaces_sas_and_drops() {
        let text = render_interfaces(&report());
        assert!(text.contains("Datapath: userspace (2 workers)"), "{text}");
        assert!(
            text.contains("Virtual-Access1 is up, line protocol is up"),
            "{text}"
        );
        assert!(
            text.contains("Peer 10.1.1.100 (outer 172.16.1.2:4500), MTU 1400"),
            "{text}"
        );
        assert!(text.contains("  5 packets input, 0 bytes input,"), "{text}");
        assert!(text.contains("1 spoofed sources dropped"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Virtual-Access1    c0000001   0badcafe")),
            "{text}"
        );
        assert!(text.contains("3 unknown SPI"), "{text}");
    }

    /// Every counter of every set is printed with its label: give each a
    /// value of its own and find it.
    #[test]
    fn every_counter_is_shown() {
        let mut r = report();
        let va = &mut r.virtual_access[0];
        for (v, &c) in (1001..).zip(VaCounter::ALL) {
            va.set(c, v);
        }
        for (v, &c) in (2001..).zip(SaCounter::ALL) {
            r.sas[0].set(c, v);
        }
        for (v, &c) in (3001..).zip(GlobalCounter::ALL) {
            r.global.set(c, v);
        }
        let text = render_interfaces(&r);
        for (v, &c) in (1001..).zip(VaCounter::ALL) {
            assert!(
                text.contains(&format!("{v} {}", c.label())),
                "{c:?}: {text}"
            );
        }
        for (v, &c) in (3001..).zip(GlobalCounter::ALL) {
            assert!(
                text.contains(&format!("{v} {}", c.label())),
                "{c:?}: {text}"
            );
        }
        let header = text.lines().find(|l| l.starts_with("Interface")).unwrap();
        let row = text.lines().find(|l| l.contains("c0000001")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().skip(3).collect();
        for (i, (v, &c)) in (2001..).zip(SaCounter::ALL).enumerate() {
            assert!(header.contains(c.label()), "{c:?}: {header}");
            assert_eq!(cells.get(i), Some(&v.to_string().as_str()), "{c:?}: {row}");
        }
    }
}

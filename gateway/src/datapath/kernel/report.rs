//! `show interfaces virtual-access` from the kernel's own counters: the
//! links' (`IFLA_STATS64`), the SAs' (XFRM), the hairpin detector's and the
//! NHRP reader's. Each counter of the report's sets is matched to its
//! source here, so a counter added to a set must be given one.

use std::sync::PoisonError;

use gateway_report::{
    counters::{Counter, Counters},
    interfaces::{DatapathReport, GlobalCounter, SaCounter, SaCounters, VaCounter, VaCounters},
};

use std::net::Ipv4Addr;

use super::{KernelDatapath, nhrp::NhrpCounters};
use crate::{
    datapath::hairpin::HairpinReport,
    iface::{VaId, VirtualAccessSpec},
    sys::{netlink::LinkStats, xfrm::XfrmStateStats},
};

/// An SA pair's SPIs in and out, our address and the peer's.
type PairIds = (u32, u32, Ipv4Addr, Ipv4Addr);

impl KernelDatapath {
    pub(super) fn counters(&self) -> DatapathReport {
        let hairpin = self.hairpin.as_ref().and_then(|m| {
            m.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .report()
                .ok()
        });
        let nhrp = self.nhrp_counters();
        let mut report = DatapathReport {
            kind: "kernel".into(),
            workers: 0,
            ..DatapathReport::default()
        };
        for &c in GlobalCounter::ALL {
            report
                .global
                .set(c, global_counter(c, hairpin.as_ref(), &nhrp));
        }
        let mut s = self.state();
        let vas: Vec<(VaId, VirtualAccessSpec, Option<u32>, Vec<PairIds>)> = s
            .vas
            .iter()
            .map(|(id, v)| {
                let pairs = v
                    .pairs
                    .iter()
                    .map(|p| (p.spi_in, p.spi_out, p.local, p.remote))
                    .collect();
                (*id, v.spec.clone(), v.ifindex, pairs)
            })
            .collect();
        for (id, spec, ifindex, pairs) in vas {
            let mut row = VaCounters {
                id: id.raw(),
                name: spec.name.clone(),
                peer_inner: spec.peer_inner,
                remote_outer: spec.remote_outer.to_string(),
                mtu: spec.mtu,
                ..VaCounters::default()
            };
            // A tunnel-mode peer has no link; a link that cannot be read
            // shows zeros.
            let link = ifindex
                .and_then(|i| s.nl.link_stats(i).ok())
                .unwrap_or_default();
            for &c in VaCounter::ALL {
                row.set(c, va_counter(c, &link));
            }
            report.virtual_access.push(row);
            // Oldest first; a deferred outbound state not yet added counts
            // zero.
            for (spi_in, spi_out, local, remote) in pairs {
                let rx = s.xfrm.get_state_stats(local, spi_in).unwrap_or_default();
                let tx = s.xfrm.get_state_stats(remote, spi_out).unwrap_or_default();
                let mut row = SaCounters {
                    va: id.raw(),
                    spi_in,
                    spi_out,
                    ..SaCounters::default()
                };
                for &c in SaCounter::ALL {
                    row.set(c, sa_counter(c, &rx, &tx));
                }
                report.sas.push(row);
            }
        }
        report
    }
}

/// The datapath-wide counters. What the kernel counts only host-wide
/// (`/proc/net/xfrm_stat`, the SNMP counters of `nstat`) and not per
/// datapath stays 0.
fn global_counter(c: GlobalCounter, hairpin: Option<&HairpinReport>, nhrp: &NhrpCounters) -> u64 {
    match c {
        GlobalCounter::NhrpToControl => nhrp.delivered,
        GlobalCounter::HairpinEvents => hairpin.map_or(0, |h| h.delivered),
        GlobalCounter::HairpinEventsLost => {
            hairpin.map_or(0, |h| h.lost_ring_full + h.lost_queue_full)
        }
        GlobalCounter::UnknownSpi
        | GlobalCounter::Malformed
        | GlobalCounter::NoRoute
        | GlobalCounter::WrongEndpoint
        | GlobalCounter::TtlExpired => 0,
    }
}

/// A virtual-access's counters: its GRE link's. Spoofed sources (the
/// kernel's rp_filter), PMTU errors and forwarding are not counted per
/// link.
fn va_counter(c: VaCounter, link: &LinkStats) -> u64 {
    match c {
        VaCounter::RxPackets => link.rx_packets,
        VaCounter::RxBytes => link.rx_bytes,
        VaCounter::TxPackets => link.tx_packets,
        VaCounter::TxBytes => link.tx_bytes,
        VaCounter::RxSpoofed | VaCounter::TxTooBig | VaCounter::Hairpinned => 0,
    }
}

/// An SA pair's counters: the inbound state's (`rx`) and the outbound
/// one's (`tx`).
fn sa_counter(c: SaCounter, rx: &XfrmStateStats, tx: &XfrmStateStats) -> u64 {
    match c {
        SaCounter::RxPackets => rx.packets,
        SaCounter::RxBytes => rx.bytes,
        SaCounter::TxPackets => tx.packets,
        SaCounter::TxBytes => tx.bytes,
        SaCounter::Replayed => u64::from(rx.replayed) + u64::from(rx.outside_window),
        SaCounter::AuthFailed => u64::from(rx.integrity_failed),
    }
}

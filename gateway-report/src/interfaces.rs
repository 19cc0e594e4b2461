//! The datapath: `show interfaces virtual-access` (interfaces, SAs, datapath-wide counters).
//!
//! Each counter set is declared once ([`crate::counters`]): the userspace
//! datapath counts in slots indexed by [`VaCounter`], [`SaCounter`] and
//! [`GlobalCounter`], the kernel datapath maps its sources onto them, and
//! the text view prints every one.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::counters::counters;

counters! {
    /// One virtual-access (inner packets), as IOS `show interfaces`.
    pub struct VaCounters {
        /// The interface handle: N of `Virtual-AccessN`, or 2^31 + N for a
        /// spoke's `TunnelN`.
        pub id: u32,
        pub name: String,
        pub peer_inner: Option<Ipv4Addr>,
        pub remote_outer: String,
        pub mtu: u16,
    }
    /// The counters of [`VaCounters`].
    pub enum VaCounter {
        /// Inner packets received from the peer and accepted.
        RxPackets(rx_packets) = "packets input",
        /// Their bytes.
        RxBytes(rx_bytes) = "bytes input",
        /// Inner packets sent to the peer.
        TxPackets(tx_packets) = "packets output",
        /// Their bytes.
        TxBytes(tx_bytes) = "bytes output",
        /// Inbound packets whose inner source the spoke may not use.
        RxSpoofed(rx_spoofed) = "spoofed sources dropped",
        /// Outbound packets refused for size with DF set (ICMP sent back).
        TxTooBig(tx_too_big) = "too big (ICMP sent)",
        /// Packets that came in here and left through another virtual-access.
        Hairpinned(hairpinned) = "hairpinned",
    }
}

counters! {
    /// One SA pair (ESP packets).
    pub struct SaCounters {
        /// The interface handle, as [`VaCounters::id`].
        pub va: u32,
        pub spi_in: u32,
        pub spi_out: u32,
    }
    /// The counters of [`SaCounters`]; the labels head the table's columns.
    pub enum SaCounter {
        /// ESP packets received and authenticated.
        RxPackets(rx_packets) = "Pkts in",
        /// Their bytes.
        RxBytes(rx_bytes) = "Bytes in",
        /// ESP packets sent.
        TxPackets(tx_packets) = "Pkts out",
        /// Their bytes.
        TxBytes(tx_bytes) = "Bytes out",
        /// Inbound packets dropped as replays or too old for the window
        /// (RFC 4303 section 3.4.3).
        Replayed(replayed) = "Replay",
        /// Inbound packets whose ICV did not verify.
        AuthFailed(auth_failed) = "Auth fail",
    }
}

counters! {
    /// Datapath-wide drop and event counters.
    pub struct GlobalCounters {}
    /// The counters of [`GlobalCounters`].
    pub enum GlobalCounter {
        /// ESP with an SPI of no installed SA.
        UnknownSpi(unknown_spi) = "unknown SPI",
        /// Packets that do not parse (ESP, GRE, inner IPv4).
        Malformed(malformed) = "malformed",
        /// Packets with no route, or routed to an interface without an SA.
        NoRoute(no_route) = "no route",
        /// ESP for a known SPI from another address than the SA's peer.
        WrongEndpoint(wrong_endpoint) = "wrong endpoint",
        /// NHRP packets (GRE protocol 0x2001) handed to the control plane.
        NhrpToControl(nhrp_to_control) = "NHRP to control",
        /// Hairpin events (spoke to spoke through the hub) sent to NHRP.
        HairpinEvents(hairpin_events) = "hairpin events",
        /// Hairpin events lost because the control plane's queue was full
        /// (the userspace datapath counts lost NHRP packets here too).
        HairpinEventsLost(hairpin_events_lost) = "hairpin events lost",
        /// Forwarded packets dropped because their TTL ran out (RFC 1812
        /// section 5.3.1).
        TtlExpired(ttl_expired) = "TTL expired",
    }
}

impl VaCounters {
    /// The peer's outer address, the IP part of `remote_outer`
    /// (`172.25.1.11:4500`).
    pub fn outer_ip(&self) -> Option<Ipv4Addr> {
        self.remote_outer
            .rsplit_once(':')
            .map_or(self.remote_outer.as_str(), |(ip, _)| ip)
            .parse()
            .ok()
    }

    /// A cloned `Virtual-AccessN` (on a spoke: a spoke-to-spoke shortcut
    /// tunnel), not a static `TunnelN`.
    pub fn is_virtual_access(&self) -> bool {
        self.name.starts_with("Virtual-Access")
    }
}

/// What `show interfaces virtual-access` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathReport {
    /// `kernel` or `userspace`.
    pub kind: String,
    /// Worker threads (0 for the kernel datapath).
    pub workers: usize,
    pub virtual_access: Vec<VaCounters>,
    pub sas: Vec<SaCounters>,
    pub global: GlobalCounters,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::counters::tests::check_set;

    #[test]
    fn every_counter_is_a_field_of_its_report() {
        check_set::<VaCounters>();
        check_set::<SaCounters>();
        check_set::<GlobalCounters>();
        assert_eq!(VaCounter::COUNT, 7);
        assert_eq!(SaCounter::COUNT, 6);
        assert_eq!(GlobalCounter::COUNT, 8);
    }

    /// The JSON as the gateway printed it before the counters were
    /// declared once (with `ttl_expired` added at the end).
    const JSON: &str = r#"{"kind":"userspace","workers":2,"virtual_access":[{"id":1,"name":"Virtual-Access1","peer_inner":"10.1.1.100","remote_outer":"172.16.1.2:4500","mtu":1400,"rx_packets":5,"rx_bytes":420,"tx_packets":3,"tx_bytes":300,"rx_spoofed":1,"tx_too_big":0,"hairpinned":2}],"sas":[{"va":1,"spi_in":3221225473,"spi_out":195939070,"rx_packets":5,"rx_bytes":600,"tx_packets":3,"tx_bytes":400,"replayed":0,"auth_failed":1}],"global":{"unknown_spi":3,"malformed":0,"no_route":0,"wrong_endpoint":0,"nhrp_to_control":4,"hairpin_events":1,"hairpin_events_lost":0,"ttl_expired":1}}"#;

    #[test]
    fn json_keeps_its_field_names_and_order() {
        let report: DatapathReport = serde_json::from_str(JSON).unwrap();
        assert_eq!(
            report.virtual_access[0].peer_inner,
            Some(Ipv4Addr::new(10, 1, 1, 100))
        );
        assert_eq!(report.sas[0].spi_in, 0xc000_0001);
        assert_eq!(report.global.ttl_expired, 1);
        assert_eq!(serde_json::to_string(&report).unwrap(), JSON);
    }
}

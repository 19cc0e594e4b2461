//! IPsec: `show crypto ipsec sa`, the CHILD_SAs per interface as IKE
//! negotiated them ([`crate::ike::ChildReport`]) with the datapath's
//! counters of each SA ([`crate::interfaces::SaCounters`], joined by the
//! inbound SPI).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ike::IpsecMode;

/// What `show crypto ipsec sa` prints: one entry per interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsecSaReport {
    pub interfaces: Vec<IpsecInterface>,
}

/// One interface (`Virtual-Access1`, a spoke's `Tunnel1`) and its SA pairs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsecInterface {
    /// The datapath's name of the interface the SAs are installed on;
    /// `None` while the datapath has none of them (being installed).
    pub interface: Option<String>,
    /// The IKE SA (`show crypto ikev2 sa`'s Tunnel-id); `None` for a
    /// spoke's own tunnel to its hub.
    pub tunnel_id: Option<u32>,
    /// IOS `local crypto endpt.`: our outer address (unknown for a spoke's
    /// tunnel).
    pub local: Option<Ipv4Addr>,
    /// IOS `remote crypto endpt.` and `current_peer ... port`.
    pub remote: Ipv4Addr,
    pub remote_port: Option<u16>,
    /// Sums over the pairs: IOS `#pkts encaps` (ESP packets sent) and
    /// `#pkts decaps` (received and authenticated).
    pub pkts_encaps: u64,
    pub pkts_decaps: u64,
    /// Inbound packets dropped as replays, and whose ICV did not verify.
    pub pkts_replay_failed: u64,
    pub pkts_verify_failed: u64,
    /// IOS `current outbound spi`: the pair the datapath sends on (the
    /// newest, or during a rekey we answered the older until it goes).
    pub current_outbound_spi: Option<u32>,
    /// Every pair, oldest first: during a rekey the old and the new one.
    pub sas: Vec<IpsecSa>,
}

/// One CHILD_SA: an inbound and an outbound ESP SA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpsecSa {
    pub spi_in: u32,
    pub spi_out: u32,
    /// IOS spelling: `esp-gcm 256`, `esp-256-aes esp-sha256-hmac`; `None`
    /// when not known (a spoke's own tunnel shows SPIs and counters only).
    pub transform: Option<String>,
    pub mode: Option<IpsecMode>,
    /// Extended sequence numbers (RFC 4303 section 2.2.1).
    pub esn: Option<bool>,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Seconds since the CHILD_SA was installed.
    pub active_s: Option<u64>,
    /// IOS `remaining key lifetime (k/sec)`: kilobytes (both directions
    /// counted, as the limit is) and seconds left before the hard limit.
    pub remaining_kb: Option<u64>,
    pub remaining_s: Option<u64>,
    /// The datapath sends on this pair (IOS `current outbound spi`).
    pub outbound: bool,
    /// `ACTIVE`.
    pub status: String,
}

impl IpsecSaReport {
    /// Every inbound SPI listed, in report order.
    pub fn spis_in(&self) -> Vec<u32> {
        self.sas().map(|s| s.spi_in).collect()
    }

    /// Every SA pair of every interface.
    pub fn sas(&self) -> impl Iterator<Item = &IpsecSa> {
        self.interfaces.iter().flat_map(|i| i.sas.iter())
    }

    /// The entry of the interface named `name` (`Virtual-Access1`).
    pub fn interface(&self, name: &str) -> Option<&IpsecInterface> {
        self.interfaces
            .iter()
            .find(|i| i.interface.as_deref() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A virtual-access in the middle of a rekey: the old pair still
    /// decrypts, the new one carries what is sent.
    fn rekeying() -> IpsecSaReport {
        let pair = |spi_in, spi_out, active_s| IpsecSa {
            spi_in,
            spi_out,
            transform: Some("esp-gcm 256".into()),
            mode: Some(IpsecMode::Transport),
            esn: Some(true),
            packets_in: 3,
            bytes_in: 300,
            packets_out: 2,
            bytes_out: 200,
            active_s: Some(active_s),
            remaining_kb: Some(4_607_999),
            remaining_s: Some(3_600 - active_s),
            outbound: active_s == 1,
            status: "ACTIVE".into(),
        };
        IpsecSaReport {
            interfaces: vec![IpsecInterface {
                interface: Some("Virtual-Access1".into()),
                tunnel_id: Some(1),
                local: Some(Ipv4Addr::new(172, 25, 1, 1)),
                remote: Ipv4Addr::new(172, 16, 1, 2),
                remote_port: Some(4500),
                pkts_encaps: 4,
                pkts_decaps: 6,
                pkts_replay_failed: 0,
                pkts_verify_failed: 1,
                current_outbound_spi: Some(0x0000_d002),
                sas: vec![pair(0xc001, 0xd001, 3_000), pair(0xc002, 0xd002, 1)],
            }],
        }
    }

    #[test]
    fn json_names_every_field_and_reads_back() {
        let report = rekeying();
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            json.starts_with(concat!(
                r#"{"interfaces":[{"interface":"Virtual-Access1","tunnel_id":1,"#,
                r#""local":"172.25.1.1","remote":"172.16.1.2","remote_port":4500,"#,
                r#""pkts_encaps":4,"pkts_decaps":6,"pkts_replay_failed":0,"#,
                r#""pkts_verify_failed":1,"current_outbound_spi":53250,"sas":["#,
                r#"{"spi_in":49153,"spi_out":53249,"transform":"esp-gcm 256","#,
                r#""mode":"transport","esn":true,"packets_in":3,"bytes_in":300,"#,
                r#""packets_out":2,"bytes_out":200,"active_s":3000,"#,
                r#""remaining_kb":4607999,"remaining_s":600,"outbound":false,"#,
                r#""status":"ACTIVE"}"#,
            )),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<IpsecSaReport>(&json).unwrap(),
            report
        );
        assert_eq!(report.spis_in(), [0xc001, 0xc002]);
        assert_eq!(report.interface("Virtual-Access1").unwrap().sas.len(), 2);
        assert!(report.interface("Virtual-Access2").is_none());
    }
}

//! NHRP: `show ip nhrp`, `show ip nhrp traffic`, `clear ip nhrp`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// `show ip nhrp traffic`: what NHRP counted since the start. The JSON is
/// an object of counter names to numbers (the integration tests read it as
/// such a map).
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_what_the_daemon_has_always_sent() {
        let view = NhrpView {
            role: "spoke".into(),
            entries: vec![NhrpEntryView {
                target: "192.168.2.0/24".into(),
                via: Ipv4Addr::new(10, 1, 1, 102),
                nbma: Ipv4Addr::new(172, 16, 1, 102),
                interface: "Virtual-Access1".into(),
                created_s: 5,
                expires_s: 3594,
                flags: vec!["router".into(), "dynamic".into()],
            }],
        };
        let json = r#"{"role":"spoke","entries":[{"target":"192.168.2.0/24","via":"10.1.1.102","nbma":"172.16.1.102","interface":"Virtual-Access1","created_s":5,"expires_s":3594,"flags":["router","dynamic"]}]}"#;
        assert_eq!(serde_json::to_string(&view).unwrap(), json);
        assert_eq!(serde_json::from_str::<NhrpView>(json).unwrap(), view);

        let cleared = NhrpCleared {
            entries: 2,
            tunnels_closed: 1,
            redirect_pairs: 0,
        };
        assert_eq!(
            serde_json::to_string(&cleared).unwrap(),
            r#"{"entries":2,"tunnels_closed":1,"redirect_pairs":0}"#
        );
    }

    /// The integration tests read this as a map of counter names to numbers.
    #[test]
    fn traffic_is_an_object_of_counters() {
        let traffic = NhrpTraffic {
            redirects_sent: 1,
            redirects_suppressed: 2,
            redirects_received: 3,
            resolution_requests_sent: 4,
            resolution_requests_received: 5,
            resolution_requests_forwarded: 6,
            resolution_replies_sent: 7,
            resolution_replies_received: 8,
            resolution_replies_forwarded: 9,
            error_indications_sent: 10,
            error_indications_received: 11,
            purge_requests_sent: 12,
            purge_requests_received: 13,
            purge_replies_received: 14,
            shortcuts_installed: 15,
            shortcuts_expired: 16,
            shortcuts_purged: 17,
            tunnels_opened: 18,
            tunnels_closed: 19,
            malformed: 20,
        };
        let json = serde_json::to_string(&traffic).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"redirects_sent":1,"redirects_suppressed":2,"#,
                r#""redirects_received":3,"resolution_requests_sent":4,"#,
                r#""resolution_requests_received":5,"#,
                r#""resolution_requests_forwarded":6,"#,
                r#""resolution_replies_sent":7,"resolution_replies_received":8,"#,
                r#""resolution_replies_forwarded":9,"#,
                r#""error_indications_sent":10,"error_indications_received":11,"#,
                r#""purge_requests_sent":12,"purge_requests_received":13,"#,
                r#""purge_replies_received":14,"shortcuts_installed":15,"#,
                r#""shortcuts_expired":16,"shortcuts_purged":17,"#,
                r#""tunnels_opened":18,"tunnels_closed":19,"malformed":20}"#,
            )
        );
        let counters: std::collections::BTreeMap<String, u64> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(counters.len(), 20);
        assert_eq!(serde_json::from_str::<NhrpTraffic>(&json).unwrap(), traffic);
    }
}

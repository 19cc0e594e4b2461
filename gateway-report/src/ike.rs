//! IKEv2: `show crypto ikev2 sa` and `show crypto session`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// `show crypto ikev2 sa` and `show crypto session`, one row per IKE SA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaReport {
    pub tunnel_id: u32,
    /// Our address and port, `172.25.1.1/4500`.
    pub local: String,
    /// The peer's address and port, `172.25.1.2/4500`.
    pub remote: String,
    /// `READY` once IKE_AUTH is done, `IN-NEG` before.
    pub status: String,
    pub encryption: String,
    pub prf: String,
    /// The integrity algorithm, IOS style (`SHA256`); none with an AEAD.
    pub hash: Option<String>,
    pub dh_group: u16,
    pub auth_sign: Option<String>,
    pub auth_verify: Option<String>,
    /// The profile's IKE SA `lifetime` (IOS default 86400 s).
    pub lifetime_s: u64,
    pub active_time_s: u64,
    /// SPIs in hex, 16 digits.
    pub spi_i: String,
    pub spi_r: String,
    /// The peer's identity, e.g. `fqdn:spoke1.cisco.com`.
    pub identity: Option<String>,
    pub profile: Option<String>,
    pub assigned_address: Option<Ipv4Addr>,
    pub nat_t: bool,
    pub children: Vec<ChildReport>,
}

/// One CHILD_SA of an IKE SA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildReport {
    /// SPIs as `0x` and 8 hex digits.
    pub spi_in: String,
    pub spi_out: String,
    pub mode: IpsecMode,
    pub encryption: String,
    pub integrity: Option<String>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// The ESP transform as IOS `show crypto ipsec sa` spells it:
    /// `esp-gcm 256`, `esp-256-aes esp-sha256-hmac`.
    #[serde(default)]
    pub transform: String,
    /// Extended sequence numbers (RFC 4303 section 2.2.1).
    #[serde(default)]
    pub esn: bool,
    /// Seconds since the CHILD_SA was installed.
    #[serde(default)]
    pub active_s: u64,
    /// Its hard limits: seconds and kilobytes (both directions counted);
    /// the profile's `ipsec_lifetime_seconds` and `ipsec_lifetime_kilobytes`
    /// when the SA has none of its own.
    #[serde(default)]
    pub lifetime_s: u64,
    #[serde(default)]
    pub lifetime_kb: u64,
    /// The datapath sends on this pair: the newest, or during a rekey we
    /// answered the older one until it is deleted.
    #[serde(default)]
    pub outbound: bool,
}

impl SaReport {
    /// IKE_AUTH done (`READY`) and at least one CHILD_SA: traffic can flow.
    pub fn is_up(&self) -> bool {
        self.status == "READY" && !self.children.is_empty()
    }
}

/// The ESP mode of a CHILD_SA: `"tunnel"` or `"transport"` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpsecMode {
    Tunnel,
    Transport,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Rows as the daemon sent them before the types moved here (from its
    /// tests: an established spoke with a GRE transport-mode CHILD_SA).
    #[test]
    fn json_is_what_the_daemon_has_always_sent() {
        let row = SaReport {
            tunnel_id: 1,
            local: "172.25.1.1/500".into(),
            remote: "172.25.1.2/500".into(),
            status: "READY".into(),
            encryption: "AES-CBC, keysize: 256".into(),
            prf: "SHA256".into(),
            hash: Some("SHA256".into()),
            dh_group: 31,
            auth_sign: Some("pre-share".into()),
            auth_verify: Some("pre-share".into()),
            lifetime_s: 86_400,
            active_time_s: 0,
            spi_i: "c0c0ebdbd98d8afb".into(),
            spi_r: "92d54447fa7c00e7".into(),
            identity: Some("fqdn:spoke1.cisco.com".into()),
            profile: Some("Flex".into()),
            assigned_address: None,
            nat_t: false,
            children: vec![ChildReport {
                spi_in: "0xb6801a40".into(),
                spi_out: "0x6a3b5108".into(),
                mode: IpsecMode::Transport,
                encryption: "AES-GCM, keysize: 256".into(),
                integrity: None,
                local_ts: vec!["172.25.1.1/32 proto 47".into()],
                remote_ts: vec!["172.25.1.2/32 proto 47".into()],
                transform: "esp-gcm 256".into(),
                esn: true,
                active_s: 5,
                lifetime_s: 3_600,
                lifetime_kb: 4_608_000,
                outbound: true,
            }],
        };
        let json = concat!(
            r#"{"tunnel_id":1,"local":"172.25.1.1/500","remote":"172.25.1.2/500","#,
            r#""status":"READY","encryption":"AES-CBC, keysize: 256","prf":"SHA256","#,
            r#""hash":"SHA256","dh_group":31,"auth_sign":"pre-share","#,
            r#""auth_verify":"pre-share","lifetime_s":86400,"active_time_s":0,"#,
            r#""spi_i":"c0c0ebdbd98d8afb","spi_r":"92d54447fa7c00e7","#,
            r#""identity":"fqdn:spoke1.cisco.com","profile":"Flex","#,
            r#""assigned_address":null,"nat_t":false,"children":["#,
            r#"{"spi_in":"0xb6801a40","spi_out":"0x6a3b5108","mode":"transport","#,
            r#""encryption":"AES-GCM, keysize: 256","integrity":null,"#,
            r#""local_ts":["172.25.1.1/32 proto 47"],"#,
            r#""remote_ts":["172.25.1.2/32 proto 47"],"transform":"esp-gcm 256","#,
            r#""esn":true,"active_s":5,"lifetime_s":3600,"lifetime_kb":4608000,"outbound":true}]}"#,
        );
        assert_eq!(serde_json::to_string(&row).unwrap(), json);
        // What a gateway sent before the CHILD_SAs had lifetimes still reads.
        let before = json.replace(
            r#","transform":"esp-gcm 256","esn":true,"active_s":5,"lifetime_s":3600,"lifetime_kb":4608000,"outbound":true"#,
            "",
        );
        assert_ne!(before, json);
        let old = serde_json::from_str::<SaReport>(&before).unwrap();
        assert_eq!(
            (old.children[0].esn, old.children[0].lifetime_kb),
            (false, 0)
        );
        assert_eq!(serde_json::from_str::<SaReport>(json).unwrap(), row);
        let address = r#""assigned_address":"10.1.1.100""#;
        let leased = json.replace(r#""assigned_address":null"#, address);
        let row = SaReport {
            assigned_address: Some(Ipv4Addr::new(10, 1, 1, 100)),
            ..row
        };
        assert_eq!(serde_json::to_string(&row).unwrap(), leased);
        assert_eq!(
            serde_json::to_string(&IpsecMode::Tunnel).unwrap(),
            r#""tunnel""#
        );
    }
}

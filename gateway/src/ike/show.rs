//! `show crypto ikev2 sa` and `show crypto session`: the rows of the
//! responder's SA table (`gateway_report::ike`), and their text in the IOS
//! layout for the CLI.

use std::{fmt::Write as _, time::Instant};

use gateway_report::ike::{ChildReport, IpsecMode, SaReport};

use crate::{
    ike::{
        crypto::Prf,
        sa::{IkeSa, SaState},
        wire::TrafficSelector,
    },
    ipsec::{Integ, Mode},
};

/// IKE SA lifetime we report (IOS default 86400 s); rekeying comes later.
const IKE_LIFETIME_S: u64 = 86_400;

/// One row per IKE SA, by tunnel id.
pub(crate) fn rows<'a>(sas: impl IntoIterator<Item = &'a IkeSa>, now: Instant) -> Vec<SaReport> {
    let mut rows: Vec<SaReport> = sas.into_iter().map(|sa| row(sa, now)).collect();
    rows.sort_by_key(|r| r.tunnel_id);
    rows
}

fn row(sa: &IkeSa, now: Instant) -> SaReport {
    let hex = |v: u64| format!("{v:016x}");
    let choice = &sa.keymat.choice;
    SaReport {
        tunnel_id: sa.tunnel_id,
        local: format!("{}/{}", sa.local.ip(), sa.local.port()),
        remote: format!("{}/{}", sa.remote.ip(), sa.remote.port()),
        status: match sa.state {
            SaState::HalfOpen => "IN-NEG".into(),
            SaState::Ready => "READY".into(),
            SaState::Rekeyed => "DELETE".into(),
        },
        encryption: choice.encr.to_string(),
        prf: prf_name(choice.prf).to_owned(),
        hash: choice.integ.map(|i| integ_name(i).to_owned()),
        dh_group: choice.dh.iana(),
        auth_sign: sa.auth_local.map(|a| a.as_str().to_owned()),
        auth_verify: sa.auth_remote.map(|a| a.as_str().to_owned()),
        lifetime_s: IKE_LIFETIME_S,
        active_time_s: sa
            .established
            .map_or(0, |t| now.duration_since(t).as_secs()),
        spi_i: hex(sa.keymat.spi_i),
        spi_r: hex(sa.keymat.spi_r),
        identity: sa.identity.as_ref().map(ToString::to_string),
        profile: sa.profile.clone(),
        assigned_address: sa.lease.as_ref().map(|l| l.1),
        nat_t: sa.nat,
        children: sa
            .children
            .iter()
            .map(|c| ChildReport {
                spi_in: format!("{:#010x}", c.params.spi_in),
                spi_out: format!("{:#010x}", c.params.spi_out),
                mode: report_mode(c.params.mode),
                encryption: c.params.esp.encr.to_string(),
                integrity: c.params.esp.integ.map(|i| integ_name(i).to_owned()),
                local_ts: c.params.ts_local.iter().map(describe_ts).collect(),
                remote_ts: c.params.ts_remote.iter().map(describe_ts).collect(),
            })
            .collect(),
    }
}

fn report_mode(mode: Mode) -> IpsecMode {
    match mode {
        Mode::Tunnel => IpsecMode::Tunnel,
        Mode::Transport => IpsecMode::Transport,
    }
}

/// How `show crypto session` names the mode.
fn mode_name(mode: IpsecMode) -> &'static str {
    match mode {
        IpsecMode::Tunnel => "Tunnel",
        IpsecMode::Transport => "Transport",
    }
}

/// IOS spells algorithms `SHA256`, `SHA96` ... in `show crypto ikev2 sa`.
fn prf_name(prf: Prf) -> &'static str {
    match prf {
        Prf::HmacSha1 => "SHA1",
        Prf::HmacSha256 => "SHA256",
        Prf::HmacSha384 => "SHA384",
        Prf::HmacSha512 => "SHA512",
    }
}

fn integ_name(integ: Integ) -> &'static str {
    match integ {
        Integ::HmacSha1_96 => "SHA96",
        Integ::HmacSha256_128 => "SHA256",
        Integ::HmacSha384_192 => "SHA384",
        Integ::HmacSha512_256 => "SHA512",
    }
}

fn describe_ts(ts: &TrafficSelector) -> String {
    match ts.as_ipv4() {
        Some((a, b)) if a == b => format!("{a}/32 proto {}", ts.ip_protocol),
        Some((a, b)) => format!("{a}-{b} proto {}", ts.ip_protocol),
        None => format!("{:?}", ts.ts_type),
    }
}

/// `show crypto ikev2 sa`, in the IOS layout (fvrf/ivrf dropped).
pub fn render_ikev2_sa(rows: &[SaReport]) -> String {
    let mut out = String::from(" IPv4 Crypto IKEv2  SA\n\n");
    let _ = writeln!(
        out,
        "Tunnel-id Local                 Remote                Status"
    );
    for sa in rows {
        let _ = writeln!(
            out,
            "{:<9} {:<21} {:<21} {}",
            sa.tunnel_id, sa.local, sa.remote, sa.status
        );
        let hash = sa.hash.as_deref().unwrap_or("None");
        let _ = writeln!(
            out,
            "      Encr: {}, PRF: {}, Hash: {}, DH Grp:{}, Auth sign: {}, Auth verify: {}",
            sa.encryption,
            sa.prf,
            hash,
            sa.dh_group,
            sa.auth_sign.as_deref().unwrap_or("-"),
            sa.auth_verify.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "      Life/Active Time: {}/{} sec",
            sa.lifetime_s, sa.active_time_s
        );
        if let Some(address) = sa.assigned_address {
            let _ = writeln!(out, "      Assigned host addr: {address}");
        }
        if let Some(identity) = &sa.identity {
            let _ = writeln!(
                out,
                "      Remote id: {identity}, profile: {}",
                sa.profile.as_deref().unwrap_or("-")
            );
        }
        out.push('\n');
    }
    out
}

/// `show crypto session`, in the IOS layout.
pub fn render_crypto_session(rows: &[SaReport]) -> String {
    let mut out = String::from("Crypto session current status\n\n");
    for sa in rows {
        let _ = writeln!(out, "Profile: {}", sa.profile.as_deref().unwrap_or("-"));
        let state = if sa.status == "READY" {
            "UP-ACTIVE"
        } else {
            "UP-NEGOTIATING"
        };
        let _ = writeln!(out, "Session status: {state}");
        let _ = writeln!(out, "Peer: {}", sa.remote);
        if let Some(identity) = &sa.identity {
            let _ = writeln!(out, "      Phase1_id: {identity}");
        }
        if let Some(address) = sa.assigned_address {
            let _ = writeln!(out, "      Assigned address: {address}");
        }
        let _ = writeln!(out, "  Session ID: {}", sa.tunnel_id);
        let _ = writeln!(
            out,
            "  IKEv2 SA: local {} remote {} Active",
            sa.local, sa.remote
        );
        for child in &sa.children {
            let _ = writeln!(
                out,
                "  IPSEC FLOW: {} <-> {} ({}) Active SAs: 2, in SPI {} out SPI {}",
                child.local_ts.join(","),
                child.remote_ts.join(","),
                mode_name(child.mode),
                child.spi_in,
                child.spi_out
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ikev2_sa_and_session_tables_show_the_operator_fields() {
        let row = SaReport {
            tunnel_id: 7,
            local: "172.25.1.1/4500".into(),
            remote: "172.25.1.2/4500".into(),
            status: "READY".into(),
            encryption: "AES-CBC, keysize: 256".into(),
            prf: "SHA256".into(),
            hash: Some("SHA256".into()),
            dh_group: 19,
            auth_sign: Some("pre-share".into()),
            auth_verify: Some("pre-share".into()),
            lifetime_s: 86_400,
            active_time_s: 42,
            spi_i: "0102030405060708".into(),
            spi_r: "1112131415161718".into(),
            identity: Some("fqdn:spoke1.cisco.com".into()),
            profile: Some("Flex".into()),
            assigned_address: Some(std::net::Ipv4Addr::new(10, 1, 1, 100)),
            nat_t: true,
            children: vec![ChildReport {
                spi_in: "0x0000c001".into(),
                spi_out: "0x0000d002".into(),
                mode: IpsecMode::Tunnel,
                encryption: "AES-GCM, keysize: 256".into(),
                integrity: None,
                local_ts: vec!["10.1.2.0-10.1.2.255 proto 0".into()],
                remote_ts: vec!["10.1.1.100/32 proto 0".into()],
            }],
        };
        let sa = render_ikev2_sa(std::slice::from_ref(&row));
        assert!(
            sa.lines().any(|l| l.starts_with("7 ")
                && l.contains("172.25.1.2/4500")
                && l.ends_with("READY")),
            "{sa}"
        );
        assert!(
            sa.contains("Encr: AES-CBC, keysize: 256, PRF: SHA256, Hash: SHA256, DH Grp:19"),
            "{sa}"
        );
        assert!(
            sa.contains("Life/Active Time: 86400/42 sec")
                && sa.contains("Assigned host addr: 10.1.1.100"),
            "{sa}"
        );
        let session = render_crypto_session(&[row]);
        assert!(
            session.contains("Session status: UP-ACTIVE")
                && session.contains("Phase1_id: fqdn:spoke1.cisco.com"),
            "{session}"
        );
        assert!(
            session.contains("(Tunnel) Active SAs: 2, in SPI 0x0000c001 out SPI 0x0000d002"),
            "{session}"
        );
    }
}

//! `show crypto ikev2 sa` and `show crypto session`: the rows of the
//! responder's SA table (`gateway_report::ike`), and their text in the IOS
//! layout for the CLI.

use std::{fmt::Write as _, time::Instant};

use gateway_report::ike::{ChildReport, IpsecMode, SaReport};

use crate::{
    ike::{
        crypto::Prf,
        policy::{Policy, Rekey},
        proposal::EspChoice,
        sa::{ChildSa, IkeSa, SaState},
        wire::TrafficSelector,
    },
    ipsec::{Encr, Integ, Mode},
};

/// One row per IKE SA, by tunnel id. The lifetimes an SA does not carry
/// itself are its profile's in `policy` (the IOS defaults without one).
pub(crate) fn rows<'a>(
    sas: impl IntoIterator<Item = &'a IkeSa>,
    policy: &Policy,
    now: Instant,
) -> Vec<SaReport> {
    let mut rows: Vec<SaReport> = sas
        .into_iter()
        .map(|sa| {
            let rekey = sa
                .profile
                .as_deref()
                .and_then(|name| policy.profiles.iter().find(|p| p.name == name))
                .map_or_else(Rekey::default, |p| p.rekey);
            row(sa, &rekey, now)
        })
        .collect();
    rows.sort_by_key(|r| r.tunnel_id);
    rows
}

fn row(sa: &IkeSa, rekey: &Rekey, now: Instant) -> SaReport {
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
        lifetime_s: rekey.ike_lifetime.as_secs(),
        active_time_s: sa
            .established
            .map_or(0, |t| now.duration_since(t).as_secs()),
        spi_i: hex(sa.keymat.spi_i),
        spi_r: hex(sa.keymat.spi_r),
        identity: sa.identity.as_ref().map(ToString::to_string),
        profile: sa.profile.clone(),
        assigned_address: sa.lease.as_ref().map(|l| l.1),
        nat_t: sa.nat,
        children: {
            let sender = sending(&sa.children);
            sa.children
                .iter()
                .map(|c| child_row(c, rekey, now, sender == Some(c.params.spi_in)))
                .collect()
        },
    }
}

/// The inbound SPI of the pair the datapath sends on: the newest, unless
/// it is a rekey we answered, which waits for the pairs before it to go
/// (`iface::SaPair::defer_outbound`, RFC 7296 section 2.8: the peer
/// installs its inbound SA only when our response reaches it).
fn sending(children: &[ChildSa]) -> Option<u32> {
    let mut by_age: Vec<&ChildSa> = children.iter().collect();
    by_age.sort_by_key(|c| c.created);
    let oldest = by_age.first()?.params.spi_in;
    by_age
        .iter()
        .rev()
        .find(|c| {
            let defers = c.params.replaces.is_some() && !c.params.initiator;
            !defers || c.params.spi_in == oldest
        })
        .map(|c| c.params.spi_in)
}

fn child_row(c: &ChildSa, rekey: &Rekey, now: Instant, outbound: bool) -> ChildReport {
    let limits = &c.params.lifetime;
    ChildReport {
        spi_in: format!("{:#010x}", c.params.spi_in),
        spi_out: format!("{:#010x}", c.params.spi_out),
        mode: report_mode(c.params.mode),
        encryption: c.params.esp.encr.to_string(),
        integrity: c.params.esp.integ.map(|i| integ_name(i).to_owned()),
        local_ts: c.params.ts_local.iter().map(describe_ts).collect(),
        remote_ts: c.params.ts_remote.iter().map(describe_ts).collect(),
        transform: transform(c.params.esp),
        esn: c.params.esp.esn,
        active_s: now.saturating_duration_since(c.created).as_secs(),
        // The hard limits: what is left of them is what IOS shows as the
        // remaining key lifetime.
        lifetime_s: limits
            .hard_seconds
            .unwrap_or(rekey.ipsec_lifetime.as_secs()),
        lifetime_kb: limits
            .hard_bytes
            .map_or(rekey.ipsec_kilobytes, |bytes| bytes / 1024),
        outbound,
    }
}

/// The transform as IOS `show crypto ipsec sa` names it (`transform:
/// esp-256-aes esp-sha256-hmac`, `esp-gcm 256`; 128-bit keys unnamed).
fn transform(esp: EspChoice) -> String {
    let encr = match esp.encr {
        Encr::AesCbc { key_bits: 128 } => "esp-aes".to_owned(),
        Encr::AesCbc { key_bits } => format!("esp-{key_bits}-aes"),
        Encr::AesGcm16 { key_bits: 128 } => "esp-gcm".to_owned(),
        Encr::AesGcm16 { key_bits } => format!("esp-gcm {key_bits}"),
    };
    let integ = esp.integ.map(|i| match i {
        Integ::HmacSha1_96 => "esp-sha-hmac",
        Integ::HmacSha256_128 => "esp-sha256-hmac",
        Integ::HmacSha384_192 => "esp-sha384-hmac",
        Integ::HmacSha512_256 => "esp-sha512-hmac",
    });
    match integ {
        Some(integ) => format!("{encr} {integ}"),
        None => encr,
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
                transform: "esp-gcm 256".into(),
                esn: false,
                active_s: 42,
                lifetime_s: 3_600,
                lifetime_kb: 4_608_000,
                outbound: true,
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

    /// The hub of the in-memory exchange tests with `profile` added to its
    /// profile, after a spoke dialled it with `esp`: the IKE SA and the
    /// CHILD_SA it negotiated.
    fn dialled(profile: &str, esp: &str) -> (crate::ike::engine::Engine, ChildSa) {
        use crate::ike::{
            sa::Action,
            tests::{MemPools, dial, hub, spoke},
        };
        let mut engine = hub(profile);
        let mut pools = MemPools::default();
        pools.size = 4;
        let (result, actions) = dial(
            &mut engine,
            &mut pools,
            spoke("aes256-sha256-ecp256", esp, Mode::Transport),
            11,
        );
        result.unwrap();
        let params = actions
            .into_iter()
            .find_map(|a| match a {
                Action::ChildUp(c) => Some(c),
                _ => None,
            })
            .unwrap();
        let child = ChildSa::new(params, Instant::now());
        (engine, child)
    }

    #[test]
    fn lifetimes_are_the_profiles_unless_the_sa_has_its_own() {
        let (engine, mut child) = dialled(
            "lifetime = 600\nipsec_lifetime_seconds = 300\nipsec_lifetime_kilobytes = 10000",
            "aes256gcm16",
        );
        let now = Instant::now();
        let rows = engine.report(now);
        assert_eq!(rows.len(), 1);
        // The IKE SA's lifetime is its profile's `lifetime`, not 86400.
        assert_eq!(rows[0].lifetime_s, 600);
        let c = &rows[0].children[0];
        assert_eq!(c.transform, "esp-gcm 256");
        assert!(c.esn, "both ends offer ESN, so it is chosen");
        assert!(c.lifetime_s > 0 && c.lifetime_s <= 300, "{c:?}");
        assert!(c.lifetime_kb > 0 && c.lifetime_kb <= 10_000, "{c:?}");

        // An SA without limits of its own shows the profile's ...
        let rekey = Rekey {
            ipsec_lifetime: std::time::Duration::from_mins(5),
            ipsec_kilobytes: 10_000,
            ..Rekey::default()
        };
        child.params.lifetime = crate::iface::SaLifetime::default();
        child.created = now.checked_sub(std::time::Duration::from_secs(7)).unwrap();
        let r = child_row(&child, &rekey, now, true);
        assert_eq!((r.lifetime_s, r.lifetime_kb, r.active_s), (300, 10_000, 7));
        // ... and one with hard limits (the profile's with jitter) its own.
        child.params.lifetime = crate::iface::SaLifetime {
            soft_bytes: Some(9_000 * 1024),
            hard_bytes: Some(9_500 * 1024),
            soft_seconds: Some(270),
            hard_seconds: Some(290),
        };
        child.params.esp.esn = true;
        let r = child_row(&child, &rekey, now, true);
        assert_eq!((r.lifetime_s, r.lifetime_kb, r.esn), (290, 9_500, true));
        assert_eq!(
            (r.spi_in.as_str(), r.mode),
            (
                format!("{:#010x}", child.params.spi_in).as_str(),
                IpsecMode::Transport
            )
        );
    }

    #[test]
    fn a_profile_without_lifetimes_shows_the_ios_defaults() {
        let (engine, child) = dialled("", "aes128-sha1");
        let rows = engine.report(Instant::now());
        assert_eq!(rows[0].lifetime_s, 86_400);
        let r = child_row(&child, &Rekey::default(), Instant::now(), true);
        assert_eq!((r.lifetime_s, r.lifetime_kb), (3_600, 4_608_000));
        assert_eq!(r.transform, "esp-aes esp-sha-hmac");
    }

    #[test]
    fn transforms_are_spelled_as_ios_does() {
        let esp = |encr, integ| EspChoice {
            encr,
            integ,
            esn: false,
        };
        for (choice, text) in [
            (
                esp(Encr::AesCbc { key_bits: 256 }, Some(Integ::HmacSha256_128)),
                "esp-256-aes esp-sha256-hmac",
            ),
            (
                esp(Encr::AesCbc { key_bits: 192 }, Some(Integ::HmacSha384_192)),
                "esp-192-aes esp-sha384-hmac",
            ),
            (
                esp(Encr::AesCbc { key_bits: 128 }, Some(Integ::HmacSha512_256)),
                "esp-aes esp-sha512-hmac",
            ),
            (esp(Encr::AesGcm16 { key_bits: 256 }, None), "esp-gcm 256"),
            (esp(Encr::AesGcm16 { key_bits: 128 }, None), "esp-gcm"),
        ] {
            assert_eq!(transform(choice), text);
        }
    }

    #[test]
    fn the_sending_pair_is_the_newest_unless_it_waits_for_an_older_one() {
        let (_, base) = dialled("", "aes256gcm16");
        let t0 = base.created;
        let pair = |spi_in: u32, age: u64, replaces: Option<u32>, initiator: bool| {
            let mut params = base.params.clone();
            params.spi_in = spi_in;
            params.replaces = replaces;
            params.initiator = initiator;
            ChildSa::new(
                params,
                t0.checked_sub(std::time::Duration::from_secs(age)).unwrap(),
            )
        };
        assert_eq!(sending(&[]), None);
        assert_eq!(sending(&[pair(1, 10, None, false)]), Some(1));
        // We initiated the rekey: the new pair sends at once.
        let ours = [pair(1, 10, None, false), pair(2, 1, Some(1), true)];
        assert_eq!(sending(&ours), Some(2));
        // We answered it: the old pair sends until it is deleted ...
        let answered = [pair(2, 1, Some(1), false), pair(1, 10, None, false)];
        assert_eq!(sending(&answered), Some(1));
        // ... then the new one, though it still names what it replaced.
        assert_eq!(sending(&[pair(2, 1, Some(1), false)]), Some(2));
        let rows = child_row(&answered[1], &Rekey::default(), t0, true);
        assert!(rows.outbound);
    }
}

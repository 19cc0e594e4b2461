//! What an SA pair becomes in XFRM: two states (RFC 4303 ESP, in UDP per
//! RFC 3948 behind NAT) and the policies that send GRE, or a tunnel-mode
//! peer's inner traffic, through them.

use std::net::Ipv4Addr;

use super::State;
use crate::iface::{DatapathError, SaPair};
use crate::sys::xfrm::{
    EspAlgorithms, Integrity, UdpEncap, XfrmAction, XfrmDir, XfrmLifetime, XfrmMode, XfrmPolicy,
    XfrmSelector, XfrmState, XfrmTemplate,
};
use crate::{
    ipsec::{Encr, Integ, Mode},
    net::Ipv4Prefix,
};

/// The inbound replay window (IOS and strongSwan default to 64 packets).
const REPLAY_WINDOW: u32 = 64;
/// Priority of our policies: more specific than a catch-all an operator
/// may have.
const POLICY_PRIORITY: u32 = 1000;

/// The kernel's name for the ESP transform.
fn algorithms(
    encr: Encr,
    integ: Option<Integ>,
    keys: &crate::ipsec::SaKeys,
) -> Result<EspAlgorithms, DatapathError> {
    match (encr, integ) {
        (Encr::AesGcm16 { .. }, _) => Ok(EspAlgorithms::AesGcm {
            key_with_salt: keys.encr.clone(),
            icv_bits: 128,
        }),
        (Encr::AesCbc { .. }, Some(i)) => Ok(EspAlgorithms::AesCbc {
            enc_key: keys.encr.clone(),
            integrity: match i {
                Integ::HmacSha1_96 => Integrity::HmacSha1_96,
                Integ::HmacSha256_128 => Integrity::HmacSha256_128,
                Integ::HmacSha384_192 => Integrity::HmacSha384_192,
                Integ::HmacSha512_256 => Integrity::HmacSha512_256,
            },
            integ_key: keys.integ.clone(),
        }),
        (Encr::AesCbc { .. }, None) => Err(DatapathError::Keys(
            "AES-CBC without an integrity algorithm".into(),
        )),
    }
}

fn host(a: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix { addr: a, len: 32 }
}

const ANY: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::UNSPECIFIED,
    len: 0,
};

impl State {
    pub(super) fn states(sa: &SaPair, reqid: u32) -> Result<[XfrmState; 2], DatapathError> {
        let mode = match sa.mode {
            Mode::Transport => XfrmMode::Transport,
            Mode::Tunnel => XfrmMode::Tunnel,
        };
        let selector = |src, dst| (sa.mode == Mode::Transport).then(|| XfrmSelector::gre(src, dst));
        let out = XfrmState {
            src: sa.local,
            dst: sa.remote,
            spi: sa.spi_out,
            reqid,
            mode,
            algorithms: algorithms(sa.encr, sa.integ, &sa.outbound)?,
            replay_window: 0,
            esn: false,
            encap: sa.encap.map(|(local, remote)| UdpEncap {
                sport: local,
                dport: remote,
            }),
            selector: selector(sa.local, sa.remote),
            lifetime: XfrmLifetime::default(),
        };
        let inbound = XfrmState {
            src: sa.remote,
            dst: sa.local,
            spi: sa.spi_in,
            reqid,
            mode,
            algorithms: algorithms(sa.encr, sa.integ, &sa.inbound)?,
            replay_window: REPLAY_WINDOW,
            esn: false,
            encap: sa.encap.map(|(local, remote)| UdpEncap {
                sport: remote,
                dport: local,
            }),
            selector: selector(sa.remote, sa.local),
            lifetime: XfrmLifetime::default(),
        };
        Ok([out, inbound])
    }

    pub(super) fn policies(sa: &SaPair, reqid: u32, inner: Option<Ipv4Addr>) -> Vec<XfrmPolicy> {
        let template = |src, dst, mode| {
            Some(XfrmTemplate {
                src,
                dst,
                reqid,
                mode,
            })
        };
        let policy = |selector, dir, template| XfrmPolicy {
            selector,
            dir,
            priority: POLICY_PRIORITY,
            action: XfrmAction::Allow,
            template,
        };
        match (sa.mode, inner) {
            (Mode::Transport, _) => vec![
                policy(
                    XfrmSelector::gre(sa.local, sa.remote),
                    XfrmDir::Out,
                    template(sa.local, sa.remote, XfrmMode::Transport),
                ),
                policy(
                    XfrmSelector::gre(sa.remote, sa.local),
                    XfrmDir::In,
                    template(sa.remote, sa.local, XfrmMode::Transport),
                ),
            ],
            // A tunnel-mode peer's inner address; what it reaches through
            // us is forwarded (decrypted, then routed on).
            (Mode::Tunnel, Some(inner)) => vec![
                policy(
                    XfrmSelector::between(ANY, host(inner)),
                    XfrmDir::Out,
                    template(sa.local, sa.remote, XfrmMode::Tunnel),
                ),
                policy(
                    XfrmSelector::between(host(inner), ANY),
                    XfrmDir::In,
                    template(sa.remote, sa.local, XfrmMode::Tunnel),
                ),
                policy(
                    XfrmSelector::between(host(inner), ANY),
                    XfrmDir::Fwd,
                    template(sa.remote, sa.local, XfrmMode::Tunnel),
                ),
            ],
            (Mode::Tunnel, None) => Vec::new(),
        }
    }
}

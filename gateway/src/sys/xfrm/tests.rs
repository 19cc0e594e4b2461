#![allow(clippy::unwrap_used)]

use std::{mem::offset_of, net::UdpSocket, os::fd::AsFd};

use super::codec::{put_u32, put_u64};
use super::*;
use crate::net::{IPPROTO_ESP, Ipv4Prefix};
use crate::sys::{
    raw_os_error,
    tests::{in_netns, in_netns_with, skip},
};

const HUB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SPOKE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// The 36 bytes `ip xfrm state add ... aead rfc4106(gcm(aes)) 0x0102...24`
/// was given in testdata/capture.sh: an AES-256 key and the salt.
fn gcm_key() -> Zeroizing<Vec<u8>> {
    Zeroizing::new((1..=0x24).collect())
}

/// Bytes `first`, `first + 1`, ... (the keys of capture.sh).
fn counting(first: u8, len: u8) -> Zeroizing<Vec<u8>> {
    Zeroizing::new((first..first + len).collect())
}

fn hex(text: &str) -> Vec<u8> {
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The payload (after the netlink header) iproute2 sent, from testdata/.
macro_rules! captured {
    ($name:literal) => {
        hex(include_str!(concat!("testdata/", $name, ".hex")))
    };
}

/// The SA of the first capture: transport mode for GRE, AES-256-GCM,
/// ESP in UDP from 4500 to 4501, window 32.
fn gcm_udp_state() -> XfrmState {
    XfrmState {
        src: HUB,
        dst: SPOKE,
        spi: 0xc0ff_ee01,
        reqid: 7,
        mode: XfrmMode::Transport,
        algorithms: EspAlgorithms::AesGcm {
            key_with_salt: gcm_key(),
            icv_bits: 128,
        },
        replay_window: 32,
        esn: false,
        encap: Some(UdpEncap {
            sport: 4500,
            dport: 4501,
        }),
        selector: Some(XfrmSelector::gre(HUB, SPOKE)),
        lifetime: XfrmLifetime::default(),
        initial_seq: 0,
        mapping_interval: None,
    }
}

/// Asserts equal bytes, showing the first difference and its offset.
fn assert_bytes(ours: &[u8], theirs: &[u8], what: &str) {
    if let Some(at) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {at}: ours {:02x?}, iproute2's {:02x?}",
            &ours[at..ours.len().min(at + 16)],
            &theirs[at..theirs.len().min(at + 16)]
        );
    }
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
}

// --- Layouts -------------------------------------------------------------

/// `#[repr(C)]` copies of the C structures: Rust lays them out by the C
/// rules of the target, so their sizes and offsets are the compiler's, not
/// ours.
#[allow(dead_code)]
mod c {
    #[repr(C)]
    pub struct Selector {
        pub daddr: [u32; 4],
        pub saddr: [u32; 4],
        pub dport: u16,
        pub dport_mask: u16,
        pub sport: u16,
        pub sport_mask: u16,
        pub family: u16,
        pub prefixlen_d: u8,
        pub prefixlen_s: u8,
        pub proto: u8,
        pub ifindex: i32,
        pub user: u32,
    }
    #[repr(C)]
    pub struct Id {
        pub daddr: [u32; 4],
        pub spi: u32,
        pub proto: u8,
    }
    #[repr(C)]
    pub struct LifetimeCfg([u64; 8]);
    #[repr(C)]
    pub struct LifetimeCur([u64; 4]);
    #[repr(C)]
    pub struct Stats([u32; 3]);
    #[repr(C)]
    pub struct UsersaInfo {
        pub sel: Selector,
        pub id: Id,
        pub saddr: [u32; 4],
        pub lft: LifetimeCfg,
        pub curlft: LifetimeCur,
        pub stats: Stats,
        pub seq: u32,
        pub reqid: u32,
        pub family: u16,
        pub mode: u8,
        pub replay_window: u8,
        pub flags: u8,
    }
    #[repr(C)]
    pub struct UsersaId {
        pub daddr: [u32; 4],
        pub spi: u32,
        pub family: u16,
        pub proto: u8,
    }
    #[repr(C)]
    pub struct UserpolicyInfo {
        pub sel: Selector,
        pub lft: LifetimeCfg,
        pub curlft: LifetimeCur,
        pub priority: u32,
        pub index: u32,
        pub dir: u8,
        pub action: u8,
        pub flags: u8,
        pub share: u8,
    }
    #[repr(C)]
    pub struct UserpolicyId {
        pub sel: Selector,
        pub index: u32,
        pub dir: u8,
    }
    #[repr(C)]
    pub struct UserTmpl {
        pub id: Id,
        pub family: u16,
        pub saddr: [u32; 4],
        pub reqid: u32,
        pub mode: u8,
        pub share: u8,
        pub optional: u8,
        pub aalgos: u32,
        pub ealgos: u32,
        pub calgos: u32,
    }
    #[repr(C)]
    pub struct Algo {
        pub name: [u8; 64],
        pub key_len: u32,
    }
    #[repr(C)]
    pub struct AlgoAuth {
        pub name: [u8; 64],
        pub key_len: u32,
        pub trunc_len: u32,
    }
    #[repr(C)]
    pub struct EncapTmpl {
        pub encap_type: u16,
        pub sport: u16,
        pub dport: u16,
        pub oa: [u32; 4],
    }
    #[repr(C)]
    pub struct ReplayStateEsn {
        pub bmp_len: u32,
        pub oseq: u32,
        pub seq: u32,
        pub oseq_hi: u32,
        pub seq_hi: u32,
        pub replay_window: u32,
    }
    #[repr(C)]
    pub struct UserExpire {
        pub state: UsersaInfo,
        pub hard: u8,
    }
    #[repr(C)]
    pub struct UserMapping {
        pub id: UsersaId,
        pub reqid: u32,
        pub old_saddr: [u32; 4],
        pub new_saddr: [u32; 4],
        pub old_sport: u16,
        pub new_sport: u16,
    }
}

#[test]
fn layouts_match_the_c_structures() {
    use std::mem::size_of;
    assert_eq!(size_of::<[u32; 4]>(), l::ADDRESS_LEN);

    assert_eq!(size_of::<c::Selector>(), l::SELECTOR_LEN);
    assert_eq!(offset_of!(c::Selector, daddr), l::SEL_DADDR);
    assert_eq!(offset_of!(c::Selector, saddr), l::SEL_SADDR);
    assert_eq!(offset_of!(c::Selector, dport), l::SEL_DPORT);
    assert_eq!(offset_of!(c::Selector, dport_mask), l::SEL_DPORT_MASK);
    assert_eq!(offset_of!(c::Selector, sport), l::SEL_SPORT);
    assert_eq!(offset_of!(c::Selector, sport_mask), l::SEL_SPORT_MASK);
    assert_eq!(offset_of!(c::Selector, family), l::SEL_FAMILY);
    assert_eq!(offset_of!(c::Selector, prefixlen_d), l::SEL_PREFIXLEN_D);
    assert_eq!(offset_of!(c::Selector, prefixlen_s), l::SEL_PREFIXLEN_S);
    assert_eq!(offset_of!(c::Selector, proto), l::SEL_PROTO);
    assert_eq!(offset_of!(c::Selector, ifindex), l::SEL_IFINDEX);
    assert_eq!(offset_of!(c::Selector, user), l::SEL_USER);

    assert_eq!(size_of::<c::Id>(), l::ID_LEN);
    assert_eq!(offset_of!(c::Id, daddr), l::ID_DADDR);
    assert_eq!(offset_of!(c::Id, spi), l::ID_SPI);
    assert_eq!(offset_of!(c::Id, proto), l::ID_PROTO);

    assert_eq!(size_of::<c::LifetimeCfg>(), l::LIFETIME_CFG_LEN);
    assert_eq!(size_of::<c::LifetimeCur>(), l::LIFETIME_CUR_LEN);
    assert_eq!(size_of::<c::Stats>(), l::STATS_LEN);

    assert_eq!(size_of::<c::UsersaInfo>(), l::USERSA_INFO_LEN);
    assert_eq!(size_of::<c::UsersaInfo>(), 224);
    assert_eq!(offset_of!(c::UsersaInfo, sel), l::SA_SEL);
    assert_eq!(offset_of!(c::UsersaInfo, id), l::SA_ID);
    assert_eq!(offset_of!(c::UsersaInfo, saddr), l::SA_SADDR);
    assert_eq!(offset_of!(c::UsersaInfo, lft), l::SA_LFT);
    assert_eq!(offset_of!(c::UsersaInfo, curlft), l::SA_CURLFT);
    assert_eq!(offset_of!(c::UsersaInfo, stats), l::SA_STATS);
    assert_eq!(offset_of!(c::UsersaInfo, seq), l::SA_SEQ);
    assert_eq!(offset_of!(c::UsersaInfo, reqid), l::SA_REQID);
    assert_eq!(offset_of!(c::UsersaInfo, family), l::SA_FAMILY);
    assert_eq!(offset_of!(c::UsersaInfo, mode), l::SA_MODE);
    assert_eq!(
        offset_of!(c::UsersaInfo, replay_window),
        l::SA_REPLAY_WINDOW
    );
    assert_eq!(offset_of!(c::UsersaInfo, flags), l::SA_FLAGS);

    assert_eq!(size_of::<c::UsersaId>(), l::USERSA_ID_LEN);
    assert_eq!(offset_of!(c::UsersaId, daddr), l::SAID_DADDR);
    assert_eq!(offset_of!(c::UsersaId, spi), l::SAID_SPI);
    assert_eq!(offset_of!(c::UsersaId, family), l::SAID_FAMILY);
    assert_eq!(offset_of!(c::UsersaId, proto), l::SAID_PROTO);

    assert_eq!(size_of::<c::UserpolicyInfo>(), l::USERPOLICY_INFO_LEN);
    assert_eq!(offset_of!(c::UserpolicyInfo, sel), l::POL_SEL);
    assert_eq!(offset_of!(c::UserpolicyInfo, lft), l::POL_LFT);
    assert_eq!(offset_of!(c::UserpolicyInfo, curlft), l::POL_CURLFT);
    assert_eq!(offset_of!(c::UserpolicyInfo, priority), l::POL_PRIORITY);
    assert_eq!(offset_of!(c::UserpolicyInfo, index), l::POL_INDEX);
    assert_eq!(offset_of!(c::UserpolicyInfo, dir), l::POL_DIR);
    assert_eq!(offset_of!(c::UserpolicyInfo, action), l::POL_ACTION);
    assert_eq!(offset_of!(c::UserpolicyInfo, flags), l::POL_FLAGS);
    assert_eq!(offset_of!(c::UserpolicyInfo, share), l::POL_SHARE);

    assert_eq!(size_of::<c::UserpolicyId>(), l::USERPOLICY_ID_LEN);
    assert_eq!(offset_of!(c::UserpolicyId, sel), l::POLID_SEL);
    assert_eq!(offset_of!(c::UserpolicyId, index), l::POLID_INDEX);
    assert_eq!(offset_of!(c::UserpolicyId, dir), l::POLID_DIR);

    assert_eq!(size_of::<c::UserTmpl>(), l::USER_TMPL_LEN);
    assert_eq!(offset_of!(c::UserTmpl, id), l::TMPL_ID);
    assert_eq!(offset_of!(c::UserTmpl, family), l::TMPL_FAMILY);
    assert_eq!(offset_of!(c::UserTmpl, saddr), l::TMPL_SADDR);
    assert_eq!(offset_of!(c::UserTmpl, reqid), l::TMPL_REQID);
    assert_eq!(offset_of!(c::UserTmpl, mode), l::TMPL_MODE);
    assert_eq!(offset_of!(c::UserTmpl, share), l::TMPL_SHARE);
    assert_eq!(offset_of!(c::UserTmpl, optional), l::TMPL_OPTIONAL);
    assert_eq!(offset_of!(c::UserTmpl, aalgos), l::TMPL_AALGOS);
    assert_eq!(offset_of!(c::UserTmpl, ealgos), l::TMPL_EALGOS);
    assert_eq!(offset_of!(c::UserTmpl, calgos), l::TMPL_CALGOS);

    assert_eq!(size_of::<c::Algo>(), l::ALGO_LEN);
    assert_eq!(size_of::<c::AlgoAuth>(), l::ALGO_AUTH_LEN);
    assert_eq!(offset_of!(c::AlgoAuth, key_len), l::ALGO_KEY_BITS);
    assert_eq!(offset_of!(c::AlgoAuth, trunc_len), l::ALGO_TRUNC_BITS);

    assert_eq!(size_of::<c::EncapTmpl>(), l::ENCAP_TMPL_LEN);
    assert_eq!(offset_of!(c::EncapTmpl, encap_type), l::ENCAP_TYPE);
    assert_eq!(offset_of!(c::EncapTmpl, sport), l::ENCAP_SPORT);
    assert_eq!(offset_of!(c::EncapTmpl, dport), l::ENCAP_DPORT);
    assert_eq!(offset_of!(c::EncapTmpl, oa), l::ENCAP_OA);

    assert_eq!(size_of::<c::ReplayStateEsn>(), l::REPLAY_ESN_LEN);
    assert_eq!(offset_of!(c::ReplayStateEsn, bmp_len), l::ESN_BMP_LEN);
    assert_eq!(
        offset_of!(c::ReplayStateEsn, replay_window),
        l::ESN_REPLAY_WINDOW
    );
    assert_eq!(offset_of!(c::ReplayStateEsn, oseq), l::ESN_OSEQ);
    assert_eq!(offset_of!(c::ReplayStateEsn, seq), l::ESN_SEQ);
    assert_eq!(offset_of!(c::ReplayStateEsn, oseq_hi), l::ESN_OSEQ_HI);
    assert_eq!(offset_of!(c::ReplayStateEsn, seq_hi), l::ESN_SEQ_HI);

    assert_eq!(size_of::<c::UserExpire>(), l::USER_EXPIRE_LEN);
    assert_eq!(offset_of!(c::UserExpire, state), l::EXPIRE_STATE);
    assert_eq!(offset_of!(c::UserExpire, hard), l::EXPIRE_HARD);

    assert_eq!(size_of::<c::UserMapping>(), l::USER_MAPPING_LEN);
    assert_eq!(offset_of!(c::UserMapping, id), l::MAP_ID);
    assert_eq!(offset_of!(c::UserMapping, reqid), l::MAP_REQID);
    assert_eq!(offset_of!(c::UserMapping, old_saddr), l::MAP_OLD_SADDR);
    assert_eq!(offset_of!(c::UserMapping, new_saddr), l::MAP_NEW_SADDR);
    assert_eq!(offset_of!(c::UserMapping, old_sport), l::MAP_OLD_SPORT);
    assert_eq!(offset_of!(c::UserMapping, new_sport), l::MAP_NEW_SPORT);
}

// --- Byte-exact encodings, against iproute2 (testdata/capture.sh) ---------

#[test]
fn newsa_gcm_with_udp_encap_matches_iproute2() {
    let ours = gcm_udp_state().encode().unwrap();
    assert_bytes(&ours.bytes, &captured!("newsa_gcm_udp"), "GCM + ESP in UDP");
}

#[test]
fn newsa_cbc_sha256_tunnel_matches_iproute2() {
    let state = XfrmState {
        spi: 0x1000,
        reqid: 9,
        mode: XfrmMode::Tunnel,
        algorithms: EspAlgorithms::AesCbc {
            enc_key: counting(0, 16),
            integrity: Integrity::HmacSha256_128,
            integ_key: counting(0x20, 32),
        },
        encap: None,
        // No selector: XFRM_STATE_AF_UNSPEC, as `flag af-unspec`.
        selector: None,
        ..gcm_udp_state()
    };
    let ours = state.encode().unwrap();
    assert_bytes(
        &ours.bytes,
        &captured!("newsa_cbc_sha256_tunnel"),
        "CBC + SHA-256, tunnel",
    );
}

#[test]
fn newsa_cbc_sha1_without_replay_window_matches_iproute2() {
    // capture.sh's SHA-1 key is written in decimal-looking hex: 0x20..0x29,
    // then 0x30..0x39.
    let mut integ_key = counting(0x20, 10);
    integ_key.extend_from_slice(&counting(0x30, 10));
    let state = XfrmState {
        spi: 0x1003,
        reqid: 9,
        algorithms: EspAlgorithms::AesCbc {
            enc_key: counting(0, 32),
            integrity: Integrity::HmacSha1_96,
            integ_key,
        },
        replay_window: 0,
        encap: None,
        ..gcm_udp_state()
    };
    let ours = state.encode().unwrap();
    assert_bytes(&ours.bytes, &captured!("newsa_cbc_sha1"), "CBC + SHA-1");
}

#[test]
fn newsa_esn_matches_iproute2() {
    let state = XfrmState {
        spi: 0x1001,
        reqid: 9,
        replay_window: 128,
        esn: true,
        encap: None,
        ..gcm_udp_state()
    };
    let ours = state.encode().unwrap();
    assert_bytes(&ours.bytes, &captured!("newsa_esn"), "ESN, window 128");
}

#[test]
fn newsa_large_window_without_esn_matches_iproute2() {
    // 64 packets do not fit the legacy 32-bit bitmap: the ESN replay
    // state carries the window, without the ESN flag.
    let state = XfrmState {
        spi: 0x1002,
        reqid: 9,
        replay_window: 64,
        encap: None,
        ..gcm_udp_state()
    };
    let ours = state.encode().unwrap();
    assert_bytes(&ours.bytes, &captured!("newsa_window64"), "window 64");
}

#[test]
fn delsa_and_getsa_match_iproute2() {
    let ours = usersa_id(SPOKE, 0xc0ff_ee01, IPPROTO_ESP);
    // iproute2 appends an XFRMA_SRCADDR of 0.0.0.0 that the kernel ignores
    // for ESP (it looks ESP SAs up by destination and SPI alone).
    for theirs in [captured!("delsa"), captured!("getsa")] {
        assert_bytes(&ours, &theirs[..l::USERSA_ID_LEN], "xfrm_usersa_id");
        assert_eq!(
            &theirs[l::USERSA_ID_LEN..],
            &[
                20,
                0,
                u8::try_from(XFRMA_SRCADDR).unwrap(),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0
            ]
        );
    }
}

fn transport_policy() -> XfrmPolicy {
    XfrmPolicy {
        selector: XfrmSelector::gre(HUB, SPOKE),
        dir: XfrmDir::Out,
        priority: 100,
        action: XfrmAction::Allow,
        template: Some(XfrmTemplate {
            src: HUB,
            dst: SPOKE,
            reqid: 7,
            mode: XfrmMode::Transport,
        }),
    }
}

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn tunnel_policy() -> XfrmPolicy {
    XfrmPolicy {
        selector: XfrmSelector::between(prefix("10.1.1.0/24"), prefix("10.2.0.0/16")),
        dir: XfrmDir::Fwd,
        priority: 2000,
        action: XfrmAction::Allow,
        template: Some(XfrmTemplate {
            src: SPOKE,
            dst: HUB,
            reqid: 9,
            mode: XfrmMode::Tunnel,
        }),
    }
}

#[test]
fn policies_match_iproute2() {
    assert_bytes(
        &transport_policy().encode().bytes,
        &captured!("newpolicy_transport"),
        "transport policy",
    );
    assert_bytes(
        &tunnel_policy().encode().bytes,
        &captured!("newpolicy_tunnel"),
        "tunnel policy",
    );
    let block = XfrmPolicy {
        selector: XfrmSelector {
            proto: 6,
            dport: 179,
            ..XfrmSelector::between(prefix("10.1.1.0/24"), prefix("10.2.0.0/16"))
        },
        dir: XfrmDir::In,
        priority: 5,
        action: XfrmAction::Block,
        template: None,
    };
    assert_bytes(
        &block.encode().bytes,
        &captured!("newpolicy_block"),
        "block policy with a port",
    );
    assert_bytes(
        &userpolicy_id(&XfrmSelector::gre(HUB, SPOKE), XfrmDir::Out),
        &captured!("delpolicy"),
        "delete policy",
    );
    assert_bytes(
        &userpolicy_id(&tunnel_policy().selector, XfrmDir::Fwd),
        &captured!("getpolicy"),
        "get policy",
    );
}

#[test]
fn policies_decode_what_they_encode() {
    for policy in [transport_policy(), tunnel_policy()] {
        let bytes = policy.encode().bytes;
        assert_eq!(XfrmPolicy::decode(&bytes).unwrap(), policy);
    }
    let err = XfrmPolicy::decode(&[0; 100]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
}

#[test]
fn bad_keys_and_windows_are_refused_before_the_kernel() {
    let with = |algorithms| XfrmState {
        algorithms,
        ..gcm_udp_state()
    };
    let cases = [
        (
            with(EspAlgorithms::AesGcm {
                key_with_salt: counting(0, 32),
                icv_bits: 128,
            }),
            "an AES-GCM key with salt is 20, 28 or 36 bytes, not 32",
        ),
        (
            with(EspAlgorithms::AesGcm {
                key_with_salt: gcm_key(),
                icv_bits: 32,
            }),
            "an AES-GCM ICV is 64, 96 or 128 bits, not 32",
        ),
        (
            with(EspAlgorithms::AesCbc {
                enc_key: counting(0, 20),
                integrity: Integrity::HmacSha256_128,
                integ_key: counting(0, 32),
            }),
            "an AES-CBC key is 16, 24 or 32 bytes, not 20",
        ),
        (
            with(EspAlgorithms::AesCbc {
                enc_key: counting(0, 16),
                integrity: Integrity::HmacSha512_256,
                integ_key: counting(0, 32),
            }),
            "a hmac(sha512) key is 64 bytes, not 32",
        ),
        (
            XfrmState {
                replay_window: 4097,
                ..gcm_udp_state()
            },
            "a replay window is at most 4096 packets, not 4097",
        ),
    ];
    for (state, expected) in cases {
        assert_eq!(state.encode().err().as_deref(), Some(expected));
    }
    // And through add_state, with the SA named (no kernel involved: the
    // request is never sent).
    let err = Xfrm::open()
        .unwrap()
        .add_state(&XfrmState {
            replay_window: 5000,
            ..gcm_udp_state()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "adding SA esp spi 0xc0ffee01 192.0.2.1 -> 198.51.100.7 reqid 7: \
         a replay window is at most 4096 packets, not 5000"
    );
}

#[test]
fn integrity_parameters_follow_the_rfcs() {
    // RFC 2404 (SHA-1, 96), RFC 4868 2.3 (SHA-2, half the output).
    let table = [
        (Integrity::HmacSha1_96, "hmac(sha1)", 96, 20),
        (Integrity::HmacSha256_128, "hmac(sha256)", 128, 32),
        (Integrity::HmacSha384_192, "hmac(sha384)", 192, 48),
        (Integrity::HmacSha512_256, "hmac(sha512)", 256, 64),
    ];
    for (alg, name, trunc, key) in table {
        assert_eq!(
            (alg.kernel_name(), alg.truncation_bits(), alg.key_len()),
            (name, trunc, key)
        );
    }
}

#[test]
fn keys_are_not_printed() {
    let shown = format!("{:?}", gcm_udp_state());
    assert!(
        shown.contains("AesGcm { key_bits: 256, icv_bits: 128, .. }"),
        "{shown}"
    );
    assert!(!shown.contains("1, 2, 3"), "{shown}");
}

#[test]
fn stats_are_read_from_the_usersa_info() {
    let mut info = [0u8; l::USERSA_INFO_LEN];
    put_u64(&mut info, l::SA_CURLFT, 1500);
    put_u64(&mut info, l::SA_CURLFT + 8, 3);
    put_u64(&mut info, l::SA_CURLFT + 16, 1_700_000_000);
    put_u64(&mut info, l::SA_CURLFT + 24, 1_700_000_005);
    put_u32(&mut info, l::SA_STATS, 4);
    put_u32(&mut info, l::SA_STATS + 4, 5);
    put_u32(&mut info, l::SA_STATS + 8, 6);
    assert_eq!(
        decode_stats(&info),
        XfrmStateStats {
            packets: 3,
            bytes: 1500,
            add_time: 1_700_000_000,
            use_time: 1_700_000_005,
            outside_window: 4,
            replayed: 5,
            integrity_failed: 6,
        }
    );
}

#[test]
fn request_header() {
    use crate::sys::netlink::request_packet;
    let packet = request_packet(XFRM_MSG_NEWSA, 0, 7, &[1, 2, 3, 4]).unwrap();
    assert_eq!(
        &packet[..],
        &[
            20, 0, 0, 0, // length
            0x10, 0, // XFRM_MSG_NEWSA
            5, 0, // NLM_F_REQUEST | NLM_F_ACK
            7, 0, 0, 0, // seq
            0, 0, 0, 0, // port
            1, 2, 3, 4,
        ]
    );
    let dump = request_packet(XFRM_MSG_GETSA, NLM_F_DUMP, 8, &[]).unwrap();
    assert_eq!(u16::from_ne_bytes([dump[6], dump[7]]), 0x301);
}

// --- The kernel of this host -----------------------------------------------

fn ip_xfrm_policies(ns: &integration::Netns) -> String {
    String::from_utf8(ns.ip(["xfrm", "policy", "list"]).unwrap().stdout).unwrap()
}

#[test]
fn policies_round_trip_in_the_kernel() {
    in_netns_with("xfrmpol", |ns| {
        let mut x = Xfrm::open().unwrap();
        let out = transport_policy();
        let inbound = XfrmPolicy {
            selector: XfrmSelector::gre(SPOKE, HUB),
            dir: XfrmDir::In,
            template: Some(XfrmTemplate {
                src: SPOKE,
                dst: HUB,
                reqid: 7,
                mode: XfrmMode::Transport,
            }),
            ..out
        };
        let fwd = tunnel_policy();
        let block = XfrmPolicy {
            selector: XfrmSelector {
                proto: 17,
                dport: 4789,
                ..XfrmSelector::between(prefix("10.9.0.0/16"), prefix("0.0.0.0/0"))
            },
            dir: XfrmDir::Out,
            priority: 1,
            action: XfrmAction::Block,
            template: None,
        };
        for p in [&out, &inbound, &fwd, &block] {
            x.add_policy(p).unwrap();
        }

        for p in [&out, &inbound, &fwd, &block] {
            assert_eq!(&x.get_policy(&p.selector, p.dir).unwrap(), p);
        }
        let mut listed = x.policies().unwrap();
        listed.sort_by_key(|p| (p.priority, p.dir.to_kernel()));
        assert_eq!(listed, vec![block, inbound, out, fwd]);

        // What iproute2 reads back.
        let shown = ip_xfrm_policies(ns);
        for expected in [
            "src 192.0.2.1/32 dst 198.51.100.7/32 proto gre \n\tdir out priority 100",
            "tmpl src 192.0.2.1 dst 198.51.100.7\n\t\tproto esp reqid 7 mode transport",
            "src 198.51.100.7/32 dst 192.0.2.1/32 proto gre \n\tdir in priority 100",
            "src 10.1.1.0/24 dst 10.2.0.0/16 \n\tdir fwd priority 2000",
            "tmpl src 198.51.100.7 dst 192.0.2.1\n\t\tproto esp reqid 9 mode tunnel",
            "src 10.9.0.0/16 dst 0.0.0.0/0 proto udp dport 4789 \n\tdir out action block priority 1",
        ] {
            assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
        }

        // Twice: EEXIST, named.
        let err = x.add_policy(&out).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::EEXIST), "{err}");
        assert_eq!(
            err.to_string(),
            "adding policy src 192.0.2.1/32 dst 198.51.100.7/32 proto 47 dir out \
             priority 100: File exists (os error 17)"
        );
        // Update: replaced in place.
        let moved = XfrmPolicy {
            priority: 50,
            template: Some(XfrmTemplate {
                reqid: 8,
                ..out.template.unwrap()
            }),
            ..out
        };
        x.update_policy(&moved).unwrap();
        assert_eq!(x.get_policy(&out.selector, out.dir).unwrap(), moved);
        // Update of one that is not there adds it.
        let fresh = XfrmPolicy {
            selector: XfrmSelector::gre(HUB, Ipv4Addr::new(203, 0, 113, 9)),
            ..out
        };
        x.update_policy(&fresh).unwrap();
        assert_eq!(x.get_policy(&fresh.selector, fresh.dir).unwrap(), fresh);

        for p in [&moved, &inbound, &fwd, &block, &fresh] {
            x.del_policy(&p.selector, p.dir).unwrap();
        }
        assert_eq!(x.policies().unwrap(), vec![]);
        assert_eq!(ip_xfrm_policies(ns), "");

        let err = x.del_policy(&out.selector, out.dir).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ENOENT), "{err}");
        assert!(
            err.to_string().starts_with(
                "removing policy src 192.0.2.1/32 dst 198.51.100.7/32 proto 47 dir out: \
                 No such file or directory"
            ),
            "{err}"
        );
        let err = x.get_policy(&out.selector, out.dir).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ENOENT), "{err}");
        // The same selector in another direction is another policy.
        x.add_policy(&out).unwrap();
        let err = x.get_policy(&out.selector, XfrmDir::In).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ENOENT), "{err}");
    });
}

#[test]
fn state_requests_without_sas() {
    // What this host can check of the SA calls: lookups and deletes of SAs
    // that are not there, and an empty dump.
    in_netns("xfrmnosa", || {
        let mut x = Xfrm::open().unwrap();
        assert_eq!(x.states().unwrap(), vec![]);
        assert_eq!(x.del_states_by_reqid(7).unwrap(), 0);
        let err = x.del_state(SPOKE, 0xc0ff_ee01, IPPROTO_ESP).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ESRCH), "{err}");
        assert!(
            err.to_string().starts_with(
                "removing SA proto 50 spi 0xc0ffee01 dst 198.51.100.7: No such process"
            ),
            "{err}"
        );
        let err = x.get_state_stats(SPOKE, 0xc0ff_ee01).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ESRCH), "{err}");
        assert!(
            err.to_string()
                .starts_with("reading SA esp spi 0xc0ffee01 dst 198.51.100.7: "),
            "{err}"
        );
    });
}

/// Adds `state`, or says which kernel feature is missing (`None`).
fn try_add(x: &mut Xfrm, state: &XfrmState, test: &str, algorithm: &str) -> Option<()> {
    match x.add_state(state) {
        Ok(()) => Some(()),
        Err(e) if raw_os_error(&e) == Some(libc::EPROTONOSUPPORT) => {
            skip(test, "ESP (esp4, CONFIG_INET_ESP)", &e);
            None
        }
        Err(e) if raw_os_error(&e) == Some(libc::ENOSYS) => {
            skip(test, &format!("the {algorithm} algorithm"), &e);
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn states_round_trip_when_the_kernel_has_esp() {
    const TEST: &str = "states_round_trip_when_the_kernel_has_esp";
    in_netns_with("xfrmsa", |ns| {
        let mut x = Xfrm::open().unwrap();
        let cbc = XfrmState {
            spi: 0x1000,
            reqid: 9,
            mode: XfrmMode::Tunnel,
            algorithms: EspAlgorithms::AesCbc {
                enc_key: counting(0, 16),
                integrity: Integrity::HmacSha256_128,
                integ_key: counting(0x20, 32),
            },
            replay_window: 64,
            encap: None,
            selector: None,
            ..gcm_udp_state()
        };
        if try_add(&mut x, &cbc, TEST, "cbc(aes) + hmac(sha256)").is_none() {
            return;
        }
        let shown = String::from_utf8(ns.ip(["xfrm", "state", "list"]).unwrap().stdout).unwrap();
        assert!(
            shown.contains("proto esp spi 0x00001000 reqid 9 mode tunnel"),
            "{shown}"
        );
        assert!(shown.contains("flag af-unspec"), "{shown}");
        assert!(shown.contains("auth-trunc hmac(sha256)"), "{shown}");
        let stats = x.get_state_stats(SPOKE, 0x1000).unwrap();
        assert_eq!((stats.packets, stats.bytes), (0, 0));
        assert!(stats.add_time > 0, "{stats:?}");

        let err = x.add_state(&cbc).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::EEXIST), "{err}");

        let gcm = gcm_udp_state();
        if try_add(&mut x, &gcm, TEST, "rfc4106(gcm(aes))").is_some() {
            let shown =
                String::from_utf8(ns.ip(["xfrm", "state", "list"]).unwrap().stdout).unwrap();
            assert!(
                shown.contains("encap type espinudp sport 4500 dport 4501 addr 0.0.0.0"),
                "{shown}"
            );
            assert!(shown.contains("aead rfc4106(gcm(aes))"), "{shown}");
            assert!(
                shown.contains("sel src 192.0.2.1/32 dst 198.51.100.7/32 proto gre"),
                "{shown}"
            );
            let mut ids = x.states().unwrap();
            ids.sort_by_key(|s| s.spi);
            assert_eq!(
                ids,
                vec![
                    XfrmStateId {
                        src: HUB,
                        dst: SPOKE,
                        spi: 0x1000,
                        proto: IPPROTO_ESP,
                        reqid: 9,
                    },
                    XfrmStateId {
                        src: HUB,
                        dst: SPOKE,
                        spi: 0xc0ff_ee01,
                        proto: IPPROTO_ESP,
                        reqid: 7,
                    },
                ]
            );
            x.del_state(SPOKE, 0xc0ff_ee01, IPPROTO_ESP).unwrap();
        }
        assert_eq!(x.del_states_by_reqid(9).unwrap(), 1);
        assert_eq!(x.states().unwrap(), vec![]);
    });
}

#[test]
fn ike_socket_options() {
    in_netns("xfrmsock", || {
        let ike = UdpSocket::bind("127.0.0.1:0").unwrap();
        bypass_policies(&ike).unwrap();
        assert_eq!(udp_encap(&ike).unwrap(), 0);
        let natt = UdpSocket::bind("127.0.0.1:0").unwrap();
        bypass_policies(&natt).unwrap();
        set_udp_encap_espinudp(&natt).unwrap();
        assert_eq!(udp_encap(&natt).unwrap(), UDP_ENCAP_ESPINUDP);
    });
}

#[test]
fn bypassed_sockets_pass_blocking_policies() {
    // Two namespaces over a veth pair: loopback traffic never meets XFRM
    // (lo has disable_xfrm set).
    let lab = integration::Lab::new("xfrmbypass").unwrap();
    let hub = lab.netns("hub").unwrap();
    let peer = lab.netns("peer").unwrap();
    let (hub_link, peer_link) = lab.veth(&hub, &peer).unwrap();
    hub_link.add_addr("192.0.2.1/24").unwrap();
    peer_link.add_addr("192.0.2.2/24").unwrap();
    hub_link.set_up().unwrap();
    peer_link.set_up().unwrap();
    let far = peer
        .run_in(|| UdpSocket::bind("192.0.2.2:500").unwrap())
        .unwrap();
    far.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();

    hub.run_in(move || {
        // Block everything, both ways.
        let mut x = Xfrm::open().unwrap();
        let any = XfrmSelector::between(prefix("0.0.0.0/0"), prefix("0.0.0.0/0"));
        for dir in [XfrmDir::Out, XfrmDir::In] {
            x.add_policy(&XfrmPolicy {
                selector: any,
                dir,
                priority: 0,
                action: XfrmAction::Block,
                template: None,
            })
            .unwrap();
        }
        let plain = UdpSocket::bind("192.0.2.1:0").unwrap();
        let err = plain.send_to(b"x", "192.0.2.2:500").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");

        let ike = UdpSocket::bind("192.0.2.1:500").unwrap();
        bypass_policies(&ike).unwrap();
        // The sockets' policies are not the SPD's.
        assert_eq!(x.policies().unwrap().len(), 2);
        ike.send_to(b"init", "192.0.2.2:500").unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = far.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from.to_string().as_str()),
            (&b"init"[..], "192.0.2.1:500")
        );
        far.send_to(b"resp", from).unwrap();
        ike.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (n, _) = ike.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"resp");
    })
    .unwrap();
}

// --- Lifetimes, ESN sequence numbers, updates and events -------------------

/// The SA of `newsa_esn_seq_limits_udp` in capture.sh: ESN with window 64,
/// the sequence numbers at 2^33 - 4, soft and hard limits in seconds and
/// bytes, ESP in UDP.
fn esn_limits_state() -> XfrmState {
    XfrmState {
        spi: 0x1004,
        reqid: 9,
        replay_window: 64,
        esn: true,
        initial_seq: 0x1_ffff_fffc,
        lifetime: XfrmLifetime {
            soft_bytes: 1000,
            hard_bytes: 2000,
            soft_add_seconds: 30,
            hard_add_seconds: 60,
            ..XfrmLifetime::default()
        },
        ..gcm_udp_state()
    }
}

#[test]
fn newsa_with_esn_sequence_numbers_and_limits_matches_iproute2() {
    let ours = esn_limits_state().encode().unwrap();
    assert_bytes(
        &ours.bytes,
        &captured!("newsa_esn_seq_limits_udp"),
        "ESN from 2^33 - 4, limits, ESP in UDP",
    );
}

#[test]
fn updsa_with_a_new_port_matches_iproute2() {
    // `ip xfrm state update` sends the whole SA, as NEWSA does.
    let state = XfrmState {
        encap: Some(UdpEncap {
            sport: 4500,
            dport: 4502,
        }),
        ..gcm_udp_state()
    };
    assert_bytes(
        &state.encode().unwrap().bytes,
        &captured!("updsa_gcm_udp"),
        "update with dport 4502",
    );
    let packet = crate::sys::netlink::request_packet(XFRM_MSG_UPDSA, 0, 1, &[]).unwrap();
    assert_eq!(u16::from_ne_bytes([packet[4], packet[5]]), 0x1a);
}

#[test]
fn mapping_interval_is_the_last_attribute() {
    // iproute2 6.1 cannot send XFRMA_MTIMER_THRESH: its capture plus the
    // attribute (length 8, type 32, the seconds).
    let state = XfrmState {
        mapping_interval: Some(2),
        ..gcm_udp_state()
    };
    let mut expected = captured!("newsa_gcm_udp");
    expected.extend_from_slice(&[8, 0, 32, 0, 2, 0, 0, 0]);
    assert_bytes(
        &state.encode().unwrap().bytes,
        &expected,
        "with XFRMA_MTIMER_THRESH",
    );
}

#[test]
fn sequence_numbers_without_esn_use_the_esn_replay_state() {
    // A start below 2^32 without ESN: the replay state carries it, no ESN
    // flag, the high halves 0.
    let state = XfrmState {
        initial_seq: 0xffff_fff0,
        ..gcm_udp_state()
    };
    let bytes = state.encode().unwrap().bytes;
    assert_eq!(bytes[l::SA_FLAGS] & XFRM_STATE_ESN, 0);
    assert_eq!(bytes[l::SA_REPLAY_WINDOW], 0);
    let info = XfrmStateInfo::decode(&bytes).unwrap();
    assert_eq!(
        info.replay,
        Some(XfrmReplay {
            oseq: 0xffff_fff0,
            seq: 0xffff_fff0,
            window: 32
        })
    );
}

#[test]
fn esn_and_mapping_mistakes_are_refused_before_the_kernel() {
    let cases = [
        (
            XfrmState {
                esn: true,
                replay_window: 0,
                ..gcm_udp_state()
            },
            "an ESN SA needs a replay window above 0",
        ),
        (
            XfrmState {
                initial_seq: 1 << 32,
                ..gcm_udp_state()
            },
            "sequence number 0x100000000 needs ESN (32 bits without it)",
        ),
        (
            XfrmState {
                mapping_interval: Some(1),
                encap: None,
                ..gcm_udp_state()
            },
            "a mapping report interval (XFRMA_MTIMER_THRESH) needs UDP encapsulation",
        ),
    ];
    for (state, expected) in cases {
        assert_eq!(state.encode().err().as_deref(), Some(expected));
    }
}

#[test]
fn state_info_decodes_what_newsa_encodes() {
    // The kernel's GETSA answer has NEWSA's layout: the info, then
    // attributes (here our own request's, keys and all, which are skipped).
    let state = XfrmState {
        mapping_interval: Some(1),
        ..esn_limits_state()
    };
    let info = XfrmStateInfo::decode(&state.encode().unwrap().bytes).unwrap();
    assert_eq!(
        info,
        XfrmStateInfo {
            id: XfrmStateId {
                src: HUB,
                dst: SPOKE,
                spi: 0x1004,
                proto: IPPROTO_ESP,
                reqid: 9,
            },
            esn: true,
            lifetime: state.lifetime,
            stats: XfrmStateStats::default(),
            encap: Some(UdpEncap {
                sport: 4500,
                dport: 4501
            }),
            replay: Some(XfrmReplay {
                oseq: 0x1_ffff_fffc,
                seq: 0x1_ffff_fffc,
                window: 64
            }),
            mapping_interval: Some(1),
        }
    );
    let err = XfrmStateInfo::decode(&[0; 100]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    // A truncated attribute is named.
    let mut bytes = gcm_udp_state().encode().unwrap().bytes.to_vec();
    bytes.truncate(l::USERSA_INFO_LEN);
    bytes.extend_from_slice(&[8, 0, 4, 0, 0, 0, 0, 0]);
    let err = XfrmStateInfo::decode(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("SA attribute 4 of 4 bytes"),
        "{err}"
    );
}

/// A netlink message as the kernel multicasts it: header, then `payload`.
fn event(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = u32::try_from(16 + payload.len()).unwrap();
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// `struct xfrm_user_expire` of `state`, with `hard`, and the mark
/// attribute the kernel appends (build_expire).
fn expire_payload(state: &XfrmState, hard: bool) -> Vec<u8> {
    let mut out = state.encode().unwrap().bytes[..l::USERSA_INFO_LEN].to_vec();
    out.push(u8::from(hard));
    out.resize(l::USER_EXPIRE_LEN, 0);
    // XFRMA_MARK (21): value and mask 0.
    out.extend_from_slice(&[12, 0, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

fn mapping_payload() -> Vec<u8> {
    let mut m = vec![0u8; l::USER_MAPPING_LEN];
    m[..l::USERSA_ID_LEN].copy_from_slice(&usersa_id(HUB, 0xc0ff_ee02, IPPROTO_ESP));
    put_u32(&mut m, l::MAP_REQID, 7);
    m[l::MAP_OLD_SADDR..l::MAP_OLD_SADDR + 4].copy_from_slice(&SPOKE.octets());
    m[l::MAP_NEW_SADDR..l::MAP_NEW_SADDR + 4].copy_from_slice(&[203, 0, 113, 5]);
    m[l::MAP_OLD_SPORT..l::MAP_OLD_SPORT + 2].copy_from_slice(&4501u16.to_be_bytes());
    m[l::MAP_NEW_SPORT..l::MAP_NEW_SPORT + 2].copy_from_slice(&61000u16.to_be_bytes());
    m
}

#[test]
fn expire_and_mapping_events_are_parsed() {
    let state = esn_limits_state();
    let mut datagram = event(XFRM_MSG_EXPIRE, &expire_payload(&state, false));
    datagram.extend(event(XFRM_MSG_EXPIRE, &expire_payload(&state, true)));
    datagram.extend(event(XFRM_MSG_MAPPING, &mapping_payload()));
    datagram.extend(event(XFRM_MSG_POLEXPIRE, &[0; 40]));
    let mut events = Vec::new();
    monitor::parse_events(&datagram, &mut events).unwrap();
    let id = XfrmStateId {
        src: HUB,
        dst: SPOKE,
        spi: 0x1004,
        proto: IPPROTO_ESP,
        reqid: 9,
    };
    match &events[..] {
        [
            XfrmEvent::Expire {
                state: soft,
                hard: false,
            },
            XfrmEvent::Expire {
                state: hard,
                hard: true,
            },
            XfrmEvent::Mapping(mapping),
            XfrmEvent::Other(XFRM_MSG_POLEXPIRE),
        ] => {
            assert_eq!((soft.id, hard.id), (id, id));
            assert_eq!(soft.lifetime, state.lifetime);
            // No attributes of the SA come with an expire.
            assert_eq!((soft.encap, soft.replay), (None, None));
            assert_eq!(
                *mapping,
                XfrmMapping {
                    dst: HUB,
                    spi: 0xc0ff_ee02,
                    reqid: 7,
                    old: "198.51.100.7:4501".parse().unwrap(),
                    new: "203.0.113.5:61000".parse().unwrap(),
                }
            );
        }
        other => panic!("{other:?}"),
    }

    // Truncated: an error, not a guess.
    let mut short = Vec::new();
    let cut = &event(XFRM_MSG_MAPPING, &mapping_payload()[..40]);
    let err = monitor::parse_events(cut, &mut short).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected XFRM mapping of 40 bytes from the kernel"
    );
    let mut bad_len = event(XFRM_MSG_EXPIRE, &[0; 8]);
    bad_len[0] = 200;
    let err = monitor::parse_events(&bad_len, &mut short).unwrap_err();
    assert!(
        err.to_string()
            .contains("XFRM event of 200 bytes in 24 left"),
        "{err}"
    );
    // An IPv6 SA's expire is not ours to read.
    let mut v6 = expire_payload(&state, true);
    put_u16_at(&mut v6, l::SA_FAMILY, 10);
    let mut events = Vec::new();
    monitor::parse_events(&event(XFRM_MSG_EXPIRE, &v6), &mut events).unwrap();
    assert_eq!(events, vec![XfrmEvent::Other(XFRM_MSG_EXPIRE)]);
}

fn put_u16_at(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn the_monitor_hears_the_expire_group() {
    // Without esp4 no SA can expire here, but a policy can: its hard
    // lifetime makes the kernel delete it and send XFRM_MSG_POLEXPIRE to
    // XFRMNLGRP_EXPIRE (xfrm_exp_policy_notify), which the monitor reports
    // as another message. That is the subscription working.
    in_netns("xfrmmon", || {
        let mut monitor = XfrmMonitor::open().unwrap();
        let mut events = Vec::new();
        assert!(!monitor.read(&mut events).unwrap(), "{events:?}");
        let mut x = Xfrm::open().unwrap();
        let mut msg = transport_policy().encode();
        let lifetime = XfrmLifetime {
            hard_add_seconds: 1,
            ..XfrmLifetime::default()
        };
        lifetime.encode(&mut msg.bytes[l::POL_LFT..l::POL_CURLFT]);
        x.request(XFRM_MSG_NEWPOLICY, 0, &msg.bytes, &|| "adding".into())
            .unwrap();
        // The kernel's policy timer: a second, then the event. A wide
        // margin for a loaded machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while events.is_empty() && std::time::Instant::now() < deadline {
            let ready = crate::sys::poll::poll_readable(
                &[monitor.as_fd()],
                Some(std::time::Duration::from_secs(1)),
            )
            .unwrap();
            if ready.is_ready(0) {
                monitor.read(&mut events).unwrap();
            }
        }
        assert_eq!(events, vec![XfrmEvent::Other(XFRM_MSG_POLEXPIRE)]);
        assert_eq!(x.policies().unwrap(), vec![], "the kernel removed it");
    });
}

#[test]
fn updating_or_reading_a_missing_state_names_it() {
    in_netns("xfrmupd", || {
        let mut x = Xfrm::open().unwrap();
        // AES-CBC, which this host's kernel has (not AES-GCM).
        let cbc = XfrmState {
            algorithms: EspAlgorithms::AesCbc {
                enc_key: counting(0, 16),
                integrity: Integrity::HmacSha256_128,
                integ_key: counting(0x20, 32),
            },
            ..gcm_udp_state()
        };
        let err = x.update_state(&cbc).unwrap_err();
        // ESRCH from xfrm_state_update, or the kernel without esp4 refusing
        // to build the SA first.
        assert!(
            [Some(libc::ESRCH), Some(libc::EPROTONOSUPPORT)].contains(&raw_os_error(&err)),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("updating SA esp spi 0xc0ffee01 192.0.2.1 -> 198.51.100.7 reqid 7: "),
            "{err}"
        );
        let err = x.get_state(SPOKE, 0xc0ff_ee01).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ESRCH), "{err}");
        let err = x
            .update_state(&XfrmState {
                esn: true,
                replay_window: 0,
                ..gcm_udp_state()
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    });
}

#[test]
fn states_update_and_read_back_when_the_kernel_has_esp() {
    const TEST: &str = "states_update_and_read_back_when_the_kernel_has_esp";
    in_netns("xfrmupdsa", || {
        let mut x = Xfrm::open().unwrap();
        let state = XfrmState {
            mapping_interval: Some(1),
            ..esn_limits_state()
        };
        if try_add(&mut x, &state, TEST, "rfc4106(gcm(aes))").is_none() {
            return;
        }
        let info = x.get_state(SPOKE, 0x1004).unwrap();
        assert!(info.esn, "{info:?}");
        assert_eq!(info.lifetime, state.lifetime);
        assert_eq!(
            info.replay,
            Some(XfrmReplay {
                oseq: 0x1_ffff_fffc,
                seq: 0x1_ffff_fffc,
                window: 64
            })
        );
        // The kernel has XFRMA_MTIMER_THRESH since 5.17 and reports it back.
        assert_eq!(info.mapping_interval, Some(1));

        // The peer's NAT port moved: the kernel copies the encapsulation
        // (and the limits) into the SA; the sequence numbers stay.
        let moved = XfrmState {
            encap: Some(UdpEncap {
                sport: 4500,
                dport: 4502,
            }),
            lifetime: XfrmLifetime {
                soft_bytes: 5000,
                ..state.lifetime
            },
            initial_seq: 0,
            ..state.clone()
        };
        x.update_state(&moved).unwrap();
        let info = x.get_state(SPOKE, 0x1004).unwrap();
        assert_eq!(
            info.encap,
            Some(UdpEncap {
                sport: 4500,
                dport: 4502
            })
        );
        assert_eq!(info.lifetime.soft_bytes, 5000);
        assert_eq!(info.replay.map(|r| r.oseq), Some(0x1_ffff_fffc));

        // Without encapsulation the update is refused, not half done.
        let err = x
            .update_state(&XfrmState {
                encap: None,
                mapping_interval: None,
                ..moved.clone()
            })
            .unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::EINVAL), "{err}");
        x.del_state(SPOKE, 0x1004, IPPROTO_ESP).unwrap();
        let err = x.update_state(&moved).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::ESRCH), "{err}");
    });
}

//! ESP SAs: the algorithms and keys, UDP encapsulation, the NEWSA
//! request, and what the kernel counted.

use std::{fmt, io, net::Ipv4Addr};

use zeroize::Zeroizing;

use super::{
    AF_INET, LEGACY_REPLAY_WINDOW, MAX_REPLAY_WINDOW, UDP_ENCAP_ESPINUDP, XFRM_STATE_AF_UNSPEC,
    XFRM_STATE_ESN, XFRMA_ALG_AEAD, XFRMA_ALG_AUTH_TRUNC, XFRMA_ALG_CRYPT, XFRMA_ENCAP,
    XFRMA_MTIMER_THRESH, XFRMA_REPLAY_ESN_VAL,
    codec::{
        Message, attributes, get_addr, get_be16, get_be32, get_u16, get_u32, get_u64, invalid_data,
        put_addr, put_be16, put_be32, put_u16, put_u32,
    },
    layout as l,
    selector::{XfrmLifetime, XfrmMode, XfrmSelector},
};
use crate::net::IPPROTO_ESP;

/// The integrity algorithm beside AES-CBC, with the truncation of RFC 2404
/// (SHA-1: 96 bits) and RFC 4868 (SHA-2: half the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// HMAC-SHA1-96 (RFC 2404), 20-byte key.
    HmacSha1_96,
    /// HMAC-SHA-256-128 (RFC 4868), 32-byte key.
    HmacSha256_128,
    /// HMAC-SHA-384-192 (RFC 4868), 48-byte key.
    HmacSha384_192,
    /// HMAC-SHA-512-256 (RFC 4868), 64-byte key.
    HmacSha512_256,
}

impl Integrity {
    /// The kernel's crypto API name.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Integrity::HmacSha1_96 => "hmac(sha1)",
            Integrity::HmacSha256_128 => "hmac(sha256)",
            Integrity::HmacSha384_192 => "hmac(sha384)",
            Integrity::HmacSha512_256 => "hmac(sha512)",
        }
    }

    /// The ICV's length in bits.
    pub fn truncation_bits(self) -> u32 {
        match self {
            Integrity::HmacSha1_96 => 96,
            Integrity::HmacSha256_128 => 128,
            Integrity::HmacSha384_192 => 192,
            Integrity::HmacSha512_256 => 256,
        }
    }

    /// The key's length in bytes (the hash's output, RFC 2404 2 / RFC
    /// 4868 2.1.1).
    pub fn key_len(self) -> usize {
        match self {
            Integrity::HmacSha1_96 => 20,
            Integrity::HmacSha256_128 => 32,
            Integrity::HmacSha384_192 => 48,
            Integrity::HmacSha512_256 => 64,
        }
    }
}

/// The ESP transform of an SA, with its keys (zeroed when dropped, never
/// printed).
#[derive(Clone, PartialEq, Eq)]
pub enum EspAlgorithms {
    /// AES-GCM (RFC 4106, `rfc4106(gcm(aes))`): `key_with_salt` is the AES
    /// key (16, 24 or 32 bytes) followed by the 4-byte salt, as IKEv2's
    /// KEYMAT gives them (RFC 4106 8.1); the ICV is 8, 12 or 16 bytes.
    AesGcm {
        key_with_salt: Zeroizing<Vec<u8>>,
        icv_bits: u32,
    },
    /// AES-CBC (RFC 3602, `cbc(aes)`, 16, 24 or 32-byte key) with an HMAC.
    AesCbc {
        enc_key: Zeroizing<Vec<u8>>,
        integrity: Integrity,
        integ_key: Zeroizing<Vec<u8>>,
    },
}

impl fmt::Debug for EspAlgorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EspAlgorithms::AesGcm {
                key_with_salt,
                icv_bits,
            } => f
                .debug_struct("AesGcm")
                .field("key_bits", &((key_with_salt.len().saturating_sub(4)) * 8))
                .field("icv_bits", icv_bits)
                .finish_non_exhaustive(),
            EspAlgorithms::AesCbc {
                enc_key, integrity, ..
            } => f
                .debug_struct("AesCbc")
                .field("key_bits", &(enc_key.len() * 8))
                .field("integrity", integrity)
                .finish_non_exhaustive(),
        }
    }
}

impl EspAlgorithms {
    /// The algorithm attributes of a NEWSA request, AEAD or encryption then
    /// integrity (iproute2's order). Keys of the wrong length are refused
    /// here, before the kernel says only "Invalid argument".
    pub(super) fn encode(&self, msg: &mut Message) -> Result<(), String> {
        match self {
            EspAlgorithms::AesGcm {
                key_with_salt,
                icv_bits,
            } => {
                if ![20, 28, 36].contains(&key_with_salt.len()) {
                    return Err(format!(
                        "an AES-GCM key with salt is 20, 28 or 36 bytes, not {}",
                        key_with_salt.len()
                    ));
                }
                // RFC 4106 3.2 / 8.3: 8, 12 or 16-byte ICVs.
                if ![64, 96, 128].contains(icv_bits) {
                    return Err(format!(
                        "an AES-GCM ICV is 64, 96 or 128 bits, not {icv_bits}"
                    ));
                }
                msg.attr(
                    XFRMA_ALG_AEAD,
                    &algo_auth("rfc4106(gcm(aes))", key_with_salt, *icv_bits),
                );
            }
            EspAlgorithms::AesCbc {
                enc_key,
                integrity,
                integ_key,
            } => {
                if ![16, 24, 32].contains(&enc_key.len()) {
                    return Err(format!(
                        "an AES-CBC key is 16, 24 or 32 bytes, not {}",
                        enc_key.len()
                    ));
                }
                if integ_key.len() != integrity.key_len() {
                    return Err(format!(
                        "a {} key is {} bytes, not {}",
                        integrity.kernel_name(),
                        integrity.key_len(),
                        integ_key.len()
                    ));
                }
                msg.attr(XFRMA_ALG_CRYPT, &algo("cbc(aes)", enc_key));
                msg.attr(
                    XFRMA_ALG_AUTH_TRUNC,
                    &algo_auth(
                        integrity.kernel_name(),
                        integ_key,
                        integrity.truncation_bits(),
                    ),
                );
            }
        }
        Ok(())
    }
}

/// UDP encapsulation of ESP (RFC 3948) for a spoke behind NAT: the ports
/// of the outer UDP header (`XFRMA_ENCAP`, `UDP_ENCAP_ESPINUDP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    /// The SA's source port (4500 on the hub for an outbound SA).
    pub sport: u16,
    /// The SA's destination port (the spoke's NAT-mapped port).
    pub dport: u16,
}

/// An ESP SA to install (`XFRM_MSG_NEWSA`), IPv4 outer addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XfrmState {
    /// Outer source address.
    pub src: Ipv4Addr,
    /// Outer destination address.
    pub dst: Ipv4Addr,
    /// SPI, in host order (the kernel gets it in network order).
    pub spi: u32,
    /// Ties the SA to the policies' templates with the same reqid.
    pub reqid: u32,
    pub mode: XfrmMode,
    pub algorithms: EspAlgorithms,
    /// Replay window in packets, 0 for no replay check (outbound SAs), at
    /// most [`MAX_REPLAY_WINDOW`]. Up to 32 it goes in the legacy field,
    /// above it (or with `esn`) in `XFRMA_REPLAY_ESN_VAL`, as iproute2 and
    /// strongSwan do.
    pub replay_window: u32,
    /// Extended sequence numbers (RFC 4303 2.2.1), when IKE negotiated
    /// them.
    pub esn: bool,
    /// ESP in UDP, for NAT traversal.
    pub encap: Option<UdpEncap>,
    /// The traffic the SA may carry. `None` leaves the selector empty and
    /// sets `XFRM_STATE_AF_UNSPEC`, so that the kernel does not fill in
    /// the outer family and inner traffic of any family matches: what
    /// strongSwan does for tunnel mode. A transport-mode SA for GRE takes
    /// [`XfrmSelector::gre`].
    pub selector: Option<XfrmSelector>,
    /// Soft limits make the kernel send `XFRM_MSG_EXPIRE` (hard 0) once;
    /// hard ones make it delete the SA and send `XFRM_MSG_EXPIRE` (hard 1).
    pub lifetime: XfrmLifetime,
    /// Where the sequence numbers start (RFC 4303 2.2, 64 bits with ESN):
    /// for an outbound SA the number of the last packet sent (the next one
    /// gets one more), for an inbound one the highest received. 0 for a
    /// new SA; tests start one just below 2^32 to cross into the ESN's high
    /// half. Above 0 it goes in `XFRMA_REPLAY_ESN_VAL` (oseq, seq and their
    /// high halves).
    pub initial_seq: u64,
    /// `XFRMA_MTIMER_THRESH` (Linux 5.17): an inbound SA in UDP reports a
    /// new source address or port of authenticated ESP (`XFRM_MSG_MAPPING`,
    /// the peer's NAT mapping moved) at most once per this many seconds
    /// while the port stays the same; without it, once per packet. Needs
    /// `encap` (the kernel refuses it otherwise); older kernels ignore it.
    pub mapping_interval: Option<u32>,
}

impl XfrmState {
    /// "esp spi 0xc0ffee01 192.0.2.1 -> 198.51.100.7 reqid 7" (messages).
    pub(super) fn label(&self) -> String {
        format!(
            "esp spi {:#010x} {} -> {} reqid {}",
            self.spi, self.src, self.dst, self.reqid
        )
    }

    /// The payload of an `XFRM_MSG_NEWSA` request: `xfrm_usersa_info`, then
    /// the algorithms, the encapsulation and the ESN replay state.
    pub(super) fn encode(&self) -> Result<Message, String> {
        let mut info = [0u8; l::USERSA_INFO_LEN];
        let mut flags = 0;
        match &self.selector {
            Some(sel) => sel.encode(&mut info[l::SA_SEL..l::SA_ID]),
            None => flags |= XFRM_STATE_AF_UNSPEC,
        }
        put_addr(&mut info[l::SA_ID + l::ID_DADDR..], self.dst);
        put_be32(&mut info, l::SA_ID + l::ID_SPI, self.spi);
        info[l::SA_ID + l::ID_PROTO] = IPPROTO_ESP;
        put_addr(&mut info[l::SA_SADDR..], self.src);
        self.lifetime
            .encode(&mut info[l::SA_LFT..l::SA_LFT + l::LIFETIME_CFG_LEN]);
        put_u32(&mut info, l::SA_REQID, self.reqid);
        put_u16(&mut info, l::SA_FAMILY, AF_INET);
        info[l::SA_MODE] = self.mode.to_kernel();
        if self.replay_window > MAX_REPLAY_WINDOW {
            return Err(format!(
                "a replay window is at most {MAX_REPLAY_WINDOW} packets, not {}",
                self.replay_window
            ));
        }
        // xfrm_init_replay: an ESN state needs a window, also outbound
        // (unless XFRMA_SA_DIR says out, Linux 6.10), else "Invalid
        // argument".
        if self.esn && self.replay_window == 0 {
            return Err("an ESN SA needs a replay window above 0".into());
        }
        if !self.esn && self.initial_seq > u64::from(u32::MAX) {
            return Err(format!(
                "sequence number {:#x} needs ESN (32 bits without it)",
                self.initial_seq
            ));
        }
        if self.mapping_interval.is_some() && self.encap.is_none() {
            return Err(
                "a mapping report interval (XFRMA_MTIMER_THRESH) needs UDP encapsulation".into(),
            );
        }
        // The kernel refuses a legacy window beside the ESN state.
        let esn_state =
            self.esn || self.replay_window > LEGACY_REPLAY_WINDOW || self.initial_seq != 0;
        if !esn_state {
            info[l::SA_REPLAY_WINDOW] = u8::try_from(self.replay_window).unwrap_or(u8::MAX);
        }
        if self.esn {
            flags |= XFRM_STATE_ESN;
        }
        info[l::SA_FLAGS] = flags;

        let mut msg = Message::new(&info);
        self.algorithms.encode(&mut msg)?;
        if let Some(encap) = self.encap {
            let mut tmpl = [0u8; l::ENCAP_TMPL_LEN];
            put_u16(&mut tmpl, l::ENCAP_TYPE, UDP_ENCAP_ESPINUDP);
            put_be16(&mut tmpl, l::ENCAP_SPORT, encap.sport);
            put_be16(&mut tmpl, l::ENCAP_DPORT, encap.dport);
            // encap_oa (the peer's original address) stays 0: the kernel
            // does not use it (strongSwan leaves it empty too).
            debug_assert_eq!(tmpl[l::ENCAP_OA], 0);
            msg.attr(XFRMA_ENCAP, &tmpl);
        }
        if esn_state {
            // Only the header: the kernel zeroes the bitmap it allocates
            // (xfrm_alloc_replay_state_esn), as for iproute2's request.
            let mut esn = [0u8; l::REPLAY_ESN_LEN];
            put_u32(
                &mut esn,
                l::ESN_BMP_LEN,
                self.replay_window.div_ceil(LEGACY_REPLAY_WINDOW),
            );
            put_u32(&mut esn, l::ESN_REPLAY_WINDOW, self.replay_window);
            // The same number for both directions: the kernel uses oseq on
            // output and seq on input.
            let (low, high) = split_seq(self.initial_seq);
            put_u32(&mut esn, l::ESN_OSEQ, low);
            put_u32(&mut esn, l::ESN_OSEQ_HI, high);
            put_u32(&mut esn, l::ESN_SEQ, low);
            put_u32(&mut esn, l::ESN_SEQ_HI, high);
            msg.attr(XFRMA_REPLAY_ESN_VAL, &esn);
        }
        if let Some(seconds) = self.mapping_interval {
            msg.attr(XFRMA_MTIMER_THRESH, &seconds.to_ne_bytes());
        }
        Ok(msg)
    }
}

/// What the kernel counted for an SA (`xfrm_lifetime_cur` and
/// `xfrm_stats` of `XFRM_MSG_GETSA`'s answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XfrmStateStats {
    /// Packets protected (outbound) or accepted (inbound).
    pub packets: u64,
    /// Their bytes (the inner packets').
    pub bytes: u64,
    /// When the SA was added (seconds since the epoch).
    pub add_time: u64,
    /// When it was first used, 0 if never.
    pub use_time: u64,
    /// Inbound packets dropped as too old for the replay window.
    pub outside_window: u32,
    /// Inbound packets dropped as replays.
    pub replayed: u32,
    /// Inbound packets whose ICV did not verify.
    pub integrity_failed: u32,
}

/// The low and high 32 bits of a 64-bit sequence number.
#[allow(clippy::cast_possible_truncation)] // the halves, by construction
fn split_seq(seq: u64) -> (u32, u32) {
    (seq as u32, (seq >> 32) as u32)
}

/// An SA as the kernel describes it (`XFRM_MSG_GETSA`'s answer, the state
/// in an `XFRM_MSG_EXPIRE`), without its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XfrmStateInfo {
    pub id: XfrmStateId,
    pub esn: bool,
    pub lifetime: XfrmLifetime,
    pub stats: XfrmStateStats,
    pub encap: Option<UdpEncap>,
    /// The sequence numbers, when the SA has the ESN replay state.
    pub replay: Option<XfrmReplay>,
    /// `XFRMA_MTIMER_THRESH`, when set.
    pub mapping_interval: Option<u32>,
}

/// The ESN replay state's counters (`struct xfrm_replay_state_esn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XfrmReplay {
    /// The last sequence number sent (outbound), high half included.
    pub oseq: u64,
    /// The highest sequence number received (inbound).
    pub seq: u64,
    /// The replay window, in packets.
    pub window: u32,
}

impl XfrmStateInfo {
    /// From `xfrm_usersa_info` and its attributes.
    pub(super) fn decode(payload: &[u8]) -> io::Result<XfrmStateInfo> {
        let info = payload
            .get(..l::USERSA_INFO_LEN)
            .ok_or_else(|| invalid_data(&format!("an SA of {} bytes", payload.len())))?;
        let mut out = XfrmStateInfo {
            id: decode_id(info),
            esn: info[l::SA_FLAGS] & XFRM_STATE_ESN != 0,
            lifetime: XfrmLifetime::decode(&info[l::SA_LFT..l::SA_CURLFT]),
            stats: decode_stats(info),
            encap: None,
            replay: None,
            mapping_interval: None,
        };
        for (kind, value) in attributes(&payload[l::USERSA_INFO_LEN..]) {
            let short = || invalid_data(&format!("SA attribute {kind} of {} bytes", value.len()));
            match kind {
                XFRMA_ENCAP => {
                    let t = value.get(..l::ENCAP_TMPL_LEN).ok_or_else(short)?;
                    out.encap = Some(UdpEncap {
                        sport: get_be16(t, l::ENCAP_SPORT),
                        dport: get_be16(t, l::ENCAP_DPORT),
                    });
                }
                XFRMA_REPLAY_ESN_VAL => {
                    let r = value.get(..l::REPLAY_ESN_LEN).ok_or_else(short)?;
                    let join =
                        |low, high| u64::from(get_u32(r, high)) << 32 | u64::from(get_u32(r, low));
                    out.replay = Some(XfrmReplay {
                        oseq: join(l::ESN_OSEQ, l::ESN_OSEQ_HI),
                        seq: join(l::ESN_SEQ, l::ESN_SEQ_HI),
                        window: get_u32(r, l::ESN_REPLAY_WINDOW),
                    });
                }
                XFRMA_MTIMER_THRESH => {
                    let v = value.get(..4).ok_or_else(short)?;
                    out.mapping_interval = Some(get_u32(v, 0));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Which SA an `xfrm_usersa_info` describes.
pub(super) fn decode_id(info: &[u8]) -> XfrmStateId {
    XfrmStateId {
        src: get_addr(info, l::SA_SADDR),
        dst: get_addr(info, l::SA_ID + l::ID_DADDR),
        spi: get_be32(info, l::SA_ID + l::ID_SPI),
        proto: info[l::SA_ID + l::ID_PROTO],
        reqid: get_u32(info, l::SA_REQID),
    }
}

/// Whether an `xfrm_usersa_info` is of an IPv4 SA.
pub(super) fn is_ipv4(info: &[u8]) -> bool {
    get_u16(info, l::SA_FAMILY) == AF_INET
}

/// An SA as a dump lists it (the fields that identify it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmStateId {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub proto: u8,
    pub reqid: u32,
}

/// `xfrm_usersa_id`: which SA (DELSA, GETSA).
pub(super) fn usersa_id(dst: Ipv4Addr, spi: u32, proto: u8) -> [u8; l::USERSA_ID_LEN] {
    let mut id = [0u8; l::USERSA_ID_LEN];
    put_addr(&mut id[l::SAID_DADDR..], dst);
    put_be32(&mut id, l::SAID_SPI, spi);
    put_u16(&mut id, l::SAID_FAMILY, AF_INET);
    id[l::SAID_PROTO] = proto;
    id
}

/// `struct xfrm_algo` with its key.
pub(super) fn algo(name: &str, key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; l::ALGO_LEN + key.len()]);
    put_name(&mut out, name);
    put_u32(&mut out, l::ALGO_KEY_BITS, key_bits(key));
    out[l::ALGO_LEN..].copy_from_slice(key);
    out
}

/// `struct xfrm_algo_auth` / `struct xfrm_algo_aead` (same layout) with
/// its key.
pub(super) fn algo_auth(name: &str, key: &[u8], trunc_bits: u32) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; l::ALGO_AUTH_LEN + key.len()]);
    put_name(&mut out, name);
    put_u32(&mut out, l::ALGO_KEY_BITS, key_bits(key));
    put_u32(&mut out, l::ALGO_TRUNC_BITS, trunc_bits);
    out[l::ALGO_AUTH_LEN..].copy_from_slice(key);
    out
}

pub(super) fn put_name(out: &mut [u8], name: &str) {
    // NUL-terminated within 64 bytes; the names used here are short.
    debug_assert!(name.len() < l::ALGO_NAME_LEN);
    out[..name.len()].copy_from_slice(name.as_bytes());
}

pub(super) fn key_bits(key: &[u8]) -> u32 {
    // Keys here are at most 64 bytes (checked by the callers' callers).
    u32::try_from(key.len() * 8).unwrap_or(u32::MAX)
}

pub(super) fn decode_stats(info: &[u8]) -> XfrmStateStats {
    XfrmStateStats {
        bytes: get_u64(info, l::SA_CURLFT),
        packets: get_u64(info, l::SA_CURLFT + 8),
        add_time: get_u64(info, l::SA_CURLFT + 16),
        use_time: get_u64(info, l::SA_CURLFT + 24),
        outside_window: get_u32(info, l::SA_STATS),
        replayed: get_u32(info, l::SA_STATS + 4),
        integrity_failed: get_u32(info, l::SA_STATS + 8),
    }
}

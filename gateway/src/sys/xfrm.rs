//! A small, blocking NETLINK_XFRM client for the kernel datapath: ESP
//! security associations (SAs) and security policies (SPs) for IPv4, and
//! the socket options that keep the IKE sockets out of the policies.
//!
//! The messages are built by hand with the layouts of `linux/xfrm.h` (the
//! uapi header, whose structures "may not change size"); each layout is
//! written down below as offsets with its size, and the tests hold them to
//! `#[repr(C)]` copies of the C structures and to the bytes iproute2's
//! `ip xfrm` sends for the same SA or policy. (The `netlink-packet-xfrm`
//! crate has these types too, but its parsers slice kernel input without
//! checking its length, and this module needs only a handful of messages.)
//! Everything is in host byte order except addresses, SPIs and ports, which
//! the kernel keeps in network order (`__be32`, `__be16`).
//!
//! Requests are answered the way [`super::netlink::Netlink`]'s are: one at a
//! time, acknowledged, sequence numbers checked, kernel errors turned into
//! `io::Error`s that name the SA or policy and carry the kernel's
//! extended-ack text, e.g. "adding SA esp spi 0xc0ffee01 192.0.2.1 ->
//! 198.51.100.7 reqid 7: Protocol not supported (os error 93); kernel says:
//! Requested type not found" (the kernel without esp4). Buffers that held
//! key material are zeroed when dropped.

use std::{
    fmt,
    io::{self, ErrorKind},
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd},
};

use netlink_packet_core::NLM_F_DUMP;
use netlink_sys::protocols::NETLINK_XFRM;
use zeroize::Zeroizing;

use super::netlink::{KernelError, Transport, open_socket};
use crate::net::Ipv4Prefix;

/// `UDP_ENCAP_ESPINUDP` (linux/udp.h): ESP in UDP as RFC 3948 frames it,
/// with the non-ESP marker for IKE on the same port.
pub const UDP_ENCAP_ESPINUDP: u16 = 2;

// Message types (linux/xfrm.h, enum starting at XFRM_MSG_BASE 0x10).
const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_DELSA: u16 = 0x11;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_DELPOLICY: u16 = 0x14;
const XFRM_MSG_GETPOLICY: u16 = 0x15;
const XFRM_MSG_UPDPOLICY: u16 = 0x19;

// Attributes (enum xfrm_attr_type_t).
const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
#[cfg_attr(not(test), allow(dead_code))] // iproute2 sends it; see the tests
const XFRMA_SRCADDR: u16 = 13;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;
const XFRMA_REPLAY_ESN_VAL: u16 = 23;

// xfrm_usersa_info.flags.
const XFRM_STATE_AF_UNSPEC: u8 = 32;
const XFRM_STATE_ESN: u8 = 128;

/// `XFRM_INF`: no limit (byte and packet lifetimes).
pub const XFRM_INF: u64 = u64::MAX;

/// The legacy replay bitmap's size (`xfrm_replay_state.bitmap`, 32 bits):
/// larger windows need `XFRMA_REPLAY_ESN_VAL`.
const LEGACY_REPLAY_WINDOW: u32 = 32;

/// `XFRMA_REPLAY_ESN_MAX`: the largest replay window, in packets.
pub const MAX_REPLAY_WINDOW: u32 = 4096;

const AF_INET: u16 = 2;

/// The structure sizes and field offsets of `linux/xfrm.h` on 64-bit Linux
/// ABIs (x86_64, aarch64, ...). 32-bit x86 aligns `__u64` to 4 and lays
/// out `xfrm_usersa_info` and friends differently (the kernel's
/// XFRM_USER_COMPAT translates); the layout test fails there.
#[allow(dead_code)] // the whole layout, also the fields never set here
pub(crate) mod layout {
    /// `xfrm_address_t`: a union of `__be32 a4` and `in6_addr`; an IPv4
    /// address fills the first 4 bytes.
    pub const ADDRESS_LEN: usize = 16;

    /// `struct xfrm_selector`: daddr, saddr, then `__be16` dport,
    /// dport_mask, sport, sport_mask, `__u16` family, `__u8` prefixlen_d,
    /// prefixlen_s, proto, 3 bytes of padding, `int` ifindex, `uid` user.
    pub const SELECTOR_LEN: usize = 56;
    pub const SEL_DADDR: usize = 0;
    pub const SEL_SADDR: usize = 16;
    pub const SEL_DPORT: usize = 32;
    pub const SEL_DPORT_MASK: usize = 34;
    pub const SEL_SPORT: usize = 36;
    pub const SEL_SPORT_MASK: usize = 38;
    pub const SEL_FAMILY: usize = 40;
    pub const SEL_PREFIXLEN_D: usize = 42;
    pub const SEL_PREFIXLEN_S: usize = 43;
    pub const SEL_PROTO: usize = 44;
    pub const SEL_IFINDEX: usize = 48;
    pub const SEL_USER: usize = 52;

    /// `struct xfrm_id`: daddr, `__be32` spi, `__u8` proto, 3 bytes of
    /// padding.
    pub const ID_LEN: usize = 24;
    pub const ID_DADDR: usize = 0;
    pub const ID_SPI: usize = 16;
    pub const ID_PROTO: usize = 20;

    /// `struct xfrm_lifetime_cfg`: eight `__u64` (soft/hard byte, packet,
    /// add-expires and use-expires limits).
    pub const LIFETIME_CFG_LEN: usize = 64;
    /// `struct xfrm_lifetime_cur`: `__u64` bytes, packets, add_time,
    /// use_time.
    pub const LIFETIME_CUR_LEN: usize = 32;
    /// `struct xfrm_stats`: `__u32` replay_window, replay,
    /// integrity_failed.
    pub const STATS_LEN: usize = 12;

    /// `struct xfrm_usersa_info`: 224 bytes, 8-aligned (the lifetimes),
    /// with 7 bytes of tail padding after flags.
    pub const USERSA_INFO_LEN: usize = 224;
    pub const SA_SEL: usize = 0;
    pub const SA_ID: usize = 56;
    pub const SA_SADDR: usize = 80;
    pub const SA_LFT: usize = 96;
    pub const SA_CURLFT: usize = 160;
    pub const SA_STATS: usize = 192;
    pub const SA_SEQ: usize = 204;
    pub const SA_REQID: usize = 208;
    pub const SA_FAMILY: usize = 212;
    pub const SA_MODE: usize = 214;
    pub const SA_REPLAY_WINDOW: usize = 215;
    pub const SA_FLAGS: usize = 216;

    /// `struct xfrm_usersa_id`: daddr, `__be32` spi, `__u16` family,
    /// `__u8` proto, 1 byte of padding.
    pub const USERSA_ID_LEN: usize = 24;
    pub const SAID_DADDR: usize = 0;
    pub const SAID_SPI: usize = 16;
    pub const SAID_FAMILY: usize = 20;
    pub const SAID_PROTO: usize = 22;

    /// `struct xfrm_userpolicy_info`: 168 bytes, 8-aligned, 4 bytes of
    /// tail padding after share.
    pub const USERPOLICY_INFO_LEN: usize = 168;
    pub const POL_SEL: usize = 0;
    pub const POL_LFT: usize = 56;
    pub const POL_CURLFT: usize = 120;
    pub const POL_PRIORITY: usize = 152;
    pub const POL_INDEX: usize = 156;
    pub const POL_DIR: usize = 160;
    pub const POL_ACTION: usize = 161;
    pub const POL_FLAGS: usize = 162;
    pub const POL_SHARE: usize = 163;

    /// `struct xfrm_userpolicy_id`: selector, `__u32` index, `__u8` dir,
    /// 3 bytes of padding.
    pub const USERPOLICY_ID_LEN: usize = 64;
    pub const POLID_SEL: usize = 0;
    pub const POLID_INDEX: usize = 56;
    pub const POLID_DIR: usize = 60;

    /// `struct xfrm_user_tmpl`: xfrm_id, `__u16` family, 2 bytes of
    /// padding, saddr, `__u32` reqid, `__u8` mode, share, optional, 1 byte
    /// of padding, `__u32` aalgos, ealgos, calgos.
    pub const USER_TMPL_LEN: usize = 64;
    pub const TMPL_ID: usize = 0;
    pub const TMPL_FAMILY: usize = 24;
    pub const TMPL_SADDR: usize = 28;
    pub const TMPL_REQID: usize = 44;
    pub const TMPL_MODE: usize = 48;
    pub const TMPL_SHARE: usize = 49;
    pub const TMPL_OPTIONAL: usize = 50;
    pub const TMPL_AALGOS: usize = 52;
    pub const TMPL_EALGOS: usize = 56;
    pub const TMPL_CALGOS: usize = 60;

    /// `struct xfrm_algo`: `char alg_name[64]`, `unsigned` alg_key_len
    /// (bits), then the key: 68 bytes before the key.
    pub const ALGO_LEN: usize = 68;
    /// `struct xfrm_algo_auth` / `struct xfrm_algo_aead`: name, key length
    /// (bits), truncation / ICV length (bits), then the key: 72 bytes.
    pub const ALGO_AUTH_LEN: usize = 72;
    pub const ALGO_NAME_LEN: usize = 64;
    pub const ALGO_KEY_BITS: usize = 64;
    pub const ALGO_TRUNC_BITS: usize = 68;

    /// `struct xfrm_encap_tmpl`: `__u16` encap_type, `__be16` sport,
    /// dport, 2 bytes of padding, encap_oa.
    pub const ENCAP_TMPL_LEN: usize = 24;
    pub const ENCAP_TYPE: usize = 0;
    pub const ENCAP_SPORT: usize = 2;
    pub const ENCAP_DPORT: usize = 4;
    pub const ENCAP_OA: usize = 8;

    /// `struct xfrm_replay_state_esn` without its bitmap: `unsigned`
    /// bmp_len (in 32-bit words), `__u32` oseq, seq, oseq_hi, seq_hi,
    /// replay_window, then `__u32 bmp[]`.
    pub const REPLAY_ESN_LEN: usize = 24;
    pub const ESN_BMP_LEN: usize = 0;
    pub const ESN_REPLAY_WINDOW: usize = 20;
}

use crate::net::{IPPROTO_ESP, IPPROTO_GRE};
use layout as l;

/// Transport or tunnel mode (`XFRM_MODE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmMode {
    /// ESP between the two hosts (GRE over ESP: the hub's virtual-access).
    Transport,
    /// ESP with an inner IP header (a spoke that asks for tunnel mode).
    Tunnel,
}

impl XfrmMode {
    fn to_kernel(self) -> u8 {
        match self {
            XfrmMode::Transport => 0,
            XfrmMode::Tunnel => 1,
        }
    }

    fn from_kernel(mode: u8) -> io::Result<Self> {
        match mode {
            0 => Ok(XfrmMode::Transport),
            1 => Ok(XfrmMode::Tunnel),
            other => Err(invalid_data(&format!("XFRM mode {other}"))),
        }
    }
}

impl fmt::Display for XfrmMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XfrmMode::Transport => "transport",
            XfrmMode::Tunnel => "tunnel",
        })
    }
}

/// The direction of a policy (`XFRM_POLICY_IN/OUT/FWD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmDir {
    /// Packets delivered to this host.
    In,
    /// Packets this host sends.
    Out,
    /// Packets this host forwards (decrypted and routed on, in tunnel
    /// mode).
    Fwd,
}

impl XfrmDir {
    fn to_kernel(self) -> u8 {
        match self {
            XfrmDir::In => 0,
            XfrmDir::Out => 1,
            XfrmDir::Fwd => 2,
        }
    }

    fn from_kernel(dir: u8) -> io::Result<Self> {
        match dir {
            0 => Ok(XfrmDir::In),
            1 => Ok(XfrmDir::Out),
            2 => Ok(XfrmDir::Fwd),
            other => Err(invalid_data(&format!("XFRM policy direction {other}"))),
        }
    }
}

impl fmt::Display for XfrmDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XfrmDir::In => "in",
            XfrmDir::Out => "out",
            XfrmDir::Fwd => "fwd",
        })
    }
}

/// What a policy does with the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmAction {
    /// Let them through: with a template, through the SA it names; without
    /// one, in the clear (a bypass).
    Allow,
    /// Drop them.
    Block,
}

/// Traffic selector (`struct xfrm_selector`), IPv4: source and destination
/// prefixes, IP protocol (0 for any) and ports (0 for any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmSelector {
    pub src: Ipv4Prefix,
    pub dst: Ipv4Prefix,
    /// IP protocol, 0 for any.
    pub proto: u8,
    /// Source port (TCP/UDP/SCTP), 0 for any.
    pub sport: u16,
    /// Destination port, 0 for any.
    pub dport: u16,
}

impl XfrmSelector {
    /// GRE from `src` to `dst` (both /32): what a transport-mode SA and its
    /// policies carry for a virtual-access (GRE over ESP between the outer
    /// addresses).
    pub fn gre(src: Ipv4Addr, dst: Ipv4Addr) -> XfrmSelector {
        XfrmSelector {
            src: host(src),
            dst: host(dst),
            proto: IPPROTO_GRE,
            sport: 0,
            dport: 0,
        }
    }

    /// Any traffic from `src` to `dst` (a tunnel-mode policy).
    pub fn between(src: Ipv4Prefix, dst: Ipv4Prefix) -> XfrmSelector {
        XfrmSelector {
            src,
            dst,
            proto: 0,
            sport: 0,
            dport: 0,
        }
    }

    fn encode(&self, out: &mut [u8]) {
        put_addr(&mut out[l::SEL_DADDR..], self.dst.addr);
        put_addr(&mut out[l::SEL_SADDR..], self.src.addr);
        // A port of 0 means any: mask 0 then, else the whole port.
        let mask = |port: u16| if port == 0 { 0 } else { u16::MAX };
        put_be16(out, l::SEL_DPORT, self.dport);
        put_be16(out, l::SEL_DPORT_MASK, mask(self.dport));
        put_be16(out, l::SEL_SPORT, self.sport);
        put_be16(out, l::SEL_SPORT_MASK, mask(self.sport));
        put_u16(out, l::SEL_FAMILY, AF_INET);
        out[l::SEL_PREFIXLEN_D] = self.dst.len;
        out[l::SEL_PREFIXLEN_S] = self.src.len;
        out[l::SEL_PROTO] = self.proto;
        // ifindex and user stay 0: any.
    }

    fn decode(b: &[u8]) -> io::Result<XfrmSelector> {
        let family = get_u16(b, l::SEL_FAMILY);
        if family != AF_INET && family != 0 {
            return Err(invalid_data(&format!(
                "a selector of address family {family}"
            )));
        }
        let prefix = |addr: Ipv4Addr, len: u8| {
            Ipv4Prefix::new(addr, len)
                .ok_or_else(|| invalid_data(&format!("a selector with prefix {addr}/{len}")))
        };
        Ok(XfrmSelector {
            src: prefix(get_addr(b, l::SEL_SADDR), b[l::SEL_PREFIXLEN_S])?,
            dst: prefix(get_addr(b, l::SEL_DADDR), b[l::SEL_PREFIXLEN_D])?,
            proto: b[l::SEL_PROTO],
            sport: get_be16(b, l::SEL_SPORT),
            dport: get_be16(b, l::SEL_DPORT),
        })
    }
}

impl fmt::Display for XfrmSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src {} dst {}", self.src, self.dst)?;
        if self.proto != 0 {
            write!(f, " proto {}", self.proto)?;
        }
        if self.sport != 0 {
            write!(f, " sport {}", self.sport)?;
        }
        if self.dport != 0 {
            write!(f, " dport {}", self.dport)?;
        }
        Ok(())
    }
}

/// An SA's lifetime limits (`struct xfrm_lifetime_cfg`). The kernel sends
/// an expire message at the soft limits and deletes the SA at the hard
/// ones; the IKE daemon rekeys before either, so these are a safety net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XfrmLifetime {
    /// Bytes, [`XFRM_INF`] for no limit.
    pub soft_bytes: u64,
    pub hard_bytes: u64,
    /// Packets, [`XFRM_INF`] for no limit.
    pub soft_packets: u64,
    pub hard_packets: u64,
    /// Seconds since the SA was added, 0 for no limit.
    pub soft_add_seconds: u64,
    pub hard_add_seconds: u64,
}

impl Default for XfrmLifetime {
    /// No limits (what `ip xfrm state add` sets when none are named).
    fn default() -> Self {
        XfrmLifetime {
            soft_bytes: XFRM_INF,
            hard_bytes: XFRM_INF,
            soft_packets: XFRM_INF,
            hard_packets: XFRM_INF,
            soft_add_seconds: 0,
            hard_add_seconds: 0,
        }
    }
}

impl XfrmLifetime {
    /// `struct xfrm_lifetime_cfg`; the use-expires limits stay 0 (none).
    fn encode(&self, out: &mut [u8]) {
        let fields = [
            self.soft_bytes,
            self.hard_bytes,
            self.soft_packets,
            self.hard_packets,
            self.soft_add_seconds,
            self.hard_add_seconds,
        ];
        for (i, value) in fields.into_iter().enumerate() {
            put_u64(out, i * 8, value);
        }
    }
}

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
    fn encode(&self, msg: &mut Message) -> Result<(), String> {
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
    pub lifetime: XfrmLifetime,
}

impl XfrmState {
    /// "esp spi 0xc0ffee01 192.0.2.1 -> 198.51.100.7 reqid 7" (messages).
    fn label(&self) -> String {
        format!(
            "esp spi {:#010x} {} -> {} reqid {}",
            self.spi, self.src, self.dst, self.reqid
        )
    }

    /// The payload of an `XFRM_MSG_NEWSA` request: `xfrm_usersa_info`, then
    /// the algorithms, the encapsulation and the ESN replay state.
    fn encode(&self) -> Result<Message, String> {
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
        // The kernel refuses a legacy window beside the ESN state.
        let esn_state = self.esn || self.replay_window > LEGACY_REPLAY_WINDOW;
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
            msg.attr(XFRMA_REPLAY_ESN_VAL, &esn);
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

/// An SA as a dump lists it (the fields that identify it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmStateId {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub proto: u8,
    pub reqid: u32,
}

/// A policy's template (`struct xfrm_user_tmpl`): which ESP SA protects
/// what the policy matches. Always ESP, any SPI, any algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmTemplate {
    /// The SA's outer source: needed in tunnel mode; 0.0.0.0 (any, from
    /// the packet) is fine in transport mode, where strongSwan leaves it.
    pub src: Ipv4Addr,
    /// The SA's outer destination (as `src`).
    pub dst: Ipv4Addr,
    /// The reqid of the SAs to use.
    pub reqid: u32,
    pub mode: XfrmMode,
}

impl XfrmTemplate {
    fn encode(&self, out: &mut [u8]) {
        put_addr(&mut out[l::TMPL_ID + l::ID_DADDR..], self.dst);
        // SPI 0: any SA with the reqid.
        out[l::TMPL_ID + l::ID_PROTO] = IPPROTO_ESP;
        put_u16(out, l::TMPL_FAMILY, AF_INET);
        put_addr(&mut out[l::TMPL_SADDR..], self.src);
        put_u32(out, l::TMPL_REQID, self.reqid);
        out[l::TMPL_MODE] = self.mode.to_kernel();
        // share XFRM_SHARE_ANY, not optional.
        out[l::TMPL_SHARE] = 0;
        out[l::TMPL_OPTIONAL] = 0;
        // Any algorithms (iproute2 and strongSwan: ~0).
        put_u32(out, l::TMPL_AALGOS, u32::MAX);
        put_u32(out, l::TMPL_EALGOS, u32::MAX);
        put_u32(out, l::TMPL_CALGOS, u32::MAX);
    }

    fn decode(b: &[u8]) -> io::Result<XfrmTemplate> {
        Ok(XfrmTemplate {
            src: get_addr(b, l::TMPL_SADDR),
            dst: get_addr(b, l::TMPL_ID + l::ID_DADDR),
            reqid: get_u32(b, l::TMPL_REQID),
            mode: XfrmMode::from_kernel(b[l::TMPL_MODE])?,
        })
    }
}

/// A security policy (`XFRM_MSG_NEWPOLICY`): what traffic, which
/// direction, and through which SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmPolicy {
    pub selector: XfrmSelector,
    pub dir: XfrmDir,
    /// Lower wins among overlapping policies.
    pub priority: u32,
    pub action: XfrmAction,
    /// The SA to use; `None` with [`XfrmAction::Allow`] lets the traffic
    /// through in the clear. A policy read back from the kernel with
    /// several templates reports the first.
    pub template: Option<XfrmTemplate>,
}

impl XfrmPolicy {
    fn label(&self) -> String {
        format!(
            "{} dir {} priority {}",
            self.selector, self.dir, self.priority
        )
    }

    /// `xfrm_userpolicy_info` and the template.
    fn encode(&self) -> Message {
        let mut info = [0u8; l::USERPOLICY_INFO_LEN];
        self.selector
            .encode(&mut info[l::POL_SEL..l::POL_SEL + l::SELECTOR_LEN]);
        // No limits, as `ip xfrm policy add` sets (policies do not expire
        // by bytes or packets).
        XfrmLifetime::default().encode(&mut info[l::POL_LFT..l::POL_CURLFT]);
        put_u32(&mut info, l::POL_PRIORITY, self.priority);
        // Index 0: the kernel picks one.
        info[l::POL_DIR] = self.dir.to_kernel();
        info[l::POL_ACTION] = match self.action {
            XfrmAction::Allow => 0,
            XfrmAction::Block => 1,
        };
        info[l::POL_FLAGS] = 0;
        info[l::POL_SHARE] = 0;
        let mut msg = Message::new(&info);
        if let Some(tmpl) = &self.template {
            let mut t = [0u8; l::USER_TMPL_LEN];
            tmpl.encode(&mut t);
            msg.attr(XFRMA_TMPL, &t);
        }
        msg
    }

    /// From `xfrm_userpolicy_info` and its attributes.
    fn decode(payload: &[u8]) -> io::Result<XfrmPolicy> {
        let info = payload
            .get(..l::USERPOLICY_INFO_LEN)
            .ok_or_else(|| invalid_data(&format!("a policy of {} bytes", payload.len())))?;
        let mut template = None;
        for (kind, value) in attributes(&payload[l::USERPOLICY_INFO_LEN..]) {
            if kind == XFRMA_TMPL && template.is_none() {
                let t = value.get(..l::USER_TMPL_LEN).ok_or_else(|| {
                    invalid_data(&format!("a policy template of {} bytes", value.len()))
                })?;
                template = Some(XfrmTemplate::decode(t)?);
            }
        }
        Ok(XfrmPolicy {
            selector: XfrmSelector::decode(&info[l::POL_SEL..l::POL_LFT])?,
            dir: XfrmDir::from_kernel(info[l::POL_DIR])?,
            priority: get_u32(info, l::POL_PRIORITY),
            action: if info[l::POL_ACTION] == 0 {
                XfrmAction::Allow
            } else {
                XfrmAction::Block
            },
            template,
        })
    }
}

/// `xfrm_usersa_id`: which SA (DELSA, GETSA).
fn usersa_id(dst: Ipv4Addr, spi: u32, proto: u8) -> [u8; l::USERSA_ID_LEN] {
    let mut id = [0u8; l::USERSA_ID_LEN];
    put_addr(&mut id[l::SAID_DADDR..], dst);
    put_be32(&mut id, l::SAID_SPI, spi);
    put_u16(&mut id, l::SAID_FAMILY, AF_INET);
    id[l::SAID_PROTO] = proto;
    id
}

/// `xfrm_userpolicy_id`: which policy (DELPOLICY, GETPOLICY), by selector
/// and direction (index 0).
fn userpolicy_id(selector: &XfrmSelector, dir: XfrmDir) -> [u8; l::USERPOLICY_ID_LEN] {
    let mut id = [0u8; l::USERPOLICY_ID_LEN];
    selector.encode(&mut id[l::POLID_SEL..l::POLID_SEL + l::SELECTOR_LEN]);
    put_u32(&mut id, l::POLID_INDEX, 0);
    id[l::POLID_DIR] = dir.to_kernel();
    id
}

/// `struct xfrm_algo` with its key.
fn algo(name: &str, key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; l::ALGO_LEN + key.len()]);
    put_name(&mut out, name);
    put_u32(&mut out, l::ALGO_KEY_BITS, key_bits(key));
    out[l::ALGO_LEN..].copy_from_slice(key);
    out
}

/// `struct xfrm_algo_auth` / `struct xfrm_algo_aead` (same layout) with
/// its key.
fn algo_auth(name: &str, key: &[u8], trunc_bits: u32) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; l::ALGO_AUTH_LEN + key.len()]);
    put_name(&mut out, name);
    put_u32(&mut out, l::ALGO_KEY_BITS, key_bits(key));
    put_u32(&mut out, l::ALGO_TRUNC_BITS, trunc_bits);
    out[l::ALGO_AUTH_LEN..].copy_from_slice(key);
    out
}

fn put_name(out: &mut [u8], name: &str) {
    // NUL-terminated within 64 bytes; the names used here are short.
    debug_assert!(name.len() < l::ALGO_NAME_LEN);
    out[..name.len()].copy_from_slice(name.as_bytes());
}

fn key_bits(key: &[u8]) -> u32 {
    // Keys here are at most 64 bytes (checked by the callers' callers).
    u32::try_from(key.len() * 8).unwrap_or(u32::MAX)
}

/// A request payload: the fixed structure, then netlink attributes, each
/// padded to 4 bytes. Zeroed when dropped (it may hold keys).
struct Message {
    bytes: Zeroizing<Vec<u8>>,
}

impl Message {
    fn new(fixed: &[u8]) -> Message {
        Message {
            bytes: Zeroizing::new(fixed.to_vec()),
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        let padded = self.bytes.len().next_multiple_of(4);
        self.bytes.resize(padded, 0);
    }
}

/// The attributes in `b` as (type, value), stopping at the first malformed
/// one.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(get_u16(b, 0));
        let kind = get_u16(b, 2) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// A blocking NETLINK_XFRM socket in the network namespace of the thread
/// that opened it.
pub struct Xfrm {
    transport: Transport,
}

impl fmt::Debug for Xfrm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xfrm")
            .field("fd", &self.transport.socket.as_raw_fd())
            .field("seq", &self.transport.seq)
            .finish_non_exhaustive()
    }
}

impl Xfrm {
    /// Opens a NETLINK_XFRM socket (needs CAP_NET_ADMIN for changes).
    pub fn open() -> io::Result<Xfrm> {
        let socket = open_socket(NETLINK_XFRM, "opening a NETLINK_XFRM socket")?;
        Ok(Xfrm {
            transport: Transport::new(socket),
        })
    }

    /// Installs an SA (`ip xfrm state add`); EEXIST if one with the same
    /// destination, SPI and protocol is there. A kernel without ESP
    /// (esp4) refuses with EPROTONOSUPPORT ("Requested type not found"),
    /// one without the algorithm with ENOSYS ("Requested AEAD algorithm
    /// not found" and the like).
    pub fn add_state(&mut self, state: &XfrmState) -> io::Result<()> {
        let what = || format!("adding SA {}", state.label());
        let msg = state
            .encode()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{}: {e}", what())))?;
        self.request(XFRM_MSG_NEWSA, 0, &msg.bytes, &what).map(drop)
    }

    /// Removes the SA (`ip xfrm state delete dst D proto P spi S`); ESRCH
    /// if there is none.
    pub fn del_state(&mut self, dst: Ipv4Addr, spi: u32, proto: u8) -> io::Result<()> {
        let what = || format!("removing SA proto {proto} spi {spi:#010x} dst {dst}");
        self.request(XFRM_MSG_DELSA, 0, &usersa_id(dst, spi, proto), &what)
            .map(drop)
    }

    /// The counters of the ESP SA to `dst` with `spi`; ESRCH if there is
    /// none.
    pub fn get_state_stats(&mut self, dst: Ipv4Addr, spi: u32) -> io::Result<XfrmStateStats> {
        let what = || format!("reading SA esp spi {spi:#010x} dst {dst}");
        let answers = self.request(XFRM_MSG_GETSA, 0, &usersa_id(dst, spi, IPPROTO_ESP), &what)?;
        let info = answers
            .iter()
            .find(|(kind, _)| *kind == XFRM_MSG_NEWSA)
            .and_then(|(_, payload)| payload.get(..l::USERSA_INFO_LEN))
            .ok_or_else(|| invalid_data(&format!("{}: no SA in the kernel's answer", what())))?;
        Ok(decode_stats(info))
    }

    /// Every SA of this namespace, IPv4 or not (`ip xfrm state list`).
    pub fn states(&mut self) -> io::Result<Vec<XfrmStateId>> {
        let what = || "listing the SAs".to_owned();
        let answers = self.dump(XFRM_MSG_GETSA, &what)?;
        let mut out = Vec::new();
        for (kind, payload) in answers {
            if kind != XFRM_MSG_NEWSA {
                continue;
            }
            let info = payload
                .get(..l::USERSA_INFO_LEN)
                .ok_or_else(|| invalid_data(&format!("{}: a short SA", what())))?;
            if get_u16(info, l::SA_FAMILY) != AF_INET {
                continue;
            }
            out.push(XfrmStateId {
                src: get_addr(info, l::SA_SADDR),
                dst: get_addr(info, l::SA_ID + l::ID_DADDR),
                spi: get_be32(info, l::SA_ID + l::ID_SPI),
                proto: info[l::SA_ID + l::ID_PROTO],
                reqid: get_u32(info, l::SA_REQID),
            });
        }
        Ok(out)
    }

    /// Removes every IPv4 SA with `reqid` (the kernel's flush takes only a
    /// protocol): a dump, then one delete per SA. SAs that vanish meanwhile
    /// are not an error. Returns how many were removed.
    pub fn del_states_by_reqid(&mut self, reqid: u32) -> io::Result<usize> {
        let mut removed = 0;
        for sa in self.states()? {
            if sa.reqid != reqid {
                continue;
            }
            match self.del_state(sa.dst, sa.spi, sa.proto) {
                Ok(()) => removed += 1,
                Err(e) if super::raw_os_error(&e) == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Installs a policy (`ip xfrm policy add`); EEXIST if one with the
    /// same selector and direction is there.
    pub fn add_policy(&mut self, policy: &XfrmPolicy) -> io::Result<()> {
        let what = || format!("adding policy {}", policy.label());
        // The message type decides: NEWPOLICY refuses an existing policy,
        // UPDPOLICY replaces it (xfrm_add_policy); no NLM_F_* needed.
        self.request(XFRM_MSG_NEWPOLICY, 0, &policy.encode().bytes, &what)
            .map(drop)
    }

    /// Installs or replaces a policy (`ip xfrm policy update`).
    pub fn update_policy(&mut self, policy: &XfrmPolicy) -> io::Result<()> {
        let what = || format!("updating policy {}", policy.label());
        self.request(XFRM_MSG_UPDPOLICY, 0, &policy.encode().bytes, &what)
            .map(drop)
    }

    /// Removes the policy with `selector` and `dir`; ENOENT if there is
    /// none.
    pub fn del_policy(&mut self, selector: &XfrmSelector, dir: XfrmDir) -> io::Result<()> {
        let what = || format!("removing policy {selector} dir {dir}");
        self.request(XFRM_MSG_DELPOLICY, 0, &userpolicy_id(selector, dir), &what)
            .map(drop)
    }

    /// The policy with `selector` and `dir`; ENOENT if there is none.
    pub fn get_policy(&mut self, selector: &XfrmSelector, dir: XfrmDir) -> io::Result<XfrmPolicy> {
        let what = || format!("reading policy {selector} dir {dir}");
        let answers = self.request(XFRM_MSG_GETPOLICY, 0, &userpolicy_id(selector, dir), &what)?;
        let (_, payload) = answers
            .iter()
            .find(|(kind, _)| *kind == XFRM_MSG_NEWPOLICY)
            .ok_or_else(|| {
                invalid_data(&format!("{}: no policy in the kernel's answer", what()))
            })?;
        XfrmPolicy::decode(payload).map_err(|e| super::context(e, what()))
    }

    /// Every IPv4 policy of this namespace, the sockets' own left out
    /// (`ip xfrm policy list`).
    pub fn policies(&mut self) -> io::Result<Vec<XfrmPolicy>> {
        let what = || "listing the policies".to_owned();
        let answers = self.dump(XFRM_MSG_GETPOLICY, &what)?;
        let mut out = Vec::new();
        for (kind, payload) in answers {
            if kind != XFRM_MSG_NEWPOLICY {
                continue;
            }
            let family = payload.get(l::SEL_FAMILY..l::SEL_FAMILY + 2);
            if family != Some(&AF_INET.to_ne_bytes()[..]) {
                continue;
            }
            // Per-socket policies ([`bypass_policies`]) come with the dump,
            // their direction offset by XFRM_POLICY_MAX (3); iproute2 shows
            // them as "socket in/out".
            if payload.get(l::POL_DIR).is_some_and(|&dir| dir >= 3) {
                continue;
            }
            out.push(XfrmPolicy::decode(&payload).map_err(|e| super::context(e, what()))?);
        }
        Ok(out)
    }

    /// A dump (`NLM_F_DUMP`, no filter), retried when a change interrupts
    /// it.
    fn dump(
        &mut self,
        kind: u16,
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<(u16, Zeroizing<Vec<u8>>)>> {
        for _ in 0..4 {
            match self.exchange(kind, NLM_F_DUMP, &[]) {
                Ok(Ok((answers, false))) => return Ok(answers),
                Ok(Ok((_, true))) => {}
                Ok(Err(kernel)) => return Err(kernel.into_io(what())),
                Err(local) => return Err(super::context(local, what())),
            }
        }
        Err(io::Error::new(
            ErrorKind::Interrupted,
            format!("{}: the dump was interrupted by changes 4 times", what()),
        ))
    }

    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<(u16, Zeroizing<Vec<u8>>)>> {
        match self.exchange(kind, flags, payload) {
            Ok(Ok((answers, _))) => Ok(answers),
            Ok(Err(kernel)) => Err(kernel.into_io(what())),
            Err(local) => Err(super::context(local, what())),
        }
    }

    /// Sends one request and collects the answers (message type and
    /// payload) up to the ACK or NLMSG_DONE, with whether the dump was
    /// interrupted. The outer error is a local one, the inner one the
    /// kernel's.
    #[allow(clippy::type_complexity)] // one private call site shape
    fn exchange(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
    ) -> io::Result<Result<(Vec<(u16, Zeroizing<Vec<u8>>)>, bool), KernelError>> {
        Ok(self
            .transport
            .exchange(kind, flags, payload, "sending an XFRM request")?
            .map(|raw| {
                let messages = raw
                    .messages
                    .into_iter()
                    .map(|(header, payload)| (header.message_type, payload))
                    .collect();
                (messages, raw.interrupted)
            }))
    }
}

fn decode_stats(info: &[u8]) -> XfrmStateStats {
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

/// Lets `socket`'s own packets bypass the IPsec policies, both ways, as
/// strongSwan's kernel-netlink plugin does for its IKE sockets: a
/// per-socket policy (`IP_XFRM_POLICY`) with action allow and no template,
/// one per direction. Without it a policy covering the peer's address
/// (e.g. a tunnel-mode /32, or an "any" policy) would take IKE into ESP
/// or drop it. IPv4 sockets.
pub fn bypass_policies(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    for dir in [XfrmDir::Out, XfrmDir::In] {
        // Selector all zero but the family, zero lifetimes: what
        // strongSwan passes (the kernel compiles it with
        // xfrm_compile_policy).
        let mut info = [0u8; l::USERPOLICY_INFO_LEN];
        put_u16(&mut info, l::POL_SEL + l::SEL_FAMILY, AF_INET);
        info[l::POL_DIR] = dir.to_kernel();
        info[l::POL_ACTION] = 0;
        setsockopt_bytes(fd, libc::SOL_IP, libc::IP_XFRM_POLICY, &info).map_err(|e| {
            super::context(e, format!("setting the {dir} bypass policy of a socket"))
        })?;
    }
    Ok(())
}

/// Makes the kernel take ESP in UDP (RFC 3948) off `socket` (`UDP_ENCAP`
/// `UDP_ENCAP_ESPINUDP`): packets with a non-zero first word are ESP and
/// go to XFRM, those with the non-ESP marker stay on the socket for IKE.
/// For the port 4500 socket of the kernel datapath.
pub fn set_udp_encap_espinudp(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    let kind = libc::c_int::from(UDP_ENCAP_ESPINUDP);
    setsockopt_bytes(fd, libc::SOL_UDP, libc::UDP_ENCAP, &kind.to_ne_bytes())
        .map_err(|e| super::context(e, "setting UDP_ENCAP_ESPINUDP on a socket"))
}

/// The `UDP_ENCAP` type set on `socket` (0 for none).
pub fn udp_encap(socket: &impl AsFd) -> io::Result<u16> {
    let fd = socket.as_fd().as_raw_fd();
    let mut value: libc::c_int = 0;
    #[allow(clippy::cast_possible_truncation)] // 4 bytes
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live int and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_ENCAP,
            (&raw mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(super::os_error("reading UDP_ENCAP of a socket"));
    }
    u16::try_from(value).map_err(|_| invalid_data(&format!("UDP_ENCAP type {value}")))
}

fn setsockopt_bytes(fd: i32, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "socket option too large"))?;
    // SAFETY: passes a live buffer and its length.
    let rc = unsafe { libc::setsockopt(fd, level, name, value.as_ptr().cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        format!("unexpected {what} from the kernel"),
    )
}

fn host(addr: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix { addr, len: 32 }
}

fn put_addr(out: &mut [u8], addr: Ipv4Addr) {
    out[..4].copy_from_slice(&addr.octets());
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

fn put_be16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_be32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

// The getters take slices the callers checked to be long enough.

fn get_addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn get_be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}

#[cfg(test)]
mod tests;

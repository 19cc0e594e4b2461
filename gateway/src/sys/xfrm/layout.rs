//! The structure sizes and field offsets of `linux/xfrm.h` on 64-bit Linux
//! ABIs (x86_64, aarch64, ...). 32-bit x86 aligns `__u64` to 4 and lays
//! out `xfrm_usersa_info` and friends differently (the kernel's
//! XFRM_USER_COMPAT translates); the layout test fails there.

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
pub const ESN_OSEQ: usize = 4;
pub const ESN_SEQ: usize = 8;
pub const ESN_OSEQ_HI: usize = 12;
pub const ESN_SEQ_HI: usize = 16;
pub const ESN_REPLAY_WINDOW: usize = 20;

/// `struct xfrm_user_expire` (XFRM_MSG_EXPIRE): `xfrm_usersa_info`, then
/// `__u8` hard and 7 bytes of tail padding (the info is 8-aligned).
pub const USER_EXPIRE_LEN: usize = 232;
pub const EXPIRE_STATE: usize = 0;
pub const EXPIRE_HARD: usize = 224;

/// `struct xfrm_user_mapping` (XFRM_MSG_MAPPING): `xfrm_usersa_id`,
/// `__u32` reqid, old_saddr, new_saddr, `__be16` old_sport, new_sport.
pub const USER_MAPPING_LEN: usize = 64;
pub const MAP_ID: usize = 0;
pub const MAP_REQID: usize = 24;
pub const MAP_OLD_SADDR: usize = 28;
pub const MAP_NEW_SADDR: usize = 44;
pub const MAP_OLD_SPORT: usize = 60;
pub const MAP_NEW_SPORT: usize = 62;

//! The bytes of xfrm messages: the fixed structures in host byte order
//! (addresses, SPIs and ports in network order), then netlink attributes.

use std::{
    io::{self, ErrorKind},
    net::Ipv4Addr,
};

use zeroize::Zeroizing;

/// A request payload: the fixed structure, then netlink attributes, each
/// padded to 4 bytes. Zeroed when dropped (it may hold keys).
pub(super) struct Message {
    pub(super) bytes: Zeroizing<Vec<u8>>,
}

impl Message {
    pub(super) fn new(fixed: &[u8]) -> Message {
        Message {
            bytes: Zeroizing::new(fixed.to_vec()),
        }
    }

    pub(super) fn attr(&mut self, kind: u16, value: &[u8]) {
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
pub(super) fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

pub(super) fn invalid_data(what: &str) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        format!("unexpected {what} from the kernel"),
    )
}

pub(super) fn put_addr(out: &mut [u8], addr: Ipv4Addr) {
    out[..4].copy_from_slice(&addr.octets());
}

pub(super) fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}

pub(super) fn put_be16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

pub(super) fn put_be32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

// The getters take slices the callers checked to be long enough.

pub(super) fn get_addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

pub(super) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

pub(super) fn get_be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

pub(super) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn get_be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(v)
}

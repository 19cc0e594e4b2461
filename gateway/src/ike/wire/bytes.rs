//! Field ranges, big-endian access and the length checks every codec in
//! `wire` shares.
//!
//! Reads index the buffer directly: each caller checks the length first
//! (smoltcp's `check_len` discipline); the unit tests truncate every
//! structure at every byte, and the mutation test and the fuzz target hold
//! the checks to it.

use super::WireError;

/// A field's byte range inside its structure.
pub(super) type Field = core::ops::Range<usize>;

pub(super) fn be16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes([bytes[0], bytes[1]])
}

pub(super) fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

pub(super) fn be64(bytes: &[u8]) -> u64 {
    bytes[..8]
        .iter()
        .fold(0, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// `Ok` when `bytes` holds at least `needed` bytes; otherwise a `Truncated`
/// error naming `what` starts at `offset`.
pub(super) fn need(
    bytes: &[u8],
    needed: usize,
    what: &'static str,
    offset: usize,
) -> Result<(), WireError> {
    if bytes.len() < needed {
        Err(WireError::Truncated {
            what,
            offset,
            needed,
            available: bytes.len(),
        })
    } else {
        Ok(())
    }
}

/// A length or count for a one-byte field, or the emit error saying it does
/// not fit.
pub(super) fn fit_u8(
    value: usize,
    what: &'static str,
    field: &'static str,
) -> Result<u8, WireError> {
    u8::try_from(value).map_err(|_| WireError::TooLarge {
        what,
        field,
        value,
        max: u8::MAX.into(),
    })
}

/// A length or count for a two-byte field, or the emit error saying it does
/// not fit.
pub(super) fn fit_u16(
    value: usize,
    what: &'static str,
    field: &'static str,
) -> Result<u16, WireError> {
    u16::try_from(value).map_err(|_| WireError::TooLarge {
        what,
        field,
        value,
        max: u16::MAX.into(),
    })
}

/// Helpers for the per-file tests: emit into junk, truncate everywhere.
#[cfg(test)]
pub(super) mod testing {
    use super::super::WireError;
    use super::super::payload::Body;

    /// The junk byte buffers are pre-filled with: an emitter that skips a
    /// byte (a reserved field, say) leaves it visible.
    pub const JUNK: u8 = 0xA5;

    /// `body` emitted into a buffer of exactly `body_len()` junk bytes.
    pub fn emit_into_junk<B: Body>(body: &B) -> Vec<u8> {
        let mut buf = vec![JUNK; body.body_len()];
        body.emit_body(&mut buf).expect("emit into junk");
        buf
    }

    /// Every strict prefix of `bytes` fails to parse, except those at the
    /// `whole` cut points (a body whose elements are not counted ends
    /// validly after any of them), and none panics.
    pub fn every_truncation_fails<B: Body + core::fmt::Debug>(bytes: &[u8], whole: &[usize]) {
        for cut in 0..bytes.len() {
            let result: Result<B, WireError> = B::parse_body(&bytes[..cut], 0);
            if whole.contains(&cut) {
                assert!(result.is_ok(), "prefix of {cut} bytes: {result:?}");
            } else {
                assert!(result.is_err(), "prefix of {cut} bytes parsed: {result:?}");
            }
        }
    }
}

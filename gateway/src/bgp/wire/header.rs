//! The message header (RFC 4271 section 4.1): a checked view over it, the
//! message types, and the framing of a TCP stream into messages.

use super::{HEADER_LEN, MARKER_LEN, MAX_MESSAGE_LEN, WireError, be16, field};

/// A view over the message header at the start of `buffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// A view without a length check: the accessors panic on fewer than
    /// `HEADER_LEN` bytes. Use `new_checked` on received bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// `new_unchecked` followed by `check_len`.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// `Ok` when the buffer holds the whole header.
    pub fn check_len(&self) -> Result<(), WireError> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Whether the marker is all ones.
    pub fn marker_ok(&self) -> bool {
        self.buffer.as_ref()[field::MARKER]
            .iter()
            .all(|&b| b == 0xff)
    }

    pub fn length(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
}

/// Splits a TCP stream: given the bytes received so far (starting at a
/// message boundary), the length of the first whole message, `None` when
/// more bytes are needed, or an error for a bad marker or a Length out of
/// 19..=4096 (RFC 4271 section 4.1), seen as soon as those bytes are in.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let marker = &buf[..buf.len().min(MARKER_LEN)];
    if marker.iter().any(|&b| b != 0xff) {
        return Err(WireError::NotSynchronized);
    }
    let Some(length) = buf.get(field::LENGTH).map(be16) else {
        return Ok(None);
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&usize::from(length)) {
        return Err(WireError::BadMessageLength {
            length,
            msg_type: None,
        });
    }
    Ok((buf.len() >= usize::from(length)).then_some(usize::from(length)))
}

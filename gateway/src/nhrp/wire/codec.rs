//! Bounds-checked reading and writing of the fields every part shares.

use std::net::Ipv4Addr;

use super::NhrpError;

/// A bounds-checked reader over a slice.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) const fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], NhrpError> {
        let end = self.pos.saturating_add(n);
        let Some(slice) = self.bytes.get(self.pos..end) else {
            return Err(NhrpError::Truncated {
                needed: end,
                available: self.bytes.len(),
            });
        };
        self.pos = end;
        Ok(slice)
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        self.pos = self.bytes.len();
        rest
    }

    pub(super) fn u8(&mut self) -> Result<u8, NhrpError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, NhrpError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self) -> Result<u32, NhrpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An address of type/length `tl` (0: none, 4: IPv4).
    pub(super) fn addr(
        &mut self,
        tl: u8,
        what: &'static str,
    ) -> Result<Option<Ipv4Addr>, NhrpError> {
        match tl {
            0 => Ok(None),
            4 => {
                let b = self.take(4)?;
                Ok(Some(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            value => Err(NhrpError::AddressLength { what, value }),
        }
    }
}

pub(super) fn check_subaddress(tl: u8, what: &'static str) -> Result<(), NhrpError> {
    if tl == 0 {
        Ok(())
    } else {
        Err(NhrpError::Subaddress { what, value: tl })
    }
}

pub(super) const fn addr_len(addr: Option<Ipv4Addr>) -> u8 {
    if addr.is_some() { 4 } else { 0 }
}

/// A bounds-checked writer; callers size the buffer with `buffer_len`.
pub(super) struct Writer<'a> {
    bytes: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(super) const fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Bytes written so far.
    pub(super) const fn position(&self) -> usize {
        self.pos
    }

    pub(super) fn put(&mut self, data: &[u8]) {
        self.bytes[self.pos..self.pos + data.len()].copy_from_slice(data);
        self.pos += data.len();
    }

    pub(super) fn u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    pub(super) fn u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    pub(super) fn u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    pub(super) fn addr(&mut self, addr: Option<Ipv4Addr>) {
        if let Some(addr) = addr {
            self.put(&addr.octets());
        }
    }
}

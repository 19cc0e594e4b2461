//! The Client Information Entry (RFC 2332 section 5.2.0.1), 12 bytes then
//! its addresses:
//!
//! ```text
//! |     Code      | Prefix Length |            unused             |
//! |  Maximum Transmission Unit    |        Holding Time           |
//! | Cli Addr T/L  | Cli SAddr T/L | Cli Proto Len |  Preference   |
//! | Client NBMA Address, Subaddress, Client Protocol Address      |
//! ```

use std::net::Ipv4Addr;

use super::{
    NhrpError,
    codec::{Reader, Writer, addr_len, check_subaddress},
};

/// Length of a CIE without its addresses.
pub const CIE_HEADER_LEN: usize = 12;

/// A Client Information Entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cie {
    /// 0 is success; other values are the CIE codes of section 5.2.
    pub code: u8,
    pub prefix_len: u8,
    pub mtu: u16,
    /// Seconds.
    pub holding_time: u16,
    pub preference: u8,
    pub nbma: Option<Ipv4Addr>,
    pub protocol: Option<Ipv4Addr>,
}

impl Cie {
    pub(super) fn parse(r: &mut Reader<'_>) -> Result<Self, NhrpError> {
        let code = r.u8()?;
        let prefix_len = r.u8()?;
        let _unused = r.u16()?;
        let mtu = r.u16()?;
        let holding_time = r.u16()?;
        let nbma_tl = r.u8()?;
        let subaddr_tl = r.u8()?;
        let proto_len = r.u8()?;
        let preference = r.u8()?;
        let nbma = r.addr(nbma_tl, "CIE NBMA address")?;
        check_subaddress(subaddr_tl, "CIE NBMA")?;
        let protocol = r.addr(proto_len, "CIE protocol address")?;
        Ok(Self {
            code,
            prefix_len,
            mtu,
            holding_time,
            preference,
            nbma,
            protocol,
        })
    }

    pub(super) fn parse_list(bytes: &[u8]) -> Result<Vec<Self>, NhrpError> {
        let mut r = Reader::new(bytes);
        let mut cies = Vec::new();
        while !r.is_empty() {
            cies.push(Self::parse(&mut r)?);
        }
        Ok(cies)
    }

    pub const fn buffer_len(&self) -> usize {
        CIE_HEADER_LEN + addr_len(self.nbma) as usize + addr_len(self.protocol) as usize
    }

    pub(super) fn emit(&self, w: &mut Writer<'_>) {
        w.u8(self.code);
        w.u8(self.prefix_len);
        w.u16(0);
        w.u16(self.mtu);
        w.u16(self.holding_time);
        w.u8(addr_len(self.nbma));
        w.u8(0);
        w.u8(addr_len(self.protocol));
        w.u8(self.preference);
        w.addr(self.nbma);
        w.addr(self.protocol);
    }
}

pub(super) fn cies_len(cies: &[Cie]) -> usize {
    cies.iter().map(Cie::buffer_len).sum()
}

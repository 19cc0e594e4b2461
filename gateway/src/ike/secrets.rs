//! Keys an exchange has just derived, in the shape Wireshark's decryption
//! tables want them: handed out by the state machine with
//! `Action::KeysDerived`, written only by `ike::keylog`.

use std::{fmt, net::Ipv4Addr};

use crate::{
    ike::proposal::EspChoice,
    ipsec::{Encr, Integ, Secret},
};

/// Keys an exchange has just derived, with what Wireshark's decryption
/// tables need to use them. Debugging only: the state machine hands them
/// out and writes nothing; `ike::keylog` formats them.
#[derive(Clone, Debug)]
pub enum DerivedKeys {
    /// A new IKE SA (a row of the `ikev2_decryption_table` UAT).
    IkeSa(IkeSaSecrets),
    /// A new CHILD_SA (two rows of the `esp_sa` UAT).
    ChildSa {
        inbound: EspSecrets,
        outbound: EspSecrets,
    },
}

/// The SK_e and SK_a keys of an IKE SA, both ways (RFC 7296 section 2.14).
/// `sk_ai`/`sk_ar` are empty with an AEAD cipher; GCM keys carry the salt.
#[derive(Clone)]
pub struct IkeSaSecrets {
    pub spi_i: u64,
    pub spi_r: u64,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
}

impl fmt::Debug for IkeSaSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IkeSaSecrets")
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .finish_non_exhaustive()
    }
}

/// One direction of a CHILD_SA: the outer addresses Wireshark matches on,
/// the SPI, the algorithms and the keys (`integ` empty with an AEAD).
#[derive(Clone)]
pub struct EspSecrets {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub esp: EspChoice,
    pub encr: Secret,
    pub integ: Secret,
}

impl fmt::Debug for EspSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspSecrets")
            .field("src", &self.src)
            .field("dst", &self.dst)
            .field("spi", &format_args!("{:#010x}", self.spi))
            .finish_non_exhaustive()
    }
}

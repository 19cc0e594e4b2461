//! NHRP (RFC 2332) as FlexVPN and DMVPN spokes speak it over GRE
//! (protocol type 0x2001): for now the wire codec only.

pub mod wire;

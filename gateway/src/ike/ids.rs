//! The values IKE messages carry that are computed, not negotiated: NAT
//! detection hashes (RFC 7296 section 2.23), identities (section 3.5) and
//! INTERNAL_IP4_SUBNET values (section 3.15.1).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::{
    config::Identity,
    ike::{
        crypto,
        wire::{IdType, Identification},
    },
    ipsec::Rng,
    net::Ipv4Prefix,
};

/// Length of a NAT_DETECTION hash (SHA-1, RFC 7296 section 3.10.1).
const NAT_HASH_LEN: usize = 20;

/// A NAT_DETECTION_SOURCE_IP that matches no address, to force UDP
/// encapsulation: SHA-1-sized random bytes, as strongSwan's `encap = yes`
/// sends (`generate_natd_hash_faked`). Random rather than the hash of
/// 0.0.0.0:0 because the point is to look like a real NAT to every peer:
/// a fixed fake is recognisable by anyone who computes it (and a peer that
/// special-cased it would defeat the forcing), while random bytes are what
/// any NAT's rewritten address hashes to, and cannot match a real endpoint
/// (one chance in 2^160).
pub(crate) fn fake_nat_hash(rng: &mut dyn Rng) -> Vec<u8> {
    let mut hash = vec![0u8; NAT_HASH_LEN];
    rng.fill(&mut hash);
    hash
}

/// RFC 7296 section 2.23: SHA-1(SPIi | SPIr | IP | port).
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddrV4) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + 8 + 4 + 2);
    data.extend_from_slice(&spi_i.to_be_bytes());
    data.extend_from_slice(&spi_r.to_be_bytes());
    data.extend_from_slice(&addr.ip().octets());
    data.extend_from_slice(&addr.port().to_be_bytes());
    crypto::sha1(&data)
}

pub(crate) fn identity_of(id: &Identification) -> Option<Identity> {
    let text = || String::from_utf8(id.data.clone()).ok();
    match id.id_type {
        IdType::Fqdn => text().map(Identity::Fqdn),
        IdType::Rfc822Addr => text().map(Identity::Email),
        IdType::KeyId => text().map(Identity::KeyId),
        IdType::Ipv4Addr => <[u8; 4]>::try_from(id.data.as_slice())
            .ok()
            .map(|o| Identity::Address(Ipv4Addr::from(o))),
        _ => None,
    }
}

pub(crate) fn identification_of(identity: &Identity) -> Identification {
    match identity {
        Identity::Fqdn(n) => Identification {
            id_type: IdType::Fqdn,
            data: n.as_bytes().to_vec(),
        },
        Identity::Email(e) => Identification {
            id_type: IdType::Rfc822Addr,
            data: e.as_bytes().to_vec(),
        },
        Identity::KeyId(k) => Identification {
            id_type: IdType::KeyId,
            data: k.as_bytes().to_vec(),
        },
        Identity::Address(a) => Identification {
            id_type: IdType::Ipv4Addr,
            data: a.octets().to_vec(),
        },
    }
}

/// An INTERNAL_IP4_SUBNET value: address then netmask, 8 octets (RFC 7296
/// section 3.15.1).
pub(crate) fn subnet_value(prefix: Ipv4Prefix) -> Vec<u8> {
    [prefix.addr.octets(), prefix.netmask().octets()].concat()
}

/// An INTERNAL_IP4_SUBNET value as a prefix: address then netmask, 8
/// octets (RFC 7296 section 3.15.1); the netmask must be contiguous and the
/// address must have no bits beyond it.
pub(crate) fn subnet_attribute(value: &[u8]) -> Result<Ipv4Prefix, String> {
    let Ok(v) = <[u8; 8]>::try_from(value) else {
        return Err(format!("{} octets instead of 8", value.len()));
    };
    let addr = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
    let mask = Ipv4Addr::new(v[4], v[5], v[6], v[7]);
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    if bits.checked_shl(len).unwrap_or(0) != 0 {
        return Err(format!("{addr} mask {mask}: the netmask is not contiguous"));
    }
    let len = u8::try_from(len).expect("at most 32");
    Ipv4Prefix::new(addr, len)
        .ok_or_else(|| format!("{addr}/{len} has host bits set (the address is not the network's)"))
}

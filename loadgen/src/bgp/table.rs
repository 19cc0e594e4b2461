//! Who announces what, and what a speaker holds. Speaker i announces
//! 10.(100 + i / 256).(i % 256).0/24 with next hop its own source address;
//! what it receives is read straight from the UPDATE's bytes (withdrawn
//! routes, the NEXT_HOP attribute, NLRI) into a bit per speaker: the hub
//! sends every speaker N - 1 routes, N^2 in all, and a full decode of each
//! would make the simulator, not the hub, the bottleneck.

use std::net::Ipv4Addr;

use gateway::{
    bgp::{
        types::{Message, Origin, PathAttributes, Update},
        wire::attr,
    },
    net::Ipv4Prefix,
};

/// The most speakers the prefix plan has room for (second octet 100..=255).
pub const MAX_SPEAKERS: u32 = 156 * 256;

/// The speakers' addresses and prefixes.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub speakers: u32,
    source_first: u32,
}

impl Plan {
    pub fn new(speakers: u32, source_first: Ipv4Addr) -> Option<Self> {
        let first = u32::from(source_first);
        (speakers <= MAX_SPEAKERS && first.checked_add(speakers).is_some()).then_some(Plan {
            speakers,
            source_first: first,
        })
    }

    pub fn source(self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.source_first + index)
    }

    pub fn prefix(index: u32) -> Ipv4Prefix {
        Ipv4Prefix {
            addr: Ipv4Addr::from(0x0a64_0000 + (index << 8)),
            len: 24,
        }
    }

    /// The speaker whose prefix this is (length and the three octets).
    fn index_of(self, len: u8, octets: &[u8]) -> Option<u32> {
        match (len, octets) {
            (24, [10, b, c]) if *b >= 100 => {
                let index = (u32::from(*b) - 100) << 8 | u32::from(*c);
                (index < self.speakers).then_some(index)
            }
            _ => None,
        }
    }

    /// Speaker `index`'s UPDATE: its prefix, next hop itself, as a spoke
    /// announces its LAN.
    pub fn announcement(self, index: u32) -> Message {
        Message::Update(Update {
            withdrawn: vec![],
            attributes: Some(PathAttributes {
                origin: Origin::Igp,
                as_path: vec![],
                next_hop: self.source(index),
                med: None,
                local_pref: Some(100),
                atomic_aggregate: false,
                aggregator: None,
                communities: vec![],
                originator_id: None,
                cluster_list: vec![],
                other: vec![],
            }),
            nlri: vec![Self::prefix(index)],
        })
    }
}

/// Which other speakers' prefixes one speaker holds.
pub struct Table {
    bits: Vec<u64>,
    held: u32,
}

/// What a speaker's UPDATEs added up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub updates: u64,
    pub announced: u64,
    pub wrong_next_hop: u64,
    /// The speaker's own prefix sent back (FRR's reflector does; the
    /// speaker drops it by its ORIGINATOR_ID, RFC 4456 section 8).
    pub own_returned: u64,
    pub unexpected: u64,
}

impl Table {
    pub fn new(speakers: u32) -> Self {
        Table {
            bits: vec![0; speakers.div_ceil(64) as usize],
            held: 0,
        }
    }

    /// How many other speakers' prefixes are held.
    pub fn held(&self) -> u32 {
        self.held
    }

    fn set(&mut self, index: u32, on: bool) {
        let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
        let was = self.bits[word] & bit != 0;
        if on && !was {
            self.bits[word] |= bit;
            self.held += 1;
        } else if !on && was {
            self.bits[word] &= !bit;
            self.held -= 1;
        }
    }

    /// Applies the body of one UPDATE (the bytes after the header) received
    /// by speaker `own`.
    pub fn apply(
        &mut self,
        plan: Plan,
        own: u32,
        body: &[u8],
        counts: &mut Counts,
    ) -> Result<(), &'static str> {
        counts.updates += 1;
        let withdrawn_len = usize::from(be16(body, 0)?);
        let withdrawn = body.get(2..2 + withdrawn_len).ok_or("withdrawn routes")?;
        let attrs_at = 2 + withdrawn_len;
        let attrs_len = usize::from(be16(body, attrs_at)?);
        let attrs = body
            .get(attrs_at + 2..attrs_at + 2 + attrs_len)
            .ok_or("path attributes")?;
        let nlri = &body[attrs_at + 2 + attrs_len..];
        prefixes(withdrawn, |len, octets| {
            if let Some(index) = plan.index_of(len, octets) {
                self.set(index, false);
            }
        })?;
        if nlri.is_empty() {
            return Ok(());
        }
        let next_hop = next_hop(attrs)?;
        prefixes(nlri, |len, octets| {
            counts.announced += 1;
            match plan.index_of(len, octets) {
                Some(index) if index == own => counts.own_returned += 1,
                Some(index) => {
                    if next_hop != plan.source(index) {
                        counts.wrong_next_hop += 1;
                    }
                    self.set(index, true);
                }
                None => counts.unexpected += 1,
            }
        })
    }
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, &'static str> {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err("a length field"),
    }
}

/// Each (length, significant octets) of a run of prefixes (RFC 4271
/// section 4.3).
fn prefixes(mut bytes: &[u8], mut each: impl FnMut(u8, &[u8])) -> Result<(), &'static str> {
    while let Some((&len, rest)) = bytes.split_first() {
        if len > 32 {
            return Err("a prefix longer than 32");
        }
        let octets = usize::from(len).div_ceil(8);
        let value = rest.get(..octets).ok_or("a prefix")?;
        each(len, value);
        bytes = &rest[octets..];
    }
    Ok(())
}

/// The NEXT_HOP attribute's address.
fn next_hop(mut attrs: &[u8]) -> Result<Ipv4Addr, &'static str> {
    while attrs.len() >= 3 {
        let (flags, code) = (attrs[0], attrs[1]);
        let (len, at) = if flags & 0x10 != 0 {
            (usize::from(be16(attrs, 2)?), 4)
        } else {
            (usize::from(attrs[2]), 3)
        };
        let value = attrs.get(at..at + len).ok_or("a path attribute")?;
        if code == attr::NEXT_HOP {
            return match value {
                &[a, b, c, d] => Ok(Ipv4Addr::new(a, b, c, d)),
                _ => Err("NEXT_HOP is not 4 bytes"),
            };
        }
        attrs = &attrs[at + len..];
    }
    Err("an UPDATE with NLRI and no NEXT_HOP")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gateway::bgp::wire::{HEADER_LEN, encode_to_vec};

    use super::*;

    fn plan() -> Plan {
        Plan::new(600, Ipv4Addr::new(10, 200, 0, 1)).unwrap()
    }

    /// Speaker `from`'s route as a reflector passes it on (ORIGINATOR_ID,
    /// CLUSTER_LIST, next hop unchanged), encoded by the gateway's codec.
    fn reflected(plan: Plan, from: &[u32], next_hop: Ipv4Addr, withdrawn: &[u32]) -> Vec<u8> {
        let Message::Update(mut update) = plan.announcement(from[0]) else {
            unreachable!()
        };
        let attrs = update.attributes.as_mut().unwrap();
        attrs.next_hop = next_hop;
        attrs.originator_id = Some(plan.source(from[0]));
        attrs.cluster_list = vec![Ipv4Addr::new(172, 26, 0, 1)];
        update.nlri = from.iter().map(|&i| Plan::prefix(i)).collect();
        update.withdrawn = withdrawn.iter().map(|&i| Plan::prefix(i)).collect();
        encode_to_vec(&Message::Update(update)).unwrap()[HEADER_LEN..].to_vec()
    }

    #[test]
    fn prefixes_map_to_their_speakers_and_back() {
        let p = plan();
        assert_eq!(Plan::prefix(0).to_string(), "10.100.0.0/24");
        assert_eq!(Plan::prefix(257).to_string(), "10.101.1.0/24");
        assert_eq!(p.index_of(24, &[10, 101, 1]), Some(257));
        assert_eq!(
            p.index_of(24, &[10, 102, 88]),
            None,
            "speaker 600 is past N"
        );
        assert_eq!(p.index_of(16, &[10, 100]), None);
        assert_eq!(p.source(5), Ipv4Addr::new(10, 200, 0, 6));
        assert!(Plan::new(MAX_SPEAKERS + 1, Ipv4Addr::new(10, 0, 0, 1)).is_none());
    }

    #[test]
    fn reflected_routes_are_held_withdrawals_clear_them() {
        let p = plan();
        let mut table = Table::new(p.speakers);
        let mut counts = Counts::default();
        let body = reflected(p, &[3, 4], p.source(3), &[]);
        table.apply(p, 0, &body, &mut counts).unwrap();
        assert_eq!(table.held(), 2);
        // The same routes again change nothing.
        table.apply(p, 0, &body, &mut counts).unwrap();
        assert_eq!(table.held(), 2);
        assert_eq!((counts.updates, counts.announced), (2, 4));
        // Speaker 4's route came with speaker 3's next hop, twice.
        assert_eq!(counts.wrong_next_hop, 2);
        let body = reflected(p, &[5], p.source(5), &[3]);
        table.apply(p, 0, &body, &mut counts).unwrap();
        assert_eq!(table.held(), 2, "3 withdrawn, 5 added");
        assert_eq!(counts.wrong_next_hop, 2);
    }

    #[test]
    fn a_speakers_own_prefix_and_strangers_are_not_held() {
        let p = plan();
        let mut table = Table::new(p.speakers);
        let mut counts = Counts::default();
        table
            .apply(p, 7, &reflected(p, &[7], p.source(7), &[]), &mut counts)
            .unwrap();
        let mut stranger = reflected(p, &[8], p.source(8), &[]);
        // 10.102.88.0/24: speaker 600's, past N.
        let at = stranger.len() - 3;
        stranger[at..].copy_from_slice(&[10, 102, 88]);
        table.apply(p, 7, &stranger, &mut counts).unwrap();
        assert_eq!(table.held(), 0);
        assert_eq!((counts.own_returned, counts.unexpected), (1, 1));
    }

    #[test]
    fn a_withdrawal_only_update_needs_no_next_hop_and_bad_bytes_are_errors() {
        let p = plan();
        let mut table = Table::new(p.speakers);
        let mut counts = Counts::default();
        let withdraw = encode_to_vec(&Message::Update(Update {
            withdrawn: vec![Plan::prefix(1)],
            attributes: None,
            nlri: vec![],
        }))
        .unwrap();
        table
            .apply(p, 0, &withdraw[HEADER_LEN..], &mut counts)
            .unwrap();
        let body = reflected(p, &[1], p.source(1), &[]);
        assert!(
            table
                .apply(p, 0, &body[..body.len() - 1], &mut counts)
                .is_err()
        );
        assert!(table.apply(p, 0, &[0, 9], &mut counts).is_err());
    }
}

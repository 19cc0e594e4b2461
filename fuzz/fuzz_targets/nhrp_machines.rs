//! NHRP packets from the network into the hub's redirector and a spoke's
//! shortcut machine: nothing panics, and every packet they send parses.
//! The checksum is fixed up first so that the input reaches past it.
#![no_main]

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use gateway::{
    iface::VaId,
    nhrp::{
        Station,
        redirect::Redirector,
        shortcut::{Action, Shortcuts, SpokeSettings},
        wire::NhrpRepr,
    },
};
use libfuzzer_sys::fuzz_target;

fn with_checksum(data: &[u8]) -> Vec<u8> {
    let mut bytes = data.to_vec();
    if bytes.len() >= 20 {
        bytes[12] = 0;
        bytes[13] = 0;
        let size = usize::from(u16::from_be_bytes([bytes[10], bytes[11]])).min(bytes.len());
        let mut sum = 0u32;
        for pair in bytes[..size].chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let checksum = !u16::try_from(sum).unwrap_or(0);
        bytes[12..14].copy_from_slice(&checksum.to_be_bytes());
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let packet = with_checksum(data);
    let now = Instant::now();
    let mut hub = Redirector::new(Station {
        nbma: Ipv4Addr::new(172, 25, 1, 1),
        protocol: Ipv4Addr::new(10, 1, 1, 1),
    });
    let route = |a: Ipv4Addr| Some(VaId::virtual_access(u32::from(a.octets()[3] % 3)));
    for out in hub.on_packet(VaId::virtual_access(1), &packet, &route) {
        NhrpRepr::parse_bytes(&out.packet).expect("the hub sends what parses");
    }
    let mut spoke = Shortcuts::new(SpokeSettings {
        nbma: Ipv4Addr::new(172, 25, 1, 11),
        own_prefixes: vec!["192.168.1.0/24".parse().expect("a prefix")],
        holdtime: 30,
        shortcut: true,
        hub_va: VaId::tunnel(1),
    });
    spoke.set_protocol_address(Some(Ipv4Addr::new(10, 1, 1, 100)));
    let mut actions = spoke.on_packet(now, VaId::virtual_access(2), &packet);
    actions.extend(spoke.tick(now + Duration::from_secs(40), &[VaId::virtual_access(2)]));
    for action in actions {
        if let Action::Send { packet, .. } = action {
            NhrpRepr::parse_bytes(&packet).expect("the spoke sends what parses");
        }
    }
});

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::{
    iface::HAIRPIN_HEAD_LEN,
    nhrp::wire::{Mandatory, NhrpRepr},
};

const HUB: Station = Station {
    nbma: Ipv4Addr::new(172, 25, 1, 1),
    protocol: Ipv4Addr::new(10, 1, 1, 1),
};
const VA1: VaId = VaId::virtual_access(1);
const VA2: VaId = VaId::virtual_access(2);
const LAN1_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const LAN2_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);

fn hairpin(src: Ipv4Addr, dst: Ipv4Addr) -> Hairpin {
    let mut head = [0u8; HAIRPIN_HEAD_LEN];
    head[0] = 0x45;
    head[9] = 1;
    head[12..16].copy_from_slice(&src.octets());
    head[16..20].copy_from_slice(&dst.octets());
    Hairpin {
        from: VA1,
        to: VA2,
        src,
        dst,
        head,
        head_len: 28,
    }
}

/// The hub's routes: LAN 2 and spoke 2's tunnel address via VA2, spoke 1's
/// via VA1.
fn route(addr: Ipv4Addr) -> Option<VaId> {
    match addr.octets() {
        [192, 168, 2, _] | [10, 1, 1, 101] => Some(VA2),
        [192, 168, 1, _] | [10, 1, 1, 100] => Some(VA1),
        _ => None,
    }
}

fn request(dst: Ipv4Addr, hop_count: u8) -> Vec<u8> {
    NhrpRepr {
        hop_count,
        message: Message::ResolutionRequest(Mandatory {
            flags: crate::nhrp::FLAG_Q,
            request_id: 7,
            addresses: Addresses {
                src_nbma: Some(Ipv4Addr::new(172, 25, 1, 11)),
                src_protocol: Some(Ipv4Addr::new(10, 1, 1, 100)),
                dst_protocol: Some(dst),
            },
            cies: vec![Cie::default()],
        }),
        extensions: vec![Extension {
            compulsory: true,
            body: ExtensionBody::ForwardTransitNhs(Vec::new()),
        }],
    }
    .emit_to_vec()
    .unwrap()
}

#[test]
fn a_hairpin_sends_one_traffic_indication_per_pair_and_timeout() {
    let mut r = Redirector::new(HUB);
    let t0 = Instant::now();
    let timeout = Duration::from_secs(8);
    let h = hairpin(LAN1_HOST, LAN2_HOST);
    let out = r.on_hairpin(&h, t0, timeout).expect("first one is sent");
    assert_eq!(out.va, VA1, "to the spoke the packet came from");
    let repr = NhrpRepr::parse_bytes(&out.packet).unwrap();
    let Message::TrafficIndication(ti) = repr.message else {
        panic!("not a Traffic Indication: {repr:?}");
    };
    assert_eq!(ti.code, 0);
    assert_eq!(ti.addresses.src_nbma, Some(HUB.nbma));
    assert_eq!(ti.addresses.src_protocol, Some(HUB.protocol));
    assert_eq!(ti.addresses.dst_protocol, Some(LAN1_HOST));
    assert_eq!(ti.data, h.head(), "the original header comes back");

    for ms in [1, 500, 7999] {
        assert!(
            r.on_hairpin(&h, t0 + Duration::from_millis(ms), timeout)
                .is_none()
        );
    }
    // Another pair is its own.
    assert!(
        r.on_hairpin(&hairpin(LAN2_HOST, LAN1_HOST), t0, timeout)
            .is_some()
    );
    assert!(r.on_hairpin(&h, t0 + timeout, timeout).is_some());
    assert_eq!(r.traffic.redirects_sent, 3);
    assert_eq!(r.traffic.redirects_suppressed, 3);
    // clear ip nhrp: the limits start afresh.
    assert_eq!(r.clear(), 2);
    assert!(
        r.on_hairpin(&h, t0 + timeout + Duration::from_millis(1), timeout)
            .is_some()
    );
}

#[test]
fn requests_go_to_the_owner_with_the_hub_as_transit_and_replies_come_back() {
    let mut r = Redirector::new(HUB);
    let out = r.on_packet(VA1, &request(LAN2_HOST, 16), &route);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].va, VA2);
    let fwd = NhrpRepr::parse_bytes(&out[0].packet).unwrap();
    assert_eq!(fwd.hop_count, 15);
    assert!(matches!(
        &fwd.extensions[0].body,
        ExtensionBody::ForwardTransitNhs(c) if c.len() == 1 && c[0].protocol == Some(HUB.protocol) && c[0].nbma == Some(HUB.nbma)
    ));
    assert_eq!(r.traffic.resolution_requests_forwarded, 1);

    // The owner's reply keeps the requester as source: back to VA1.
    let Message::ResolutionRequest(m) = fwd.message else {
        unreachable!()
    };
    let reply = NhrpRepr {
        hop_count: 16,
        message: Message::ResolutionReply(m),
        extensions: Vec::new(),
    }
    .emit_to_vec()
    .unwrap();
    let out = r.on_packet(VA2, &reply, &route);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].va, VA1);
    let back = NhrpRepr::parse_bytes(&out[0].packet).unwrap();
    assert!(
        back.extensions
            .iter()
            .any(|e| matches!(&e.body, ExtensionBody::ReverseTransitNhs(c) if c.len() == 1))
    );
    assert_eq!(r.traffic.resolution_replies_forwarded, 1);
}

fn error_code_of(out: &[Outgoing]) -> (VaId, u16) {
    assert_eq!(out.len(), 1, "{out:?}");
    let repr = NhrpRepr::parse_bytes(&out[0].packet).unwrap();
    let Message::ErrorIndication(e) = repr.message else {
        panic!("not an error: {repr:?}");
    };
    assert_eq!(e.addresses.dst_protocol, Some(Ipv4Addr::new(10, 1, 1, 100)));
    (out[0].va, e.code)
}

#[test]
fn unroutable_looping_or_expired_requests_get_an_error_indication() {
    let mut r = Redirector::new(HUB);
    let unknown = Ipv4Addr::new(203, 0, 113, 9);
    assert_eq!(
        error_code_of(&r.on_packet(VA1, &request(unknown, 16), &route)),
        (VA1, error_code::PROTOCOL_ADDRESS_UNREACHABLE)
    );
    // A destination behind the asking spoke itself is not sent back to it.
    assert_eq!(
        error_code_of(&r.on_packet(VA1, &request(LAN1_HOST, 16), &route)),
        (VA1, error_code::PROTOCOL_ADDRESS_UNREACHABLE)
    );
    assert_eq!(
        error_code_of(&r.on_packet(VA1, &request(LAN2_HOST, 1), &route)),
        (VA1, error_code::HOP_COUNT_EXCEEDED)
    );
    let once = r.on_packet(VA1, &request(LAN2_HOST, 16), &route);
    assert_eq!(
        error_code_of(&r.on_packet(VA1, &once[0].packet, &route)),
        (VA1, error_code::LOOP_DETECTED)
    );
    assert_eq!(r.traffic.error_indications_sent, 4);
}

#[test]
fn garbage_is_counted_not_forwarded() {
    let mut r = Redirector::new(HUB);
    let mut bad = request(LAN2_HOST, 16);
    bad[30] ^= 0xff;
    assert!(r.on_packet(VA1, &bad, &route).is_empty());
    assert!(r.on_packet(VA1, &[], &route).is_empty());
    assert_eq!(r.traffic.malformed, 2);
}

#[test]
fn a_request_that_cannot_be_sent_on_is_answered_with_an_error() {
    let mut r = Redirector::new(HUB);
    let request = request(LAN2_HOST, 16);
    assert_eq!(r.on_packet(VA1, &request, &route).len(), 1);
    // VA2 turned out to be a tunnel-mode peer: no GRE for NHRP.
    assert_eq!(
        error_code_of(&r.undeliverable(VA1, &request)),
        (VA1, error_code::PROTOCOL_ADDRESS_UNREACHABLE)
    );
    assert_eq!(r.traffic.resolution_requests_forwarded, 0);
    assert_eq!(r.traffic.error_indications_sent, 1);
}

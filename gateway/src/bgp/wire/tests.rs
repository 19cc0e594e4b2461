//! Codec tests: the FRR capture (decode, re-encode byte for byte), stream
//! framing, round trips of every attribute and capability, each RFC 4271
//! section 6 error with the NOTIFICATION it maps to, every truncation, and
//! random bytes and mutations (no panic).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::*;
use crate::bgp::types::{
    AS_TRANS, AsSegment, Capability, Message, Notification, Open, Origin, PathAttributes,
    RawAttribute, Update,
};
use crate::net::Ipv4Prefix;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn keepalive() -> Vec<u8> {
    hex(include_str!("../testdata/keepalive.hex"))
}
fn notification_cease() -> Vec<u8> {
    hex(include_str!("../testdata/notification_cease.hex"))
}
fn open_listener() -> Vec<u8> {
    hex(include_str!("../testdata/open_listener.hex"))
}
fn open_connector() -> Vec<u8> {
    hex(include_str!("../testdata/open_connector.hex"))
}
fn update_connector() -> Vec<u8> {
    hex(include_str!("../testdata/update_connector.hex"))
}
fn update_listener() -> Vec<u8> {
    hex(include_str!("../testdata/update_listener.hex"))
}
fn update_end_of_rib() -> Vec<u8> {
    hex(include_str!("../testdata/update_end_of_rib.hex"))
}

fn captured() -> Vec<Vec<u8>> {
    vec![
        keepalive(),
        notification_cease(),
        open_listener(),
        open_connector(),
        update_connector(),
        update_listener(),
        update_end_of_rib(),
    ]
}

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A message from a body: the header is added with the right length.
fn message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(msg_type);
    out.extend_from_slice(body);
    out
}

/// An UPDATE body with no withdrawn routes, these attributes and NLRI.
fn update_body(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    body
}

const ORIGIN_IGP: &[u8] = &[0x40, 1, 1, 0];
const AS_PATH_EMPTY: &[u8] = &[0x40, 2, 0];
const NEXT_HOP: &[u8] = &[0x40, 3, 4, 172, 25, 1, 1];
const NLRI_10_1_2: &[u8] = &[24, 10, 1, 2];

fn update_with(attrs: &[&[u8]]) -> Vec<u8> {
    message(msg_type::UPDATE, &update_body(&attrs.concat(), NLRI_10_1_2))
}

fn err_of(bytes: &[u8]) -> WireError {
    decode(bytes).unwrap_err()
}

fn code_of(bytes: &[u8]) -> (u8, u8, Vec<u8>) {
    let n = err_of(bytes).notification();
    (n.code, n.subcode, n.data)
}

fn full_attributes() -> PathAttributes {
    PathAttributes {
        origin: Origin::Incomplete,
        as_path: vec![
            AsSegment::Sequence(vec![65001, 4_200_000_000, 23456]),
            AsSegment::Set(vec![1, 2]),
        ],
        next_hop: ip("10.1.1.100"),
        med: Some(50),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some((4_200_000_001, ip("192.168.0.1"))),
        communities: vec![0xfde8_0064, 0xffff_ff01],
        originator_id: Some(ip("10.1.1.101")),
        cluster_list: vec![ip("192.168.0.1"), ip("192.168.0.2")],
        other: vec![
            // Extended communities, optional transitive, partial.
            RawAttribute {
                flags: 0xe0,
                type_code: 16,
                value: vec![0, 2, 0xfd, 0xe8, 0, 0, 0, 1],
            },
            // Large communities sent with an Extended Length the value
            // does not need: kept.
            RawAttribute {
                flags: 0xd0,
                type_code: 32,
                value: vec![0; 12],
            },
            // An unassigned optional non-transitive attribute.
            RawAttribute {
                flags: 0x80,
                type_code: 250,
                value: vec![1, 2, 3],
            },
        ],
    }
}

// ------------------------------------------------------------ captured

#[test]
fn captured_open_decodes() {
    let Message::Open(open) = decode(&open_listener()).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(open.my_as, 65000);
    assert_eq!(open.asn(), 65000);
    assert_eq!(open.hold_time, 9);
    assert_eq!(open.router_id, ip("172.25.1.2"));
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::Other {
                code: 64,
                value: vec![0x00, 0x78]
            },
            Capability::FourOctetAs(65000),
            Capability::Other {
                code: 70,
                value: vec![]
            },
            Capability::Other {
                code: 71,
                value: vec![]
            },
        ]
    );
    let Message::Open(other) = decode(&open_connector()).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(other.router_id, ip("172.25.1.1"));
}

#[test]
fn captured_updates_decode() {
    let Message::Update(update) = decode(&update_connector()).unwrap() else {
        panic!("not an UPDATE");
    };
    assert!(update.withdrawn.is_empty());
    assert_eq!(
        update.nlri,
        vec![
            prefix("10.1.2.0/24"),
            prefix("10.1.2.1/32"),
            prefix("172.25.1.0/24")
        ]
    );
    let attrs = update.attributes.unwrap();
    assert_eq!(attrs.origin, Origin::Igp);
    assert!(attrs.as_path.is_empty());
    assert_eq!(attrs.next_hop, ip("172.25.1.1"));
    assert_eq!(attrs.local_pref, Some(100));
    assert_eq!(attrs.med, None);
    assert!(attrs.other.is_empty());

    let Message::Update(update) = decode(&update_listener()).unwrap() else {
        panic!("not an UPDATE");
    };
    assert_eq!(update.nlri, vec![prefix("192.168.77.0/24")]);
    assert_eq!(update.attributes.unwrap().next_hop, ip("172.25.1.2"));

    assert_eq!(
        decode(&update_end_of_rib()).unwrap(),
        Message::Update(Update {
            withdrawn: vec![],
            attributes: None,
            nlri: vec![],
        })
    );
}

#[test]
fn captured_keepalive_and_notification_decode() {
    assert_eq!(decode(&keepalive()).unwrap(), Message::Keepalive);
    assert_eq!(
        decode(&notification_cease()).unwrap(),
        Message::Notification(Notification {
            code: error_code::CEASE,
            subcode: cease_subcode::ADMINISTRATIVE_RESET,
            data: vec![],
        })
    );
}

#[test]
fn captured_messages_reencode_byte_for_byte() {
    for bytes in captured() {
        let msg = decode(&bytes).unwrap();
        assert_eq!(encoded_len(&msg), bytes.len(), "{msg:?}");
        assert_eq!(encode_to_vec(&msg).unwrap(), bytes, "{msg:?}");
    }
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = vec![0xaa; 7];
    let written = encode(&Message::Keepalive, &mut out).unwrap();
    assert_eq!(written, 19);
    assert_eq!(&out[..7], &[0xaa; 7]);
    assert_eq!(&out[7..], keepalive().as_slice());
}

// ------------------------------------------------------------- framing

#[test]
fn frame_len_splits_a_stream() {
    let stream: Vec<u8> = captured().concat();
    let mut at = 0;
    let mut messages = 0;
    while at < stream.len() {
        let len = frame_len(&stream[at..]).unwrap().unwrap();
        decode(&stream[at..at + len]).unwrap();
        at += len;
        messages += 1;
    }
    assert_eq!(messages, captured().len());
}

#[test]
fn frame_len_waits_for_whole_messages() {
    let open = open_listener();
    for n in 0..open.len() {
        assert_eq!(frame_len(&open[..n]).unwrap(), None, "{n} bytes");
    }
    assert_eq!(frame_len(&open).unwrap(), Some(open.len()));
    let mut two = open.clone();
    two.extend_from_slice(&keepalive()[..5]);
    assert_eq!(frame_len(&two).unwrap(), Some(open.len()));
}

#[test]
fn frame_len_refuses_bad_marker_and_length_early() {
    // A bad marker byte is seen as soon as it arrives.
    assert_eq!(
        frame_len(&[0xff, 0xff, 0xfe]),
        Err(WireError::NotSynchronized)
    );
    let mut bad = keepalive();
    bad[15] = 0;
    assert_eq!(frame_len(&bad), Err(WireError::NotSynchronized));
    // Length below 19 or above 4096, before the body arrives.
    for length in [0u16, 18, 4097, 0xffff] {
        let mut head = vec![0xff; 16];
        head.extend_from_slice(&length.to_be_bytes());
        let err = frame_len(&head).unwrap_err();
        assert_eq!(
            err,
            WireError::BadMessageLength {
                length,
                msg_type: None
            }
        );
        let n = err.notification();
        assert_eq!(
            (n.code, n.subcode, n.data),
            (1, 2, length.to_be_bytes().to_vec())
        );
    }
}

// --------------------------------------------------------- round trips

fn round_trip(msg: &Message) -> Vec<u8> {
    let bytes = encode_to_vec(msg).unwrap();
    assert_eq!(bytes.len(), encoded_len(msg));
    assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
    assert_eq!(&decode(&bytes).unwrap(), msg);
    bytes
}

#[test]
fn update_with_every_attribute_round_trips() {
    let msg = Message::Update(Update {
        withdrawn: vec![
            prefix("0.0.0.0/0"),
            prefix("10.0.0.0/8"),
            prefix("10.9.8.7/32"),
        ],
        attributes: Some(full_attributes()),
        nlri: vec![prefix("192.168.0.0/16"), prefix("10.1.2.128/25")],
    });
    let bytes = round_trip(&msg);
    // The attributes come in type-code order, raw ones last.
    let attrs_at = 19 + 2 + 1 + 2 + 5 + 2;
    let mut codes = vec![];
    let mut at = attrs_at;
    let attrs_len = usize::from(u16::from_be_bytes([
        bytes[attrs_at - 2],
        bytes[attrs_at - 1],
    ]));
    while at < attrs_at + attrs_len {
        let ext = bytes[at] & flag::EXTENDED_LENGTH != 0;
        codes.push(bytes[at + 1]);
        at += if ext {
            4 + usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]))
        } else {
            3 + usize::from(bytes[at + 2])
        };
    }
    assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 250]);
}

#[test]
fn withdraw_only_update_round_trips() {
    round_trip(&Message::Update(Update {
        withdrawn: vec![prefix("10.1.2.0/24")],
        attributes: None,
        nlri: vec![],
    }));
}

#[test]
fn long_attributes_use_extended_length() {
    let mut attrs = full_attributes();
    attrs.communities = (0..100).collect();
    attrs.as_path = vec![AsSegment::Sequence((1..=255).collect())];
    let msg = Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(attrs),
        nlri: vec![prefix("10.0.0.0/24")],
    });
    let bytes = round_trip(&msg);
    // AS_PATH (1022 bytes) right after ORIGIN: flags 0x50, two-byte length.
    let at = 19 + 2 + 2 + 4;
    assert_eq!(&bytes[at..at + 4], &[0x50, 2, 0x03, 0xfe]);
}

#[test]
fn open_round_trips_with_unknown_capabilities() {
    let msg = Message::Open(Open {
        my_as: AS_TRANS,
        hold_time: 180,
        router_id: ip("192.168.0.2"),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::Other {
                code: 128,
                value: vec![],
            },
            Capability::FourOctetAs(4_200_000_000),
            Capability::Other {
                code: 73,
                value: b"spoke1".to_vec(),
            },
        ],
    });
    round_trip(&msg);
    let Message::Open(open) = msg else {
        unreachable!()
    };
    assert_eq!(open.asn(), 4_200_000_000);
}

#[test]
fn open_without_capabilities_round_trips() {
    round_trip(&Message::Open(Open {
        my_as: 65001,
        hold_time: 0,
        router_id: ip("10.0.0.1"),
        capabilities: vec![],
    }));
}

#[test]
fn other_messages_round_trip() {
    round_trip(&Message::RouteRefresh { afi: 1, safi: 1 });
    round_trip(&Message::Keepalive);
    round_trip(&Message::Notification(Notification {
        code: 3,
        subcode: 5,
        data: vec![0x40, 1, 2, 0, 0],
    }));
}

#[test]
fn capabilities_in_several_parameters_are_flattened() {
    // IOS puts each capability in its own parameter.
    let mut body = vec![4, 0xfd, 0xe9, 0, 180, 10, 0, 0, 1];
    let params = [
        &[2u8, 6, 1, 4, 0, 1, 0, 1][..],
        &[2, 2, 2, 0],
        &[2, 6, 65, 4, 0, 0, 0xfd, 0xe9],
    ]
    .concat();
    body.push(u8::try_from(params.len()).unwrap());
    body.extend_from_slice(&params);
    let Message::Open(open) = decode(&message(msg_type::OPEN, &body)).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
        ]
    );
}

#[test]
fn extended_optional_parameters_are_read() {
    // RFC 9072: 255, then type 255 and a two-byte length, then parameters
    // with two-byte lengths.
    let mut body = vec![4, 0xfd, 0xe9, 0, 180, 10, 0, 0, 1, 255, 255, 0, 9];
    body.extend_from_slice(&[2, 0, 6, 65, 4, 0, 0, 0xfd, 0xe9]);
    let Message::Open(open) = decode(&message(msg_type::OPEN, &body)).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(open.capabilities, vec![Capability::FourOctetAs(65001)]);
}

#[test]
fn many_capabilities_use_the_extended_format() {
    let msg = Message::Open(Open {
        my_as: 65001,
        hold_time: 180,
        router_id: ip("10.0.0.1"),
        capabilities: (0..3)
            .map(|i| Capability::Other {
                code: 200 + i,
                value: vec![i; 100],
            })
            .collect(),
    });
    let bytes = round_trip(&msg);
    assert_eq!(&bytes[28..34], &[255, 255, 1, 53, 2, 1]);
}

#[test]
fn trailing_prefix_bits_are_ignored() {
    // 10.1.2.255/23: the bits past /23 are padding.
    let bytes = message(
        msg_type::UPDATE,
        &update_body(
            &[ORIGIN_IGP, AS_PATH_EMPTY, NEXT_HOP].concat(),
            &[23, 10, 1, 3],
        ),
    );
    let Message::Update(update) = decode(&bytes).unwrap() else {
        panic!("not an UPDATE");
    };
    assert_eq!(update.nlri, vec![prefix("10.1.2.0/23")]);
}

#[test]
fn unused_flag_bits_are_ignored() {
    let bytes = update_with(&[ORIGIN_IGP, AS_PATH_EMPTY, NEXT_HOP, &[0xcf, 99, 1, 7]]);
    let Message::Update(update) = decode(&bytes).unwrap() else {
        panic!("not an UPDATE");
    };
    assert_eq!(
        update.attributes.unwrap().other,
        vec![RawAttribute {
            flags: 0xc0,
            type_code: 99,
            value: vec![7]
        }]
    );
}

// ------------------------------------------------- errors and NOTIFICATIONs

#[test]
fn header_errors_map_to_message_header_error() {
    let mut bad_marker = keepalive();
    bad_marker[0] = 0;
    assert_eq!(code_of(&bad_marker), (1, 1, vec![]));

    let mut bad_type = keepalive();
    bad_type[18] = 9;
    assert_eq!(code_of(&bad_type), (1, 3, vec![9]));

    // A KEEPALIVE with a body, an OPEN below 29 bytes, a NOTIFICATION
    // without codes, a ROUTE-REFRESH of the wrong size.
    for (t, body) in [
        (msg_type::KEEPALIVE, vec![0]),
        (msg_type::OPEN, vec![4, 0, 1, 0, 180, 1, 1, 1, 1]),
        (msg_type::NOTIFICATION, vec![6]),
        (msg_type::ROUTE_REFRESH, vec![0, 1, 0]),
        (msg_type::UPDATE, vec![0, 0, 0]),
    ] {
        let bytes = message(t, &body);
        let length = u16::try_from(bytes.len()).unwrap();
        assert_eq!(
            err_of(&bytes),
            WireError::BadMessageLength {
                length,
                msg_type: Some(t)
            }
        );
        assert_eq!(code_of(&bytes), (1, 2, length.to_be_bytes().to_vec()));
    }
}

#[test]
fn decode_wants_exactly_one_message() {
    let mut two = keepalive();
    two.push(0);
    assert_eq!(
        err_of(&two),
        WireError::TrailingBytes {
            length: 19,
            available: 20
        }
    );
    assert!(matches!(
        err_of(&update_connector()[..40]),
        WireError::Truncated {
            needed: 57,
            available: 40
        }
    ));
}

#[test]
fn open_errors_map_to_open_message_error() {
    let mut v3 = open_listener();
    v3[19] = 3;
    assert_eq!(code_of(&v3), (2, 1, vec![0, 4]));

    // Authentication (type 1, RFC 1771) is no longer a parameter.
    let body = [4, 0xfd, 0xe8, 0, 180, 10, 0, 0, 1, 3, 1, 1, 0];
    let bytes = message(msg_type::OPEN, &body);
    assert_eq!(
        err_of(&bytes),
        WireError::UnsupportedOptionalParameter { param_type: 1 }
    );
    assert_eq!(code_of(&bytes), (2, 4, vec![]));

    // Optional Parameters Length longer than what follows.
    let body = [4, 0xfd, 0xe8, 0, 180, 10, 0, 0, 1, 9, 2, 2, 2, 0];
    assert_eq!(code_of(&message(msg_type::OPEN, &body)), (2, 0, vec![]));

    // A 4-octet AS capability of 2 bytes.
    let body = [
        4, 0xfd, 0xe8, 0, 180, 10, 0, 0, 1, 6, 2, 4, 65, 2, 0xfd, 0xe8,
    ];
    assert_eq!(
        err_of(&message(msg_type::OPEN, &body)),
        WireError::MalformedCapability {
            code: 65,
            length: 2
        }
    );
}

#[test]
fn missing_well_known_attributes_are_named() {
    for (attrs, missing) in [
        (vec![AS_PATH_EMPTY, NEXT_HOP], attr::ORIGIN),
        (vec![ORIGIN_IGP, NEXT_HOP], attr::AS_PATH),
        (vec![ORIGIN_IGP, AS_PATH_EMPTY], attr::NEXT_HOP),
    ] {
        assert_eq!(code_of(&update_with(&attrs)), (3, 3, vec![missing]));
    }
    // Without NLRI an incomplete attribute set is no error; it is dropped.
    let bytes = message(
        msg_type::UPDATE,
        &update_body(&[ORIGIN_IGP, AS_PATH_EMPTY].concat(), &[]),
    );
    let Message::Update(update) = decode(&bytes).unwrap() else {
        panic!("not an UPDATE");
    };
    assert_eq!(update.attributes, None);
}

#[test]
fn attribute_errors_carry_the_attribute() {
    let cases: [(&[u8], u8); 9] = [
        // ORIGIN marked optional.
        (&[0xc0, 1, 1, 0], update_subcode::ATTRIBUTE_FLAGS_ERROR),
        // NEXT_HOP with the Partial bit.
        (
            &[0x60, 3, 4, 10, 0, 0, 1],
            update_subcode::ATTRIBUTE_FLAGS_ERROR,
        ),
        // MED marked transitive.
        (
            &[0xc0, 4, 4, 0, 0, 0, 1],
            update_subcode::ATTRIBUTE_FLAGS_ERROR,
        ),
        // ORIGIN of two bytes.
        (&[0x40, 1, 2, 0, 0], update_subcode::ATTRIBUTE_LENGTH_ERROR),
        // AGGREGATOR with a 2-byte AS.
        (
            &[0xc0, 7, 6, 0xfd, 0xe8, 10, 0, 0, 1],
            update_subcode::ATTRIBUTE_LENGTH_ERROR,
        ),
        // COMMUNITIES not a multiple of four.
        (
            &[0xc0, 8, 3, 0, 0, 1],
            update_subcode::ATTRIBUTE_LENGTH_ERROR,
        ),
        // ORIGIN 3.
        (&[0x40, 1, 1, 3], update_subcode::INVALID_ORIGIN_ATTRIBUTE),
        // A well-known attribute this speaker does not know.
        (
            &[0x40, 99, 1, 0],
            update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
        ),
        // CLUSTER_LIST marked transitive.
        (
            &[0xc0, 10, 4, 1, 1, 1, 1],
            update_subcode::ATTRIBUTE_FLAGS_ERROR,
        ),
    ];
    for (bad, subcode) in cases {
        // The bad attribute replaces the good one of its type, or joins.
        let mut attrs: Vec<&[u8]> = vec![ORIGIN_IGP, AS_PATH_EMPTY, NEXT_HOP];
        if let Some(same) = attrs.iter().position(|a| a[1] == bad[1]) {
            attrs[same] = bad;
        } else {
            attrs.push(bad);
        }
        assert_eq!(
            code_of(&update_with(&attrs)),
            (3, subcode, bad.to_vec()),
            "{bad:02x?}"
        );
    }
}

#[test]
fn next_hop_must_be_a_host_address() {
    for addr in [
        [0, 0, 0, 0],
        [127, 0, 0, 1],
        [224, 0, 0, 5],
        [255, 255, 255, 255],
    ] {
        let next_hop = [&[0x40, 3, 4][..], &addr].concat();
        let bytes = update_with(&[ORIGIN_IGP, AS_PATH_EMPTY, &next_hop]);
        assert_eq!(code_of(&bytes), (3, 8, next_hop.clone()));
    }
}

#[test]
fn malformed_lists_and_paths() {
    // An attribute twice.
    let twice = update_with(&[ORIGIN_IGP, AS_PATH_EMPTY, NEXT_HOP, ORIGIN_IGP]);
    assert_eq!(code_of(&twice), (3, 1, vec![]));
    // Withdrawn Routes Length past the end.
    let bytes = message(msg_type::UPDATE, &[0, 9, 0, 0]);
    assert_eq!(code_of(&bytes), (3, 1, vec![]));
    // Total Path Attribute Length past the end.
    let bytes = message(msg_type::UPDATE, &[0, 0, 0, 9, 0x40, 1, 1, 0]);
    assert_eq!(code_of(&bytes), (3, 1, vec![]));
    // An attribute longer than the attribute field.
    let bytes = message(msg_type::UPDATE, &update_body(&[0x40, 1, 5, 0], &[]));
    assert_eq!(code_of(&bytes), (3, 5, vec![0x40, 1, 5, 0]));
    // AS_PATH: a segment longer than the attribute, an unknown (confed)
    // segment type, an AS_SEQUENCE and an AS_SET of length zero (RFC 7606
    // section 7.2; netgauze-bgp-pkt refuses them too).
    for path in [
        &[0x40u8, 2, 6, 2, 2, 0, 0, 0xfd, 0xe8][..],
        &[0x40, 2, 6, 3, 1, 0, 0, 0xfd, 0xe8],
        &[0x40, 2, 2, 2, 0],
        &[0x40, 2, 8, 2, 1, 0, 0, 0xfd, 0xe8, 1, 0],
    ] {
        let bytes = update_with(&[ORIGIN_IGP, path, NEXT_HOP]);
        assert_eq!(code_of(&bytes), (3, 11, vec![]));
    }
    // A /33 and a prefix cut short, in the NLRI and in the withdrawn routes.
    for nlri in [&[33u8, 10, 0, 0, 0, 0][..], &[24, 10, 1]] {
        let body = update_body(&[ORIGIN_IGP, AS_PATH_EMPTY, NEXT_HOP].concat(), nlri);
        assert_eq!(code_of(&message(msg_type::UPDATE, &body)), (3, 10, vec![]));
        let mut body = vec![0, u8::try_from(nlri.len()).unwrap()];
        body.extend_from_slice(nlri);
        body.extend_from_slice(&[0, 0]);
        assert_eq!(code_of(&message(msg_type::UPDATE, &body)), (3, 10, vec![]));
    }
}

#[test]
fn encode_refuses_what_has_no_encoding() {
    let too_many = Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(full_attributes()),
        nlri: (0..1100u32)
            .map(|i| Ipv4Prefix {
                addr: Ipv4Addr::from(0x0a00_0000 | (i << 8)),
                len: 24,
            })
            .collect(),
    });
    let mut out = vec![1, 2, 3];
    assert!(matches!(
        encode(&too_many, &mut out),
        Err(WireError::TooLarge {
            what: "message",
            ..
        })
    ));
    assert_eq!(out, vec![1, 2, 3], "nothing left behind");

    let no_attrs = Message::Update(Update {
        withdrawn: vec![],
        attributes: None,
        nlri: vec![prefix("10.0.0.0/8")],
    });
    assert!(matches!(
        encode_to_vec(&no_attrs),
        Err(WireError::Unencodable { .. })
    ));

    let mut shadowing = full_attributes();
    shadowing.other.push(RawAttribute {
        flags: 0x40,
        type_code: attr::ORIGIN,
        value: vec![0],
    });
    let msg = Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(shadowing),
        nlri: vec![],
    });
    assert!(encode_to_vec(&msg).is_err());

    // An empty AS_PATH segment: what the decoder refuses (RFC 7606 7.2).
    for segment in [AsSegment::Sequence(vec![]), AsSegment::Set(vec![])] {
        let mut attrs = full_attributes();
        attrs.as_path.push(segment);
        let msg = Message::Update(Update {
            withdrawn: vec![],
            attributes: Some(attrs),
            nlri: vec![prefix("10.0.0.0/8")],
        });
        assert!(matches!(
            encode_to_vec(&msg),
            Err(WireError::Unencodable {
                what: "AS_PATH segment",
                ..
            })
        ));
    }
}

// ---------------------------------------------- truncation and random bytes

/// Every message cut at every byte is an error; with its Length fixed to
/// the cut, it is an error or a message that encodes back to the cut bytes
/// (cut at a prefix boundary) when the encoding is canonical.
#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let mut samples = captured();
    samples.push(
        encode_to_vec(&Message::Update(Update {
            withdrawn: vec![prefix("10.9.0.0/16")],
            attributes: Some(full_attributes()),
            nlri: vec![prefix("10.1.0.0/16"), prefix("10.2.3.0/24")],
        }))
        .unwrap(),
    );
    for bytes in &samples {
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "cut at {cut} of {bytes:02x?}"
            );
            if cut >= HEADER_LEN {
                let mut fixed = bytes[..cut].to_vec();
                fixed[16..18].copy_from_slice(&u16::try_from(cut).unwrap().to_be_bytes());
                if let Ok(msg) = decode(&fixed) {
                    let again = encode_to_vec(&msg).unwrap();
                    assert_eq!(decode(&again).unwrap(), msg);
                }
            }
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Whatever decodes re-encodes and decodes to the same message.
fn decode_never_panics(bytes: &[u8]) -> bool {
    let _ = frame_len(bytes);
    match decode(bytes) {
        Ok(msg) => {
            let again = encode_to_vec(&msg).unwrap();
            assert_eq!(decode(&again).unwrap(), msg, "{bytes:02x?}");
            true
        }
        Err(err) => {
            let _ = err.notification();
            let _ = err.to_string();
            false
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut decoded = 0;
    for _ in 0..20_000 {
        let len = HEADER_LEN + rng.below(120);
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        bytes.push(1 + u8::try_from(rng.below(5)).unwrap());
        while bytes.len() < len {
            bytes.push(rng.byte());
        }
        if decode_never_panics(&bytes) {
            decoded += 1;
        }
        // Now and then, bytes with no valid header at all.
        if rng.below(8) == 0 {
            let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.byte()).collect();
            decode_never_panics(&junk);
        }
    }
    assert!(decoded > 0, "some random messages should decode");
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut samples = captured();
    samples.push(
        encode_to_vec(&Message::Update(Update {
            withdrawn: vec![prefix("10.9.0.0/16")],
            attributes: Some(full_attributes()),
            nlri: vec![prefix("10.1.0.0/16")],
        }))
        .unwrap(),
    );
    for _ in 0..20_000 {
        let mut bytes = samples[rng.below(samples.len())].clone();
        for _ in 0..=rng.below(4) {
            let at = HEADER_LEN + rng.below(bytes.len() - HEADER_LEN + 1);
            if at < bytes.len() {
                bytes[at] = rng.byte();
            }
        }
        decode_never_panics(&bytes);
    }
}

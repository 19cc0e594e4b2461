//! Codec tests: a Registration Request laid out by hand from the RFC,
//! round trips of every message type, checksum, truncations, bad lengths,
//! unknown type and extension, and tshark decoding our emitted packets.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::net::Ipv4Addr;

use super::*;

const SPOKE_NBMA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SPOKE_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const HUB_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HUB_NBMA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn addresses() -> Addresses {
    Addresses {
        src_nbma: Some(SPOKE_NBMA),
        src_protocol: Some(SPOKE_TUNNEL),
        dst_protocol: Some(HUB_TUNNEL),
    }
}

fn cie() -> Cie {
    Cie {
        code: 0,
        prefix_len: 32,
        mtu: 1400,
        holding_time: 7200,
        preference: 0,
        nbma: None,
        protocol: None,
    }
}

fn registration_request() -> NhrpRepr {
    NhrpRepr {
        hop_count: 255,
        message: Message::RegistrationRequest(Mandatory {
            flags: 0x8002,
            request_id: 0x0102_0304,
            addresses: addresses(),
            cies: vec![cie()],
        }),
        extensions: vec![
            Extension {
                compulsory: true,
                body: ExtensionBody::ResponderAddress(vec![]),
            },
            Extension {
                compulsory: true,
                body: ExtensionBody::ForwardTransitNhs(vec![]),
            },
            Extension {
                compulsory: true,
                body: ExtensionBody::ReverseTransitNhs(vec![]),
            },
            Extension {
                compulsory: false,
                body: ExtensionBody::NatAddress(vec![Cie {
                    nbma: Some(HUB_NBMA),
                    protocol: Some(HUB_TUNNEL),
                    ..cie()
                }]),
            },
        ],
    }
}

fn every_message() -> Vec<NhrpRepr> {
    let m = Mandatory {
        flags: 0,
        request_id: 7,
        addresses: addresses(),
        cies: vec![Cie {
            nbma: Some(HUB_NBMA),
            protocol: Some(HUB_TUNNEL),
            preference: 255,
            ..cie()
        }],
    };
    let plain = |message| NhrpRepr {
        hop_count: 8,
        message,
        extensions: vec![],
    };
    let inner = registration_request().emit_to_vec().unwrap();
    vec![
        plain(Message::ResolutionRequest(m.clone())),
        plain(Message::ResolutionReply(m.clone())),
        registration_request(),
        plain(Message::RegistrationReply(m.clone())),
        plain(Message::PurgeRequest(m.clone())),
        plain(Message::PurgeReply(m)),
        plain(Message::ErrorIndication(ErrorIndication {
            code: 6,
            offset: 4,
            addresses: addresses(),
            packet: inner,
        })),
        plain(Message::TrafficIndication(TrafficIndication {
            code: 0,
            addresses: addresses(),
            data: vec![
                0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1,
            ],
        })),
        NhrpRepr {
            hop_count: 1,
            message: Message::Unknown {
                op_type: 42,
                shtl: 7,
                sstl: 3,
                body: vec![1, 2, 3],
            },
            extensions: vec![
                Extension {
                    compulsory: false,
                    body: ExtensionBody::Authentication(vec![0, 0, 0, 1, b's', b'e']),
                },
                Extension {
                    compulsory: true,
                    body: ExtensionBody::VendorPrivate {
                        vendor: 0x0000_000c,
                        data: vec![9],
                    },
                },
                Extension {
                    compulsory: true,
                    body: ExtensionBody::Unknown {
                        kind: 0x4123,
                        data: vec![5, 6],
                    },
                },
            ],
        },
    ]
}

/// A Registration Request laid out by hand from RFC 2332 sections 5.1,
/// 5.2.0.1 and 5.3 (checksum computed by hand).
#[rustfmt::skip]
const REGISTRATION_REQUEST_BYTES: [u8; 56] = [
    // Fixed header: afn 1, pro.type 0x0800, pro.snap 0, hopcnt 255,
    // pktsz 56, chksum 0xf1b5, extoff 52, version 1, type 3, shtl 4, sstl 0.
    0x00, 0x01, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff, 0x00, 56,
    0xf1, 0xb5, 0x00, 52, 0x01, 0x03, 0x04, 0x00,
    // Mandatory: src proto len 4, dst proto len 4, flags 0x8002 (U, NAT),
    // request id 0x01020304, src NBMA, src proto, dst proto.
    4, 4, 0x80, 0x02, 1, 2, 3, 4,
    192, 0, 2, 10, 10, 0, 0, 10, 10, 0, 0, 1,
    // CIE: code 0, prefix 32, unused, MTU 1400, holding 7200, tl 0/0/0,
    // preference 0.
    0, 32, 0, 0, 0x05, 0x78, 0x1c, 0x20, 0, 0, 0, 0,
    // End extension (C set).
    0x80, 0x00, 0x00, 0x00,
];

#[test]
fn parse_registration_request_bytes() {
    let repr = NhrpRepr::parse_bytes(&REGISTRATION_REQUEST_BYTES).unwrap();
    assert_eq!(
        repr,
        NhrpRepr {
            hop_count: 255,
            message: Message::RegistrationRequest(Mandatory {
                flags: 0x8002,
                request_id: 0x0102_0304,
                addresses: addresses(),
                cies: vec![cie()],
            }),
            extensions: vec![],
        }
    );
    let packet = NhrpPacket::new_checked(&REGISTRATION_REQUEST_BYTES[..]).unwrap();
    assert_eq!(packet.packet_size(), 56);
    assert_eq!(packet.extension_offset(), 52);
    assert_eq!(packet.op_type(), op::REGISTRATION_REQUEST);
    assert!(packet.verify_checksum());
}

#[test]
fn emit_registration_request_bytes() {
    // Without extensions, emit leaves ar$extoff 0 and no End.
    let mut repr = NhrpRepr::parse_bytes(&REGISTRATION_REQUEST_BYTES).unwrap();
    repr.extensions.push(Extension {
        compulsory: true,
        body: ExtensionBody::ResponderAddress(vec![]),
    });
    let bytes = repr.emit_to_vec().unwrap();
    assert_eq!(bytes.len(), 60);
    assert_eq!(&bytes[20..52], &REGISTRATION_REQUEST_BYTES[20..52]);
    assert_eq!(&bytes[52..], &[0x80, 0x03, 0, 0, 0x80, 0, 0, 0]);
    repr.extensions.clear();
    let bytes = repr.emit_to_vec().unwrap();
    assert_eq!(bytes.len(), 52);
    assert_eq!(&bytes[14..16], &[0, 0]);
    assert_eq!(NhrpRepr::parse_bytes(&bytes).unwrap(), repr);
}

#[test]
fn round_trip_every_message() {
    for repr in every_message() {
        let bytes = repr.emit_to_vec().unwrap();
        assert_eq!(bytes.len(), repr.buffer_len());
        assert_eq!(NhrpRepr::parse_bytes(&bytes).unwrap(), repr, "{repr:?}");
        // Bytes after ar$pktsz are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xde, 0xad]);
        assert_eq!(NhrpRepr::parse_bytes(&longer).unwrap(), repr);
        assert_eq!(
            NhrpRepr::parse_bytes(&longer)
                .unwrap()
                .emit_to_vec()
                .unwrap(),
            bytes
        );
    }
}

#[test]
fn checksum_detects_every_flipped_bit() {
    let bytes = registration_request().emit_to_vec().unwrap();
    for i in 0..bytes.len() {
        if field::PKTSZ.contains(&i) || field::EXTOFF.contains(&i) {
            continue; // a length error may come first
        }
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert_eq!(
                NhrpRepr::parse_bytes(&bad),
                Err(NhrpError::BadChecksum),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn truncation_at_every_length_is_an_error() {
    for repr in every_message() {
        let bytes = repr.emit_to_vec().unwrap();
        for len in 0..bytes.len() {
            assert!(NhrpRepr::parse_bytes(&bytes[..len]).is_err(), "len {len}");
        }
    }
}

/// A length field that lies, with a valid checksum: an error, not a panic.
fn refix_checksum(bytes: &mut [u8]) {
    bytes[field::CHKSUM].copy_from_slice(&[0, 0]);
    let len = usize::from(u16::from_be_bytes([bytes[10], bytes[11]])).min(bytes.len());
    let sum = !ones_complement_sum(&bytes[..len]);
    bytes[field::CHKSUM].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn bad_inner_lengths_are_errors() {
    let bytes = registration_request().emit_to_vec().unwrap();
    // Every single byte of the mandatory part and extensions set to every
    // value: parse never panics, and what parses emits and re-parses.
    for i in 16..bytes.len() {
        for value in 0..=255u8 {
            let mut bad = bytes.clone();
            bad[i] = value;
            refix_checksum(&mut bad);
            if let Ok(repr) = NhrpRepr::parse_bytes(&bad) {
                let again = repr.emit_to_vec().unwrap();
                assert_eq!(NhrpRepr::parse_bytes(&again).unwrap(), repr);
            }
        }
    }
    let mut bad = bytes.clone();
    bad[20] = 6; // src proto len
    refix_checksum(&mut bad);
    assert_eq!(
        NhrpRepr::parse_bytes(&bad),
        Err(NhrpError::AddressLength {
            what: "source protocol address",
            value: 6
        })
    );
    let mut bad = bytes.clone();
    bad[field::PKTSZ].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(NhrpRepr::parse_bytes(&bad), Err(NhrpError::PacketSize(10)));
    let mut bad = bytes.clone();
    bad[field::EXTOFF].copy_from_slice(&1000u16.to_be_bytes());
    assert!(matches!(
        NhrpRepr::parse_bytes(&bad),
        Err(NhrpError::ExtensionOffset { extoff: 1000, .. })
    ));
}

#[test]
fn bad_afn_protocol_version() {
    let bytes = registration_request().emit_to_vec().unwrap();
    let mut bad = bytes.clone();
    bad[field::AFN].copy_from_slice(&2u16.to_be_bytes());
    refix_checksum(&mut bad);
    assert_eq!(
        NhrpRepr::parse_bytes(&bad),
        Err(NhrpError::AddressFamily(2))
    );
    let mut bad = bytes.clone();
    bad[field::PRO_TYPE].copy_from_slice(&0x86ddu16.to_be_bytes());
    refix_checksum(&mut bad);
    assert_eq!(
        NhrpRepr::parse_bytes(&bad),
        Err(NhrpError::ProtocolType(0x86dd))
    );
    let mut bad = bytes;
    bad[field::OP_VERSION] = 2;
    refix_checksum(&mut bad);
    assert_eq!(NhrpRepr::parse_bytes(&bad), Err(NhrpError::Version(2)));
}

#[test]
fn unknown_type_and_extension_kept() {
    let repr = every_message().pop().unwrap();
    let bytes = repr.emit_to_vec().unwrap();
    assert_eq!(bytes[field::OP_TYPE], 42);
    assert_eq!((bytes[field::SHTL], bytes[field::SSTL]), (7, 3));
    assert_eq!(&bytes[20..23], &[1, 2, 3]);
    let parsed = NhrpRepr::parse_bytes(&bytes).unwrap();
    assert_eq!(parsed, repr);
    // The unknown extension keeps its C bit and its u bit.
    assert_eq!(
        &bytes[bytes.len() - 10..bytes.len() - 4],
        &[0xc1, 0x23, 0, 2, 5, 6]
    );
}

#[test]
fn emit_buffer_too_small() {
    let repr = registration_request();
    let mut buffer = vec![0; repr.buffer_len() - 1];
    assert!(matches!(
        repr.emit(&mut buffer),
        Err(NhrpError::BufferTooSmall { .. })
    ));
}

/// Our emitted messages in GRE (0x2001) in IPv4 in a pcap, decoded by
/// tshark: NHRP, no "Malformed", no expert warning or error.
#[test]
fn tshark_decodes_every_message() {
    use std::process::Command;
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed: skipping");
        return;
    }
    let mut pcap = Vec::new();
    // pcap global header, LINKTYPE_RAW (101).
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&101u32.to_le_bytes());
    let messages = every_message();
    for repr in &messages {
        let nhrp = repr.emit_to_vec().unwrap();
        let total = 20 + 4 + nhrp.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 47, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&SPOKE_NBMA.octets());
        ip.extend_from_slice(&HUB_NBMA.octets());
        let sum = !ones_complement_sum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x20, 0x01]);
        ip.extend_from_slice(&nhrp);
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&ip);
    }
    let path = std::env::temp_dir().join(format!("nhrp-wire-{}.pcap", std::process::id()));
    std::fs::write(&path, &pcap).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-V", "-o", "nhrp.auth_ext_has_addr:FALSE"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = text.matches("Next Hop Resolution Protocol (").count();
    // The Error Indication nests the packet in error: one more.
    assert_eq!(frames, messages.len() + 1, "{text}");
    for bad in [
        "Malformed",
        "[Expert Info (Warning",
        "[Expert Info (Error",
        "Bad checksum",
        "incorrect",
    ] {
        assert!(!text.contains(bad), "tshark reports {bad:?}:\n{text}");
    }
    assert!(text.contains("Registration Request"), "{text}");
    assert!(text.contains("Traffic Indication"), "{text}");
    assert!(
        text.contains("Cisco NAT Address Extension") || text.contains("NAT"),
        "{text}"
    );
}

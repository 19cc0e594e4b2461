//! Message-level tests: the captured strongSwan exchange (parse, decode,
//! re-emit byte for byte), messages built from every payload type, malformed
//! and truncated messages, and random mutations of the captures.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use super::iana::*;
use super::*;
use PayloadType as P;

const SA_INIT_REQUEST: &[u8] = include_bytes!("testdata/sa_init_request.bin");
const SA_INIT_RESPONSE: &[u8] = include_bytes!("testdata/sa_init_response.bin");
const AUTH_REQUEST: &[u8] = include_bytes!("testdata/auth_request.bin");
const AUTH_RESPONSE: &[u8] = include_bytes!("testdata/auth_response.bin");
const AUTH_REQUEST_INNER: &[u8] = include_bytes!("testdata/auth_request_inner.bin");
const AUTH_RESPONSE_INNER: &[u8] = include_bytes!("testdata/auth_response_inner.bin");

const SPI_I: u64 = 0xcb74_6d6b_ba53_ff11;
const SPI_R: u64 = 0xcbd6_cf6a_e18d_11fe;

const CAPTURED: [&[u8]; 4] = [
    SA_INIT_REQUEST,
    SA_INIT_RESPONSE,
    AUTH_REQUEST,
    AUTH_RESPONSE,
];

fn kinds(payloads: &[Payload]) -> Vec<PayloadType> {
    payloads.iter().map(Payload::kind).collect()
}

fn notify_kinds(payloads: &[Payload]) -> Vec<NotifyType> {
    payloads.notifies().map(|notify| notify.kind).collect()
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// aes256-sha256-x25519, as both sides configured it.
fn ike_proposal() -> Proposal {
    Proposal::ike(
        1,
        vec![
            Transform::with_key_length(TransformType::Encr, ENCR_AES_CBC, 256),
            Transform::new(TransformType::Integ, AUTH_HMAC_SHA2_256_128),
            Transform::new(TransformType::Prf, PRF_HMAC_SHA2_256),
            Transform::new(TransformType::Dh, DH_CURVE25519),
        ],
    )
}

fn esp_proposal(spi: u32) -> Proposal {
    Proposal::esp(
        1,
        spi,
        vec![
            Transform::with_key_length(TransformType::Encr, ENCR_AES_GCM_16, 256),
            Transform::new(TransformType::Esn, ESN_NONE),
        ],
    )
}

fn ipv4_ts(start: [u8; 4], end: [u8; 4]) -> TrafficSelector {
    TrafficSelector::ipv4(0, 0..=65535, start.into(), end.into())
}

// ---- the captured exchange ----

#[test]
fn sa_init_request() {
    let message = Message::parse(SA_INIT_REQUEST).unwrap();
    let header = message.header;
    assert_eq!((header.spi_i, header.spi_r), (SPI_I, 0));
    assert_eq!(header.exchange, ExchangeType::IkeSaInit);
    assert_eq!((header.major_version, header.minor_version), (2, 0));
    assert_eq!(
        header.flags,
        HeaderFlags {
            initiator: true,
            response: false,
            version: false
        }
    );
    assert_eq!(header.message_id, 0);
    assert_eq!(header.length, 240);

    // generating IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP)
    //   N(FRAG_SUP) N(HASH_ALG) N(REDIR_SUP) ]
    assert_eq!(
        kinds(&message.payloads),
        [
            P::Sa,
            P::Ke,
            P::Nonce,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify
        ]
    );
    assert_eq!(
        notify_kinds(&message.payloads),
        [
            NotifyType::NatDetectionSourceIp,
            NotifyType::NatDetectionDestinationIp,
            NotifyType::Ikev2FragmentationSupported,
            NotifyType::SignatureHashAlgorithms,
            NotifyType::RedirectSupported,
        ]
    );
    let Some(Payload::Sa(proposals)) = message.find(P::Sa) else {
        panic!("no SA payload");
    };
    assert_eq!(proposals, &[ike_proposal()]);
    let Some(Payload::Ke(ke)) = message.find(P::Ke) else {
        panic!("no KE payload");
    };
    assert_eq!((ke.group, ke.data.len()), (DH_CURVE25519, 32));
    let Some(Payload::Nonce(nonce)) = message.find(P::Nonce) else {
        panic!("no nonce");
    };
    assert_eq!(nonce.len(), 32);

    // The NAT-D hashes strongSwan logged (natd_hash) before sending.
    let natd_s = message.notify(NotifyType::NatDetectionSourceIp).unwrap();
    assert_eq!(natd_s.protocol, ProtocolId::None);
    assert!(natd_s.spi.is_empty());
    assert_eq!(
        natd_s.data,
        hex("09347772 2A745070 31BD47A5 E1E2410B C38A44CB")
    );
    let natd_d = message
        .notify(NotifyType::NatDetectionDestinationIp)
        .unwrap();
    assert_eq!(
        natd_d.data,
        hex("90FB8354 D0F19760 53A8E978 5AECF15C 3CA52E85")
    );
    // sha256 sha384 sha512 identity
    let hash_alg = message.notify(NotifyType::SignatureHashAlgorithms).unwrap();
    assert_eq!(hash_alg.data, [0, 2, 0, 3, 0, 4, 0, 5]);

    assert_eq!(message.emit(), SA_INIT_REQUEST);
}

#[test]
fn sa_init_response() {
    let message = Message::parse(SA_INIT_RESPONSE).unwrap();
    let header = message.header;
    assert_eq!((header.spi_i, header.spi_r), (SPI_I, SPI_R));
    assert_eq!(header.exchange, ExchangeType::IkeSaInit);
    assert_eq!(
        header.flags,
        HeaderFlags {
            initiator: false,
            response: true,
            version: false
        }
    );
    assert_eq!((header.message_id, header.length), (0, 248));

    // parsed IKE_SA_INIT response 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP)
    //   N(FRAG_SUP) N(HASH_ALG) N(CHDLESS_SUP) N(MULT_AUTH) ]
    assert_eq!(
        kinds(&message.payloads),
        [
            P::Sa,
            P::Ke,
            P::Nonce,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify
        ]
    );
    assert_eq!(
        notify_kinds(&message.payloads),
        [
            NotifyType::NatDetectionSourceIp,
            NotifyType::NatDetectionDestinationIp,
            NotifyType::Ikev2FragmentationSupported,
            NotifyType::SignatureHashAlgorithms,
            NotifyType::ChildlessIkev2Supported,
            NotifyType::MultipleAuthSupported,
        ]
    );
    assert!(message.notifies_are_status());
    let Some(Payload::Sa(proposals)) = message.find(P::Sa) else {
        panic!("no SA payload");
    };
    assert_eq!(proposals, &[ike_proposal()]);
    let Some(Payload::Ke(ke)) = message.find(P::Ke) else {
        panic!("no KE payload");
    };
    assert_eq!((ke.group, ke.data.len()), (DH_CURVE25519, 32));
    // The hub's NAT-D destination hash is what the spoke computed for its
    // own address ("received dst_hash" = "precalculated dst_hash").
    let natd_d = message
        .notify(NotifyType::NatDetectionDestinationIp)
        .unwrap();
    assert_eq!(
        natd_d.data,
        hex("A9EE922C 4D455B81 4906AC22 116891E9 AF291B25")
    );
    assert_eq!(message.unsupported_critical(), None);

    assert_eq!(message.emit(), SA_INIT_RESPONSE);
}

impl Message {
    fn notifies_are_status(&self) -> bool {
        self.payloads
            .notifies()
            .all(|notify| !notify.kind.is_error())
    }
}

#[test]
fn auth_request_is_header_and_one_sk_payload() {
    // On UDP 4500, after the non-ESP marker.
    let datagram = [&NON_ESP_MARKER[..], AUTH_REQUEST].concat();
    let bytes = strip_non_esp_marker(&datagram).unwrap();
    let message = Message::parse(bytes).unwrap();
    let header = message.header;
    assert_eq!((header.spi_i, header.spi_r), (SPI_I, SPI_R));
    assert_eq!(header.exchange, ExchangeType::IkeAuth);
    assert!(header.flags.initiator && !header.flags.response);
    assert_eq!((header.message_id, header.length), (1, 304));
    assert_eq!(header.next_payload, PayloadType::Encrypted);
    assert_eq!(kinds(&message.payloads), [PayloadType::Encrypted]);
    let sk = message.encrypted().unwrap();
    assert_eq!(sk.first_inner, PayloadType::IdI);
    // IV (16) || AES-CBC ciphertext of the 225-byte plaintext, 14 bytes of
    // padding and the pad length (240) || ICV (16).
    assert_eq!(sk.body.len(), 16 + 240 + 16);
    assert_eq!(message.emit(), AUTH_REQUEST);
}

#[test]
fn auth_response_is_header_and_one_sk_payload() {
    let message = Message::parse(AUTH_RESPONSE).unwrap();
    let header = message.header;
    assert_eq!((header.spi_i, header.spi_r), (SPI_I, SPI_R));
    assert_eq!(header.exchange, ExchangeType::IkeAuth);
    assert!(!header.flags.initiator && header.flags.response);
    assert_eq!((header.message_id, header.length), (1, 256));
    let sk = message.encrypted().unwrap();
    assert_eq!(message.payloads.len(), 1);
    assert_eq!(sk.first_inner, PayloadType::IdR);
    assert_eq!(sk.body.len(), 16 + (183 + 8 + 1) + 16);
    assert_eq!(message.encrypted_fragment(), None);
    assert_eq!(message.emit(), AUTH_RESPONSE);
}

#[test]
fn auth_request_plaintext() {
    let payloads = parse_payloads(PayloadType::IdI, AUTH_REQUEST_INNER).unwrap();
    // generating IKE_AUTH request 1 [ IDi N(INIT_CONTACT) IDr AUTH CPRQ(ADDR)
    //   SA TSi TSr N(MOBIKE_SUP) N(NO_ADD_ADDR) N(MULT_AUTH) N(EAP_ONLY)
    //   N(MSG_ID_SYN_SUP) ]
    assert_eq!(
        kinds(&payloads),
        [
            P::IdI,
            P::Notify,
            P::IdR,
            P::Auth,
            P::Cp,
            P::Sa,
            P::TsI,
            P::TsR,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify,
            P::Notify
        ]
    );
    assert_eq!(
        notify_kinds(&payloads),
        [
            NotifyType::InitialContact,
            NotifyType::MobikeSupported,
            NotifyType::NoAdditionalAddresses,
            NotifyType::MultipleAuthSupported,
            NotifyType::EapOnlyAuthentication,
            NotifyType::Ikev2MessageIdSyncSupported,
        ]
    );
    let [
        Payload::IdI(id_i),
        _,
        Payload::IdR(id_r),
        Payload::Auth(auth),
        Payload::Cp(cp),
        Payload::Sa(sa),
        Payload::TsI(ts_i),
        Payload::TsR(ts_r),
        ..,
    ] = payloads.as_slice()
    else {
        panic!("unexpected payloads: {payloads:?}");
    };
    // IDx' exactly as strongSwan logged it for the AUTH octets.
    assert_eq!(id_i, &Identification::fqdn("spoke1.example"));
    assert_eq!(
        id_i.body_bytes(),
        hex("02000000 73706F6B 65312E65 78616D70 6C65")
    );
    assert_eq!(id_r, &Identification::fqdn("hub.example"));
    assert_eq!(auth.method, AuthMethod::SharedKeyMic);
    assert_eq!(
        auth.data,
        hex("FB910BB2 461DE5EE B4F77292 DC034CAC 36C69A4F BB7A95B0 97FD2442 EEB7FDBF")
    );
    assert_eq!(
        cp,
        &Config {
            cfg_type: CfgType::Request,
            attributes: vec![ConfigAttribute::empty(
                ConfigAttributeType::InternalIp4Address
            )],
        }
    );
    // allocated SPI 86103b47; ESP:AES_GCM_16_256/NO_EXT_SEQ
    assert_eq!(sa, &[esp_proposal(0x8610_3b47)]);
    // TSi 0.0.0.0/0 (asking for a virtual IP), TSr 10.1.2.0/24
    assert_eq!(ts_i, &[ipv4_ts([0, 0, 0, 0], [255, 255, 255, 255])]);
    assert_eq!(ts_r, &[ipv4_ts([10, 1, 2, 0], [10, 1, 2, 255])]);

    assert_eq!(
        emit_payloads(&payloads),
        (PayloadType::IdI, AUTH_REQUEST_INNER.to_vec())
    );
}

#[test]
fn auth_response_plaintext() {
    let payloads = parse_payloads(PayloadType::IdR, AUTH_RESPONSE_INNER).unwrap();
    // parsed IKE_AUTH response 1 [ IDr AUTH CPRP(ADDR DNS) SA TSi TSr
    //   N(MOBIKE_SUP) N(NO_ADD_ADDR) ]
    assert_eq!(
        kinds(&payloads),
        [
            P::IdR,
            P::Auth,
            P::Cp,
            P::Sa,
            P::TsI,
            P::TsR,
            P::Notify,
            P::Notify
        ]
    );
    assert_eq!(
        notify_kinds(&payloads),
        [
            NotifyType::MobikeSupported,
            NotifyType::NoAdditionalAddresses
        ]
    );
    let [
        Payload::IdR(id_r),
        Payload::Auth(auth),
        Payload::Cp(cp),
        Payload::Sa(sa),
        Payload::TsI(ts_i),
        Payload::TsR(ts_r),
        ..,
    ] = payloads.as_slice()
    else {
        panic!("unexpected payloads: {payloads:?}");
    };
    assert_eq!(id_r.body_bytes(), hex("02000000 6875622E 6578616D 706C65"));
    assert_eq!(
        (auth.method, auth.data.len()),
        (AuthMethod::SharedKeyMic, 32)
    );
    assert_eq!(cp.cfg_type, CfgType::Reply);
    let address = cp
        .attribute(ConfigAttributeType::InternalIp4Address)
        .unwrap();
    assert_eq!(address.as_ipv4(), Some(Ipv4Addr::new(10, 1, 1, 100)));
    assert!(cp.attribute(ConfigAttributeType::InternalIp4Dns).is_some());
    // adding outbound ESP SA, SPI 0x2a7efad3
    assert_eq!(sa, &[esp_proposal(0x2a7e_fad3)]);
    assert_eq!(
        ts_i[0].as_ipv4(),
        Some((Ipv4Addr::new(10, 1, 1, 100), Ipv4Addr::new(10, 1, 1, 100)))
    );
    assert_eq!(ts_r, &[ipv4_ts([10, 1, 2, 0], [10, 1, 2, 255])]);

    let mut out = vec![0xA5; 3];
    assert_eq!(
        emit_payloads_into(&payloads, &mut out).unwrap(),
        PayloadType::IdR
    );
    assert_eq!(out[..3], [0xA5; 3]);
    assert_eq!(out[3..], *AUTH_RESPONSE_INNER);
}

#[test]
fn non_esp_marker() {
    assert_eq!(strip_non_esp_marker(&[0, 0, 0, 0, 1, 2]), Some(&[1, 2][..]));
    assert_eq!(strip_non_esp_marker(&[0, 0, 0, 0]), Some(&[][..]));
    // ESP: the SPI is never zero.
    assert_eq!(strip_non_esp_marker(&[0x86, 0x10, 0x3b, 0x47, 0]), None);
    // NAT keepalive (RFC 3948 §2.3), and anything shorter than the marker.
    assert_eq!(strip_non_esp_marker(&[0xff]), None);
    assert_eq!(strip_non_esp_marker(&[0, 0, 0]), None);
}

// ---- messages built from representations ----

/// A payload of every type (the SK payload is in `with_sk`).
fn every_payload() -> Vec<Payload> {
    vec![
        Payload::Sa(vec![
            ike_proposal(),
            Proposal {
                number: 2,
                protocol: ProtocolId::Ike,
                spi: vec![],
                transforms: vec![Transform {
                    kind: TransformType::Encr,
                    id: ENCR_AES_GCM_16,
                    key_length: Some(128),
                    other_attributes: vec![
                        TransformAttribute::Tv { kind: 17, value: 9 },
                        TransformAttribute::Tlv {
                            kind: 18,
                            value: vec![1, 2],
                        },
                    ],
                }],
            },
        ]),
        Payload::Ke(KeyExchange {
            group: DH_ECP_256,
            data: vec![4; 64],
        }),
        Payload::IdI(Identification::fqdn("spoke1.cisco.com")),
        Payload::IdR(Identification::ipv4(Ipv4Addr::new(172, 25, 1, 1))),
        Payload::Cert(Cert {
            encoding: cert_encoding::X509_CERTIFICATE_SIGNATURE,
            data: vec![0x30, 0x82, 0, 0],
        }),
        Payload::CertReq(Cert {
            encoding: cert_encoding::X509_CERTIFICATE_SIGNATURE,
            data: vec![0x11; 20],
        }),
        Payload::Auth(Auth {
            method: AuthMethod::DigitalSignature,
            data: vec![7; 40],
        }),
        Payload::Nonce(vec![0x5a; 32]),
        Payload::Notify(Notify::new(NotifyType::Unknown(50_000), b"x".to_vec())),
        Payload::Notify(Notify::child(
            NotifyType::RekeySa,
            ProtocolId::Esp,
            0x1234_5678,
            vec![],
        )),
        Payload::Delete(Delete::esp(&[1, 2, 3])),
        Payload::Delete(Delete::ike()),
        Payload::Vendor(b"CISCO-GRE-MODE".to_vec()),
        Payload::TsI(vec![
            ipv4_ts([10, 1, 1, 100], [10, 1, 1, 100]),
            TrafficSelector::ipv4(47, 0..=65535, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
        ]),
        Payload::TsR(vec![TrafficSelector::ipv6(
            0,
            0..=65535,
            std::net::Ipv6Addr::UNSPECIFIED,
            std::net::Ipv6Addr::from([0xff; 16]),
        )]),
        Payload::Cp(Config {
            cfg_type: CfgType::Reply,
            attributes: vec![
                ConfigAttribute::ipv4(
                    ConfigAttributeType::InternalIp4Address,
                    Ipv4Addr::new(10, 1, 1, 100),
                ),
                ConfigAttribute::ipv4(ConfigAttributeType::InternalIp4Netmask, Ipv4Addr::BROADCAST),
                ConfigAttribute {
                    kind: ConfigAttributeType::InternalIp4Subnet,
                    value: vec![192, 168, 0, 0, 255, 255, 0, 0],
                },
                ConfigAttribute {
                    kind: ConfigAttributeType::Unknown(0x7000),
                    value: vec![],
                },
            ],
        }),
        Payload::Eap(vec![1, 1, 0, 5, 1]),
        Payload::Unknown {
            kind: 200,
            critical: true,
            data: vec![0xde, 0xad],
        },
        Payload::Unknown {
            kind: 1,
            critical: false,
            data: vec![],
        },
    ]
}

fn message(exchange: ExchangeType, payloads: Vec<Payload>) -> Message {
    let flags = HeaderFlags {
        initiator: false,
        response: true,
        version: false,
    };
    Message {
        header: Header::new(exchange, SPI_I, SPI_R, 7, flags),
        payloads,
    }
}

#[test]
fn every_payload_type_round_trips() {
    let built = message(ExchangeType::Informational, every_payload());
    let bytes = built.emit();
    assert_eq!(bytes.len(), built.buffer_len());
    let parsed = Message::parse(&bytes).unwrap();
    // emit filled in the chain start and the length.
    assert_eq!(parsed.header.next_payload, PayloadType::Sa);
    assert_eq!(parsed.header.length as usize, bytes.len());
    assert_eq!(parsed.payloads, built.payloads);
    assert_eq!(parsed.unsupported_critical(), Some(200));
    assert_eq!(parsed.emit(), bytes);
    let rekey = parsed.notify(NotifyType::RekeySa).unwrap();
    assert_eq!(rekey.spi, 0x1234_5678u32.to_be_bytes());
}

#[test]
fn every_payload_type_inside_sk() {
    let (first, plaintext) = emit_payloads(&every_payload());
    assert_eq!(first, PayloadType::Sa);
    let mut payloads = vec![Payload::Notify(Notify::new(
        NotifyType::Cookie,
        vec![0xc0; 8],
    ))];
    payloads.push(Payload::Encrypted(Encrypted {
        first_inner: first,
        body: plaintext.clone(), // stands in for IV || ciphertext || ICV
    }));
    let built = message(ExchangeType::IkeAuth, payloads);
    let parsed = Message::parse(&built.emit()).unwrap();
    assert_eq!(parsed.payloads, built.payloads);
    let sk = parsed.encrypted().unwrap();
    assert_eq!(
        parse_payloads(sk.first_inner, &sk.body).unwrap(),
        every_payload()
    );
}

#[test]
fn encrypted_fragment_round_trips() {
    for (number, first_inner) in [(1, PayloadType::IdI), (2, PayloadType::None)] {
        let built = message(
            ExchangeType::IkeAuth,
            vec![Payload::EncryptedFragment(EncryptedFragment {
                number,
                total: 2,
                first_inner,
                body: vec![0xee; 48],
            })],
        );
        let bytes = built.emit();
        // Header, generic header naming the first inner payload, fragment
        // number and total.
        assert_eq!(bytes[16], 53);
        assert_eq!(bytes[28], u8::from(first_inner));
        assert_eq!(bytes[32..36], [0, u8::try_from(number).unwrap(), 0, 2]);
        let parsed = Message::parse(&bytes).unwrap();
        assert_eq!(parsed.payloads, built.payloads);
        assert_eq!(parsed.encrypted_fragment().unwrap().number, number);
    }
}

#[test]
fn emit_computes_next_payload_and_length() {
    let mut built = message(ExchangeType::IkeSaInit, vec![Payload::Nonce(vec![1; 16])]);
    built.header.next_payload = PayloadType::Eap;
    built.header.length = 9999;
    let parsed = Message::parse(&built.emit()).unwrap();
    assert_eq!(parsed.header.next_payload, PayloadType::Nonce);
    assert_eq!(parsed.header.length, 28 + 4 + 16);

    let empty = message(ExchangeType::Informational, vec![]);
    let bytes = empty.emit();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(bytes[16], 0);
    assert_eq!(Message::parse(&bytes).unwrap().payloads, []);
}

#[test]
fn unencodable_messages_are_errors() {
    let sk_first = message(
        ExchangeType::IkeAuth,
        vec![
            Payload::Encrypted(Encrypted {
                first_inner: PayloadType::IdI,
                body: vec![],
            }),
            Payload::Nonce(vec![]),
        ],
    );
    assert!(matches!(
        sk_first.try_emit(),
        Err(WireError::Unencodable { .. })
    ));
    let mut out = vec![0xA5];
    assert!(emit_payloads_into(&sk_first.payloads, &mut out).is_err());
    assert_eq!(out, [0xA5], "out is left as it was");
}

// ---- malformed messages ----

#[test]
fn every_truncation_of_a_capture_fails() {
    for bytes in CAPTURED {
        for cut in 0..bytes.len() {
            assert!(Message::parse(&bytes[..cut]).is_err(), "cut at {cut}");
            // With the header's length fixed up, the payload chain is what
            // must catch it.
            if cut >= HEADER_LEN {
                let mut short = bytes[..cut].to_vec();
                short[24..28].copy_from_slice(&u32::try_from(cut).unwrap().to_be_bytes());
                let result = Message::parse(&short);
                assert!(
                    matches!(result, Err(WireError::Truncated { .. })),
                    "cut at {cut}: {result:?}"
                );
            }
        }
    }
    for (first, bytes) in [
        (PayloadType::IdI, AUTH_REQUEST_INNER),
        (PayloadType::IdR, AUTH_RESPONSE_INNER),
    ] {
        for cut in 0..bytes.len() {
            assert!(
                parse_payloads(first, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn payload_length_smaller_than_generic_header() {
    let mut bytes = SA_INIT_REQUEST.to_vec();
    bytes[30..32].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::Invalid {
            what: "SA payload",
            offset: 28,
            field: "payload length",
            value: 3,
            reason: "shorter than the 4-byte generic payload header",
        })
    );
}

#[test]
fn payload_length_overflowing_the_datagram() {
    // The KE payload (at 28 + 48) claims more than is left.
    let mut bytes = SA_INIT_REQUEST.to_vec();
    bytes[78..80].copy_from_slice(&0x0400u16.to_be_bytes());
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::Truncated {
            what: "KE payload",
            offset: 76,
            needed: 0x400,
            available: 240 - 76,
        })
    );
}

#[test]
fn header_length_mismatch() {
    let mut longer = SA_INIT_REQUEST.to_vec();
    longer.push(0);
    assert_eq!(
        Message::parse(&longer),
        Err(WireError::LengthMismatch {
            header: 240,
            datagram: 241
        })
    );
    assert_eq!(
        Message::parse(&SA_INIT_REQUEST[..239]),
        Err(WireError::LengthMismatch {
            header: 240,
            datagram: 239
        })
    );
    let mut claims_more = SA_INIT_REQUEST.to_vec();
    claims_more[27] = 0xf1;
    assert!(matches!(
        Message::parse(&claims_more),
        Err(WireError::LengthMismatch { header: 241, .. })
    ));
}

#[test]
fn sk_not_last() {
    // A Nonce payload appended after the SK payload, header length fixed.
    let mut bytes = AUTH_REQUEST.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4]);
    bytes[24..28].copy_from_slice(&312u32.to_be_bytes());
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::EncryptedNotLast {
            kind: PayloadType::Encrypted,
            offset: 28,
            trailing: 8
        })
    );
}

#[test]
fn chain_pointing_past_the_end() {
    // The last notify of the response names another payload.
    let mut bytes = SA_INIT_RESPONSE.to_vec();
    let last = bytes.len() - 8;
    assert_eq!(bytes[last], 0);
    bytes[last] = u8::from(PayloadType::Vendor);
    assert_eq!(
        Message::parse(&bytes),
        Err(WireError::Truncated {
            what: "Vendor ID payload",
            offset: 248,
            needed: 4,
            available: 0
        })
    );
}

#[test]
fn errors_read_well() {
    let error = Message::parse(&SA_INIT_REQUEST[..20]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "IKE header at offset 0: truncated: needs 28 bytes, 20 left"
    );
    let mut bytes = SA_INIT_REQUEST.to_vec();
    bytes[30..32].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(
        Message::parse(&bytes).unwrap_err().to_string(),
        "SA payload at offset 28: payload length 3 is invalid: \
         shorter than the 4-byte generic payload header"
    );
}

// ---- robustness ----

/// xorshift64: a small deterministic RNG, so failures replay.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// `bytes` with a few random changes: bytes overwritten (often a length or
/// count field's low byte), cut, or extended.
fn mutate(rng: &mut XorShift, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
            0 if !out.is_empty() => out.truncate(rng.below(out.len())),
            1 => out.extend((0..rng.below(8)).map(|_| rng.byte())),
            _ if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] = match rng.below(4) {
                    0 => 0,
                    1 => out[at].wrapping_add(1),
                    2 => out[at].wrapping_sub(1),
                    _ => rng.byte(),
                };
            }
            _ => {}
        }
    }
    out
}

/// Parse never panics; whatever parses emits back to something that parses
/// to the same message.
#[test]
fn random_mutations_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for iteration in 0..20_000 {
        let original = CAPTURED[iteration % CAPTURED.len()];
        let mut bytes = mutate(&mut rng, original);
        // Half the time, keep the header's length honest so that the
        // mutation reaches the payloads.
        if bytes.len() >= HEADER_LEN && rng.below(2) == 0 {
            let len = u32::try_from(bytes.len()).unwrap();
            bytes[24..28].copy_from_slice(&len.to_be_bytes());
        }
        if let Ok(message) = Message::parse(&bytes) {
            parsed += 1;
            let again = Message::parse(&message.emit()).unwrap();
            assert_eq!(again, message, "iteration {iteration}");
        }

        let (first, inner) = if iteration % 2 == 0 {
            (PayloadType::IdI, AUTH_REQUEST_INNER)
        } else {
            (PayloadType::IdR, AUTH_RESPONSE_INNER)
        };
        let inner = mutate(&mut rng, inner);
        if let Ok(payloads) = parse_payloads(first, &inner) {
            parsed += 1;
            let (first_again, bytes) = emit_payloads(&payloads);
            assert_eq!(parse_payloads(first_again, &bytes).unwrap(), payloads);
        }
    }
    // The mutations must not be so wild that nothing parses.
    assert!(parsed > 2_000, "only {parsed} mutants parsed");
}

//! Every IKE message the hub emits, checked by an independent decoder: the
//! hub's uplink is captured while strongSwan spokes dial it (three proposal
//! sets, a DH group the hub asks to change, a proposal it refuses, a wrong
//! PSK, a CHILD_SA and an IKE_SA deleted by a spoke, and the hub's own
//! DELETEs when it stops), and tshark decrypts the capture with the keys the
//! hub wrote to its key log (`GATEWAY_IKE_KEYLOG`). Checked: nothing
//! malformed anywhere; every message from the hub is IKEv2 with the right
//! length, decrypted, its ICV correct, its notifies without SPI sent with
//! Protocol ID 0, and it carries the payloads its exchange needs; each
//! spoke's ESP datagram decrypts with the ESP keys the hub derived.
//!
//! `IKE_TSHARK_KEEP=DIR` keeps the capture, the two UAT files and tshark's
//! output in DIR (the lab's own directory is removed with it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use integration::{
    capture::{Capture, tshark_verbose},
    gateway::gateway_bin,
    ike_lab::{HUB_ADDRESS, IkeLab},
    packets::send_udp,
    skip_unless_root,
};

/// What tshark prints when it could not dissect something, or (warnings)
/// when a checksum or ICV does not match.
const DISSECTION_ERRORS: &[&str] = &[
    "Malformed",
    "[Expert Info (Error",
    "[Expert Info (Warning",
    "Dissector bug",
    "Exception occurred",
];

/// tshark's name for the IKE layer.
const ISAKMP: &str = "Internet Security Association and Key Management Protocol";

/// Where each spoke sends a datagram through its tunnel (the hub's side of
/// the selectors is 10.1.2.0/24), and what it carries.
const PROBE_TO: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 1), 9);
const PROBE: &[u8] = b"esp probe through the tunnel";

/// How a spoke's attempt should end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    /// Established, and still up when the hub stops (the hub deletes it).
    Up,
    /// Established, then the spoke deletes its CHILD_SA and its IKE_SA.
    Terminates,
    /// The hub answers IKE_AUTH with AUTHENTICATION_FAILED.
    WrongPsk,
    /// The hub answers IKE_SA_INIT with NO_PROPOSAL_CHOSEN.
    NoProposal,
}

struct Spoke {
    ike: &'static str,
    esp: &'static str,
    outcome: Outcome,
}

const SPOKES: &[Spoke] = &[
    Spoke {
        ike: "aes256-sha256-x25519",
        esp: "aes256gcm16",
        outcome: Outcome::Up,
    },
    Spoke {
        ike: "aes128-sha256-modp2048",
        esp: "aes128-sha1",
        outcome: Outcome::Up,
    },
    Spoke {
        ike: "aes256gcm16-prfsha384-ecp384",
        esp: "aes128gcm16",
        outcome: Outcome::Up,
    },
    Spoke {
        ike: "aes256-sha256-x25519",
        esp: "aes256gcm16",
        outcome: Outcome::WrongPsk,
    },
    Spoke {
        ike: "aes256-sha512-ecp521",
        esp: "aes256-sha256",
        outcome: Outcome::Terminates,
    },
    // KE for modp1024 first: the hub answers INVALID_KE_PAYLOAD (ecp256),
    // strongSwan retries with ecp256.
    Spoke {
        ike: "aes128-sha1-modp1024-ecp256",
        esp: "aes128-sha1",
        outcome: Outcome::Up,
    },
    Spoke {
        ike: "aes256-sha384-ecp256",
        esp: "aes256gcm16",
        outcome: Outcome::Up,
    },
    Spoke {
        ike: "aes128-sha256-modp1024",
        esp: "aes128gcm16",
        outcome: Outcome::NoProposal,
    },
];

/// One frame of `tshark -V`: the text from its `Frame N:` line to the next.
struct Frame<'a> {
    number: &'a str,
    text: &'a str,
}

impl<'a> Frame<'a> {
    fn split(text: &'a str) -> Vec<Frame<'a>> {
        let mut starts: Vec<usize> = text.match_indices("\nFrame ").map(|(i, _)| i + 1).collect();
        if text.starts_with("Frame ") {
            starts.insert(0, 0);
        }
        starts
            .iter()
            .enumerate()
            .map(|(k, &start)| {
                let end = starts.get(k + 1).copied().unwrap_or(text.len());
                let text = &text[start..end];
                let number = text["Frame ".len()..].split(':').next().unwrap_or("?");
                Frame { number, text }
            })
            .collect()
    }

    /// The lines of the top-level protocol section whose header starts with `name`.
    fn section(&self, name: &str) -> Option<Vec<&'a str>> {
        let mut lines = self.text.lines().skip_while(|l| !l.starts_with(name));
        let header = lines.next()?;
        Some(
            std::iter::once(header)
                .chain(lines.take_while(|l| l.starts_with(' ')))
                .collect(),
        )
    }

    /// The value of the first `    Key: value` line directly in a section.
    fn field(&self, section: &str, key: &str) -> Option<&'a str> {
        let prefix = format!("    {key}: ");
        self.section(section)?
            .into_iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    fn source(&self) -> Option<&'a str> {
        self.field("Internet Protocol Version 4", "Source Address")
    }

    fn isakmp(&self) -> Option<Vec<&'a str>> {
        self.section(ISAKMP)
    }

    fn exchange(&self) -> &'a str {
        self.field(ISAKMP, "Exchange type").unwrap_or("?")
    }

    fn is_response(&self) -> bool {
        self.field(ISAKMP, "Flags")
            .is_some_and(|f| f.contains(", Response)"))
    }

    fn spis(&self) -> (String, String) {
        let f = |k| self.field(ISAKMP, k).unwrap_or("?").to_owned();
        (f("Initiator SPI"), f("Responder SPI"))
    }

    /// Every `Payload: ...` line (top level, decrypted, proposals, transforms).
    fn payloads(&self) -> Vec<&'a str> {
        self.isakmp()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| l.trim_start().strip_prefix("Payload: "))
            .collect()
    }

    fn has_payload(&self, name: &str) -> bool {
        self.payloads().iter().any(|p| p.starts_with(name))
    }

    /// (Protocol ID, SPI Size) of every Notify payload, decrypted ones included.
    fn notifies(&self) -> Vec<(String, &'a str, &'a str)> {
        let lines: Vec<&str> = self.isakmp().unwrap_or_default();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.trim_start().strip_prefix("Payload: Notify (41) - ") else {
                continue;
            };
            let body = lines[i + 1..]
                .iter()
                .map(|l| l.trim_start())
                .take_while(|l| !l.starts_with("Payload: "));
            let mut protocol = "?";
            let mut spi_size = "?";
            for l in body {
                if let Some(v) = l.strip_prefix("Protocol ID: ") {
                    protocol = v;
                } else if let Some(v) = l.strip_prefix("SPI Size: ") {
                    spi_size = v;
                }
            }
            out.push((name.to_owned(), protocol, spi_size));
        }
        out
    }

    fn contains(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    /// What the report shows for this frame: number, exchange, direction, payloads.
    fn summary(&self) -> String {
        let payloads: Vec<&str> = self
            .payloads()
            .into_iter()
            .filter(|p| !p.starts_with("Transform"))
            .collect();
        format!(
            "frame {} {} {}: {}",
            self.number,
            self.exchange(),
            if self.is_response() {
                "response"
            } else {
                "request"
            },
            payloads.join(" | ")
        )
    }
}

fn parse_len(s: Option<&str>) -> Option<usize> {
    s?.split_whitespace().next()?.parse().ok()
}

#[test]
#[allow(clippy::too_many_lines)]
fn every_ike_message_of_the_hub_is_well_formed_for_tshark() {
    skip_unless_root!();
    let started = std::time::Instant::now();
    let spokes = u8::try_from(SPOKES.len()).unwrap();
    let mut lab = IkeLab::new(&gateway_bin().unwrap(), "iketshark", spokes, "").unwrap();
    let keylog = lab.enable_ike_keylog();
    let pcap = lab.lab().temp_dir().join("hub-uplink.pcap");
    let capture = Capture::start(
        &lab.hub,
        &lab.uplink.clone(),
        "udp port 500 or udp port 4500",
        &pcap,
    )
    .unwrap();
    lab.start_gateway().unwrap();
    assert!(
        lab.gateway_log()
            .contains("IKE key log enabled: secrets written to"),
        "no start-up warning about the key log:\n{}",
        lab.gateway_log()
    );

    for (i, spoke) in SPOKES.iter().enumerate() {
        let n = i + 1;
        let charon = lab
            .charon(n, |p| {
                p.proposals = spoke.ike.to_owned();
                p.esp_proposals = spoke.esp.to_owned();
                if spoke.outcome == Outcome::WrongPsk {
                    "not-the-right-key".clone_into(&mut p.psk);
                }
            })
            .unwrap();
        let result = charon.initiate("spoke", "hub");
        match spoke.outcome {
            Outcome::Up | Outcome::Terminates => {
                if let Err(e) = result {
                    panic!(
                        "spoke {n} ({}): {e:#}\n--- gateway log ---\n{}",
                        spoke.ike,
                        lab.gateway_log()
                    );
                }
            }
            Outcome::WrongPsk => {
                let e = result.expect_err("a wrong PSK must be refused");
                assert!(format!("{e:#}").contains("AUTHENTICATION_FAILED"), "{e:#}");
            }
            Outcome::NoProposal => {
                let e = result.expect_err("modp1024 only must be refused");
                assert!(format!("{e:#}").contains("NO_PROPOSAL_CHOSEN"), "{e:#}");
            }
        }
        if matches!(spoke.outcome, Outcome::Up | Outcome::Terminates) {
            // One datagram into the tunnel: ESP in UDP 4500 to the hub, which
            // tshark decrypts with the ESP keys the hub logged.
            let vip = lab.spoke_charon(n).list_sas().unwrap()[0]
                .local_vip_v4()
                .unwrap();
            let (ns, _, _) = &lab.spokes[i];
            send_udp(ns, SocketAddrV4::new(vip, 0), PROBE_TO, PROBE).unwrap();
        }
        if spoke.outcome == Outcome::Terminates {
            let charon = lab.spoke_charon(n);
            charon
                .swanctl_timeout(
                    ["--terminate", "--child", "hub", "--timeout", "10"],
                    Duration::from_secs(20),
                )
                .unwrap();
            charon.terminate_ike("spoke").unwrap();
        }
    }

    // The hub stops: a DELETE to every spoke still up, which answers it.
    lab.stop_gateway().unwrap();
    for (i, spoke) in SPOKES.iter().enumerate() {
        if spoke.outcome == Outcome::Up {
            lab.spoke_charon(i + 1)
                .wait_for_log("received DELETE for IKE_SA", Duration::from_secs(5))
                .unwrap();
        }
    }
    let pcap = capture.stop().unwrap();

    // One key line per IKE SA the hub created (every spoke but the refused proposal).
    let keys = std::fs::read_to_string(&keylog.ike).unwrap();
    let lines: Vec<&str> = keys.lines().collect();
    let created = SPOKES
        .iter()
        .filter(|s| s.outcome != Outcome::NoProposal)
        .count();
    assert_eq!(lines.len(), created, "key log:\n{keys}");
    let mut options: Vec<OsString> = Vec::new();
    for line in &lines {
        options.push("-o".into());
        options.push(format!("uat:ikev2_decryption_table:{line}").into());
    }
    let esp_keys = std::fs::read_to_string(&keylog.esp).unwrap();
    for line in esp_keys.lines() {
        options.push("-o".into());
        options.push(format!("uat:esp_sa:{line}").into());
    }
    for pref in [
        "esp.enable_encryption_decode:TRUE",
        "esp.enable_authentication_check:TRUE",
    ] {
        options.push("-o".into());
        options.push(pref.into());
    }
    let text = tshark_verbose(&pcap, &options).unwrap();
    if let Ok(dir) = std::env::var("IKE_TSHARK_KEEP") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&pcap, format!("{dir}/hub-uplink.pcap")).unwrap();
        std::fs::copy(&keylog.ike, format!("{dir}/ikev2_decryption_table")).unwrap();
        std::fs::write(format!("{dir}/esp_sa"), &esp_keys).unwrap();
        std::fs::write(format!("{dir}/tshark.txt"), &text).unwrap();
    }

    for bad in DISSECTION_ERRORS {
        if let Some(at) = text.find(bad) {
            let frame = Frame::split(&text)
                .into_iter()
                .find(|f| f.text.contains(bad))
                .map_or("", |f| f.text);
            panic!("tshark reports {bad:?} at byte {at}:\n{frame}");
        }
    }

    let frames = Frame::split(&text);
    let hub = HUB_ADDRESS.to_string();
    let from_hub: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.source() == Some(hub.as_str()))
        .collect();
    let mut report = Vec::new();
    for f in &from_hub {
        let isakmp = f
            .isakmp()
            .unwrap_or_else(|| panic!("hub frame {} is not IKE for tshark:\n{}", f.number, f.text));
        // The IKE header's length is the datagram's (after the non-ESP marker on 4500).
        let udp = parse_len(f.field("User Datagram Protocol", "Length")).unwrap();
        let marker = if f.section("UDP Encapsulation of IPsec Packets").is_some() {
            4
        } else {
            0
        };
        let ike = parse_len(f.field(ISAKMP, "Length")).unwrap();
        assert_eq!(
            ike,
            udp - 8 - marker,
            "frame {}: IKE length vs UDP length\n{}",
            f.number,
            f.text
        );
        assert!(
            isakmp.iter().any(|l| l == &"    Version: 2.0"),
            "frame {}:\n{}",
            f.number,
            f.text
        );
        assert!(
            !f.exchange().contains("Unknown"),
            "frame {}: {}",
            f.number,
            f.exchange()
        );
        if f.has_payload("Encrypted and Authenticated (46)") {
            assert!(
                f.contains("Decrypted Data ("),
                "frame {}: not decrypted:\n{}",
                f.number,
                f.text
            );
            // Wireshark recomputes the HMAC (CBC) or checks the GCM tag.
            let icv = isakmp
                .iter()
                .find(|l| l.trim_start().starts_with("Integrity Checksum Data"));
            assert!(
                icv.is_some_and(|l| l.ends_with("[correct]")),
                "frame {}: ICV {icv:?}\n{}",
                f.number,
                f.text
            );
        }
        // RFC 7296 section 3.10: with an empty SPI the Protocol ID MUST be zero.
        for (name, protocol, spi_size) in f.notifies() {
            if spi_size == "0" {
                assert_eq!(
                    protocol, "RESERVED (0)",
                    "frame {}: notify {name} without SPI\n{}",
                    f.number, f.text
                );
            }
        }
        report.push(f.summary());
    }
    let report = report.join("\n");
    eprintln!("hub messages as tshark decodes them:\n{report}");

    let exchanges = |ex: &str, response: bool| -> Vec<&&Frame> {
        from_hub
            .iter()
            .filter(|f| f.exchange().starts_with(ex) && f.is_response() == response)
            .collect()
    };
    // IKE_SA_INIT: SA, KE, nonce and both NAT-D notifies, in cleartext; or a
    // single notify for INVALID_KE_PAYLOAD and NO_PROPOSAL_CHOSEN.
    let init = exchanges("IKE_SA_INIT", true);
    let accepted: Vec<_> = init
        .iter()
        .filter(|f| f.has_payload("Security Association"))
        .collect();
    assert_eq!(accepted.len(), created, "{report}");
    for f in &accepted {
        for p in [
            "Security Association",
            "Key Exchange",
            "Nonce",
            "Notify (41) - NAT_DETECTION_SOURCE_IP",
            "Notify (41) - NAT_DETECTION_DESTINATION_IP",
        ] {
            assert!(
                f.has_payload(p),
                "IKE_SA_INIT response without {p}:\n{}",
                f.text
            );
        }
        assert!(f.contains("Payload: Proposal (2) # "), "{}", f.text);
    }
    assert!(
        init.iter()
            .any(|f| f.has_payload("Notify (41) - INVALID_KE_PAYLOAD")),
        "{report}"
    );
    assert!(
        init.iter()
            .any(|f| f.has_payload("Notify (41) - NO_PROPOSAL_CHOSEN")),
        "{report}"
    );
    assert_eq!(init.len(), created + 2, "{report}");

    // IKE_AUTH: IDr, AUTH, CP, SA, TSi, TSr decrypted; one AUTHENTICATION_FAILED.
    let auth = exchanges("IKE_AUTH", true);
    assert_eq!(auth.len(), created, "{report}");
    let ok: Vec<_> = auth
        .iter()
        .filter(|f| f.has_payload("Authentication"))
        .collect();
    assert_eq!(ok.len(), created - 1, "{report}");
    for f in &ok {
        for p in [
            "Identification - Responder",
            "Authentication",
            "Configuration",
            "Security Association",
            "Traffic Selector - Initiator",
            "Traffic Selector - Responder",
        ] {
            assert!(
                f.has_payload(p),
                "IKE_AUTH response without {p}:\n{}",
                f.text
            );
        }
        assert!(f.contains("INTERNAL IP4 ADDRESS: 10.1.1."), "{}", f.text);
    }
    let failed: Vec<_> = auth
        .iter()
        .filter(|f| f.has_payload("Notify (41) - AUTHENTICATION_FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "{report}");

    // INFORMATIONAL: the answer to the spoke's CHILD_SA delete names ours; the
    // answer to its IKE_SA delete is empty; the hub's own requests at shutdown
    // delete the IKE SAs still up.
    let info = exchanges("INFORMATIONAL", true);
    assert!(
        info.iter()
            .any(|f| f.has_payload("Delete") && f.contains("Protocol ID: ESP")),
        "{report}"
    );
    assert!(
        info.iter()
            .any(|f| f.contains("Decrypted Data (") && f.payloads().len() == 1),
        "{report}"
    );
    let deletes = exchanges("INFORMATIONAL", false);
    let up = SPOKES.iter().filter(|s| s.outcome == Outcome::Up).count();
    assert_eq!(deletes.len(), up, "{report}");
    for f in &deletes {
        assert!(
            f.has_payload("Delete") && f.contains("Protocol ID: IKE"),
            "{}",
            f.text
        );
    }

    // ESP: each spoke's datagram, decrypted and authenticated with the keys
    // the hub derived (two esp_sa lines per CHILD_SA it created).
    let children = SPOKES
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Up | Outcome::Terminates))
        .count();
    assert_eq!(
        esp_keys.lines().count(),
        2 * children,
        "esp_sa lines:\n{esp_keys}"
    );
    let esp: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.section("Encapsulating Security Payload").is_some())
        .collect();
    assert_eq!(
        esp.len(),
        children,
        "ESP frames: {:?}",
        esp.iter().map(|f| f.number).collect::<Vec<_>>()
    );
    let probe = PROBE.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    for f in &esp {
        let lines = f.section("Encapsulating Security Payload").unwrap();
        let icv = lines.iter().find(|l| l.starts_with("    ESP ICV: "));
        assert!(
            icv.is_some_and(|l| l.ends_with("[correct]")),
            "frame {}: ESP ICV {icv:?}\n{}",
            f.number,
            f.text
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("    ESP Decrypted Data: ")),
            "frame {}:\n{}",
            f.number,
            f.text
        );
        assert!(
            f.contains(&format!("Data: {probe}")),
            "frame {}: probe not found after decryption\n{}",
            f.number,
            f.text
        );
        assert!(
            f.contains(&format!("Dst: {}", PROBE_TO.ip())),
            "frame {}:\n{}",
            f.number,
            f.text
        );
    }

    // Nothing the hub sent is left out of the checks above.
    assert_eq!(
        from_hub.len(),
        init.len() + auth.len() + info.len() + deletes.len(),
        "{report}"
    );

    // Every SA of the key log was seen (and so decrypted) in the capture.
    let seen: BTreeSet<(String, String)> = from_hub.iter().map(|f| f.spis()).collect();
    for line in &lines {
        let mut fields = line.split(',');
        let key = (
            fields.next().unwrap().to_owned(),
            fields.next().unwrap().to_owned(),
        );
        assert!(seen.contains(&key), "key log SA {key:?} not in the capture");
    }
    eprintln!(
        "{} hub messages checked in {:?}",
        from_hub.len(),
        started.elapsed()
    );
}

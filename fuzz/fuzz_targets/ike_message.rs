//! IKEv2 message parsing: `Message::parse` on arbitrary bytes, then
//! `parse_payloads` on every SK / SKF body as if it were plaintext, and the
//! round trip: whatever parses, emits to bytes that parse to the same
//! message (and the same for the payload lists).
//!
//! Seeds: the captured exchange in `gateway/src/ike/wire/testdata/*.bin`
//! (`cargo +nightly fuzz run ike_message fuzz/corpus/ike_message
//! gateway/src/ike/wire/testdata`).
#![no_main]

use gateway::ike::wire::{Message, Payload, PayloadType, emit_payloads, parse_payloads};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let again = Message::parse(&message.emit()).expect("an emitted message parses");
    assert_eq!(again, message, "parse -> emit -> parse changed the message");

    for payload in &message.payloads {
        let (first, body) = match payload {
            Payload::Encrypted(sk) => (sk.first_inner, &sk.body),
            Payload::EncryptedFragment(skf) if skf.first_inner != PayloadType::None => {
                (skf.first_inner, &skf.body)
            }
            _ => continue,
        };
        if let Ok(inner) = parse_payloads(first, body) {
            let (first_again, bytes) = emit_payloads(&inner);
            let inner_again = parse_payloads(first_again, &bytes).expect("emitted payloads parse");
            assert_eq!(inner_again, inner, "payloads changed in the round trip");
        }
    }
});

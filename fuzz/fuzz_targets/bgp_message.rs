//! BGP messages: the bytes as a TCP stream split with `frame_len`, each
//! frame (and the whole input) through `decode`; whatever decodes encodes
//! to bytes that decode to the same message, and every error names its
//! NOTIFICATION.
//!
//! Seeds: the captured FRR messages in `gateway/src/bgp/testdata/*.hex`
//! (hex: `xxd -r -p` each into `fuzz/corpus/bgp_message/` first).
#![no_main]

use gateway::bgp::wire::{decode, encode_to_vec, frame_len};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    match decode(bytes) {
        Ok(message) => {
            let again = encode_to_vec(&message).expect("a decoded message encodes");
            assert_eq!(
                decode(&again).expect("an encoded message decodes"),
                message,
                "decode -> encode -> decode changed the message"
            );
        }
        Err(error) => {
            let _ = error.notification();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(len)) = frame_len(rest) {
        check(&rest[..len]);
        rest = &rest[len..];
    }
    check(data);
});

//! NHRP packets: whatever `NhrpRepr::parse_bytes` accepts emits, and the
//! emitted bytes parse to the same repr.
#![no_main]

use gateway::nhrp::wire::NhrpRepr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(repr) = NhrpRepr::parse_bytes(data) {
        let bytes = repr.emit_to_vec().expect("a parsed packet emits");
        assert_eq!(bytes.len(), repr.buffer_len());
        assert_eq!(
            NhrpRepr::parse_bytes(&bytes).expect("an emitted packet parses"),
            repr,
            "parse -> emit -> parse changed the packet"
        );
    }
});

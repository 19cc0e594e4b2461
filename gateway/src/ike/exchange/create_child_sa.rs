//! CREATE_CHILD_SA (RFC 7296 section 1.3): more CHILD_SAs, rekeying a
//! CHILD_SA (section 1.3.3) or the IKE SA itself (section 1.3.2), and the
//! collisions of simultaneous rekeys (section 2.8.1), in both roles.
//!
//! Rekeying lands here, an initiator half and a responder half like the
//! other exchanges, on the shared state of `sa` (`Keymat` keeps SK_d and
//! the PRF that `crypto::child_keymat` and `IkeKeys::skeyseed_rekey` need).
//! Until then the responder answers every request with NO_ADDITIONAL_SAS
//! (section 1.3), which leaves the IKE SA and its CHILD_SAs as they are.

use super::Answer;
use crate::ike::{sa::notify, wire::NotifyType};

// ----- responder -----

/// Answers a CREATE_CHILD_SA request on an established SA.
pub(crate) fn respond() -> Answer {
    Answer {
        payloads: vec![notify(NotifyType::NoAdditionalSas, vec![])],
        actions: vec![],
        end_sa: false,
    }
}

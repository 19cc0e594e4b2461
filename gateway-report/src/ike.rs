//! IKEv2: `show crypto ikev2 sa` and `show crypto session`.

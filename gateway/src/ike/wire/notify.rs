//! The Notify payload (RFC 7296 §3.10) and every IANA notify message type.
//!
//! ```text
//! +---------------+---------------+-------------------------------+
//! |  Protocol ID  |   SPI Size    |      Notify Message Type      |
//! +---------------+---------------+-------------------------------+
//! |                Security Parameter Index (SPI)                 |
//! |                       Notification Data                       |
//! +---------------------------------------------------------------+
//! ```

use super::bytes::{Field, be16, fit_u8, need};
use super::payload::Body;
use super::{ProtocolId, WireError};

mod field {
    use super::Field;

    pub const PROTOCOL: usize = 0;
    pub const SPI_SIZE: usize = 1;
    pub const TYPE: Field = 2..4;
    pub const HEADER_LEN: usize = 4;
}

/// Types below this are errors; from it on, status (RFC 7296 §3.10.1).
const FIRST_STATUS_TYPE: u16 = 16384;

codepoint! {
    /// Notify message types (IANA "IKEv2 Notify Message Types", error types
    /// 0-16383 and status types 16384-65535), by their registry names.
    pub enum NotifyType(u16) {
        // Error types.
        UnsupportedCriticalPayload = 1 => "UNSUPPORTED_CRITICAL_PAYLOAD",
        InvalidIkeSpi = 4 => "INVALID_IKE_SPI",
        InvalidMajorVersion = 5 => "INVALID_MAJOR_VERSION",
        InvalidSyntax = 7 => "INVALID_SYNTAX",
        InvalidMessageId = 9 => "INVALID_MESSAGE_ID",
        InvalidSpi = 11 => "INVALID_SPI",
        NoProposalChosen = 14 => "NO_PROPOSAL_CHOSEN",
        InvalidKePayload = 17 => "INVALID_KE_PAYLOAD",
        AuthenticationFailed = 24 => "AUTHENTICATION_FAILED",
        SinglePairRequired = 34 => "SINGLE_PAIR_REQUIRED",
        NoAdditionalSas = 35 => "NO_ADDITIONAL_SAS",
        InternalAddressFailure = 36 => "INTERNAL_ADDRESS_FAILURE",
        FailedCpRequired = 37 => "FAILED_CP_REQUIRED",
        TsUnacceptable = 38 => "TS_UNACCEPTABLE",
        InvalidSelectors = 39 => "INVALID_SELECTORS",
        /// RFC 4555 (MOBIKE).
        UnacceptableAddresses = 40 => "UNACCEPTABLE_ADDRESSES",
        /// RFC 4555 (MOBIKE).
        UnexpectedNatDetected = 41 => "UNEXPECTED_NAT_DETECTED",
        /// RFC 5026.
        UseAssignedHoa = 42 => "USE_ASSIGNED_HoA",
        TemporaryFailure = 43 => "TEMPORARY_FAILURE",
        ChildSaNotFound = 44 => "CHILD_SA_NOT_FOUND",
        /// RFC 9838 (G-IKEv2).
        InvalidGroupId = 45 => "INVALID_GROUP_ID",
        /// RFC 9838 (G-IKEv2).
        AuthorizationFailed = 46 => "AUTHORIZATION_FAILED",
        /// RFC 9370.
        StateNotFound = 47 => "STATE_NOT_FOUND",
        /// RFC 9611.
        TsMaxQueue = 48 => "TS_MAX_QUEUE",

        // Status types.
        InitialContact = 16384 => "INITIAL_CONTACT",
        SetWindowSize = 16385 => "SET_WINDOW_SIZE",
        AdditionalTsPossible = 16386 => "ADDITIONAL_TS_POSSIBLE",
        IpcompSupported = 16387 => "IPCOMP_SUPPORTED",
        NatDetectionSourceIp = 16388 => "NAT_DETECTION_SOURCE_IP",
        NatDetectionDestinationIp = 16389 => "NAT_DETECTION_DESTINATION_IP",
        Cookie = 16390 => "COOKIE",
        UseTransportMode = 16391 => "USE_TRANSPORT_MODE",
        HttpCertLookupSupported = 16392 => "HTTP_CERT_LOOKUP_SUPPORTED",
        RekeySa = 16393 => "REKEY_SA",
        EspTfcPaddingNotSupported = 16394 => "ESP_TFC_PADDING_NOT_SUPPORTED",
        NonFirstFragmentsAlso = 16395 => "NON_FIRST_FRAGMENTS_ALSO",
        /// RFC 4555 (MOBIKE), and the following four.
        MobikeSupported = 16396 => "MOBIKE_SUPPORTED",
        AdditionalIp4Address = 16397 => "ADDITIONAL_IP4_ADDRESS",
        AdditionalIp6Address = 16398 => "ADDITIONAL_IP6_ADDRESS",
        NoAdditionalAddresses = 16399 => "NO_ADDITIONAL_ADDRESSES",
        UpdateSaAddresses = 16400 => "UPDATE_SA_ADDRESSES",
        Cookie2 = 16401 => "COOKIE2",
        NoNatsAllowed = 16402 => "NO_NATS_ALLOWED",
        /// RFC 4478.
        AuthLifetime = 16403 => "AUTH_LIFETIME",
        /// RFC 4739.
        MultipleAuthSupported = 16404 => "MULTIPLE_AUTH_SUPPORTED",
        /// RFC 4739.
        AnotherAuthFollows = 16405 => "ANOTHER_AUTH_FOLLOWS",
        /// RFC 5685.
        RedirectSupported = 16406 => "REDIRECT_SUPPORTED",
        Redirect = 16407 => "REDIRECT",
        RedirectedFrom = 16408 => "REDIRECTED_FROM",
        /// RFC 5723, and the following four.
        TicketLtOpaque = 16409 => "TICKET_LT_OPAQUE",
        TicketRequest = 16410 => "TICKET_REQUEST",
        TicketAck = 16411 => "TICKET_ACK",
        TicketNack = 16412 => "TICKET_NACK",
        TicketOpaque = 16413 => "TICKET_OPAQUE",
        /// RFC 5739.
        LinkId = 16414 => "LINK_ID",
        /// RFC 5840.
        UseWespMode = 16415 => "USE_WESP_MODE",
        /// RFC 5857.
        RohcSupported = 16416 => "ROHC_SUPPORTED",
        /// RFC 5998.
        EapOnlyAuthentication = 16417 => "EAP_ONLY_AUTHENTICATION",
        /// RFC 6023.
        ChildlessIkev2Supported = 16418 => "CHILDLESS_IKEV2_SUPPORTED",
        /// RFC 6290.
        QuickCrashDetection = 16419 => "QUICK_CRASH_DETECTION",
        /// RFC 6311, and the following three.
        Ikev2MessageIdSyncSupported = 16420 => "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
        IpsecReplayCounterSyncSupported = 16421 => "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
        Ikev2MessageIdSync = 16422 => "IKEV2_MESSAGE_ID_SYNC",
        IpsecReplayCounterSync = 16423 => "IPSEC_REPLAY_COUNTER_SYNC",
        /// RFC 6467.
        SecurePasswordMethods = 16424 => "SECURE_PASSWORD_METHODS",
        /// RFC 6631.
        PskPersist = 16425 => "PSK_PERSIST",
        PskConfirm = 16426 => "PSK_CONFIRM",
        /// RFC 6867.
        ErxSupported = 16427 => "ERX_SUPPORTED",
        /// 3GPP TS 24.303.
        IfomCapability = 16428 => "IFOM_CAPABILITY",
        /// RFC 9838 (was SENDER_REQUEST_ID in the G-IKEv2 drafts).
        GroupSender = 16429 => "GROUP_SENDER",
        /// RFC 7383.
        Ikev2FragmentationSupported = 16430 => "IKEV2_FRAGMENTATION_SUPPORTED",
        /// RFC 7427.
        SignatureHashAlgorithms = 16431 => "SIGNATURE_HASH_ALGORITHMS",
        /// RFC 7791.
        CloneIkeSaSupported = 16432 => "CLONE_IKE_SA_SUPPORTED",
        CloneIkeSa = 16433 => "CLONE_IKE_SA",
        /// RFC 8019.
        Puzzle = 16434 => "PUZZLE",
        /// RFC 8784, and the following two.
        UsePpk = 16435 => "USE_PPK",
        PpkIdentity = 16436 => "PPK_IDENTITY",
        NoPpkAuth = 16437 => "NO_PPK_AUTH",
        /// RFC 9242.
        IntermediateExchangeSupported = 16438 => "INTERMEDIATE_EXCHANGE_SUPPORTED",
        /// RFC 8983.
        Ip4Allowed = 16439 => "IP4_ALLOWED",
        Ip6Allowed = 16440 => "IP6_ALLOWED",
        /// RFC 9370.
        AdditionalKeyExchange = 16441 => "ADDITIONAL_KEY_EXCHANGE",
        /// RFC 9347.
        UseAggfrag = 16442 => "USE_AGGFRAG",
        /// RFC 9593.
        SupportedAuthMethods = 16443 => "SUPPORTED_AUTH_METHODS",
        /// RFC 9611.
        SaResourceInfo = 16444 => "SA_RESOURCE_INFO",
        /// RFC 9867.
        UsePpkInt = 16445 => "USE_PPK_INT",
        PpkIdentityKey = 16446 => "PPK_IDENTITY_KEY",
    }
}

impl NotifyType {
    /// An error type (below 16384): in a response, an unrecognised one
    /// still means the request failed (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        u16::from(self) < FIRST_STATUS_TYPE
    }
}

/// A Notify payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// `ProtocolId::None` when `spi` is empty.
    pub protocol: ProtocolId,
    /// Only INVALID_SELECTORS, REKEY_SA and CHILD_SA_NOT_FOUND carry one in
    /// RFC 7296 (a Child SA's 4-byte SPI).
    pub spi: Vec<u8>,
    pub kind: NotifyType,
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify about the IKE SA: no SPI.
    pub fn new(kind: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::None,
            spi: Vec::new(),
            kind,
            data,
        }
    }

    /// A notify about a Child SA (REKEY_SA, ...).
    pub fn child(kind: NotifyType, protocol: ProtocolId, spi: u32, data: Vec<u8>) -> Self {
        Self {
            protocol,
            spi: spi.to_be_bytes().to_vec(),
            kind,
            data,
        }
    }
}

impl Body for Notify {
    fn parse_body(body: &[u8], offset: usize) -> Result<Self, WireError> {
        const WHAT: &str = "Notify payload";
        need(body, field::HEADER_LEN, WHAT, offset)?;
        let data_at = field::HEADER_LEN + usize::from(body[field::SPI_SIZE]);
        need(body, data_at, WHAT, offset)?;
        Ok(Self {
            protocol: body[field::PROTOCOL].into(),
            spi: body[field::HEADER_LEN..data_at].to_vec(),
            kind: be16(&body[field::TYPE]).into(),
            data: body[data_at..].to_vec(),
        })
    }

    fn body_len(&self) -> usize {
        field::HEADER_LEN + self.spi.len() + self.data.len()
    }

    fn emit_body(&self, buf: &mut [u8]) -> Result<(), WireError> {
        buf[field::PROTOCOL] = self.protocol.into();
        buf[field::SPI_SIZE] = fit_u8(self.spi.len(), "Notify payload", "SPI size")?;
        buf[field::TYPE].copy_from_slice(&u16::from(self.kind).to_be_bytes());
        let data_at = field::HEADER_LEN + self.spi.len();
        buf[field::HEADER_LEN..data_at].copy_from_slice(&self.spi);
        buf[data_at..].copy_from_slice(&self.data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ike::wire::bytes::testing::{emit_into_junk, every_truncation_fails};

    /// REKEY_SA for ESP SPI 0x2a7efad3, with two bytes of data.
    const REKEY: [u8; 10] = [0x03, 0x04, 0x40, 0x09, 0x2a, 0x7e, 0xfa, 0xd3, 0xaa, 0xbb];

    fn rekey() -> Notify {
        Notify::child(
            NotifyType::RekeySa,
            ProtocolId::Esp,
            0x2a7e_fad3,
            vec![0xaa, 0xbb],
        )
    }

    #[test]
    fn deconstruct() {
        let notify = Notify::parse_body(&REKEY, 0).unwrap();
        assert_eq!(notify.protocol, ProtocolId::Esp);
        assert_eq!(notify.spi, [0x2a, 0x7e, 0xfa, 0xd3]);
        assert_eq!(notify.kind, NotifyType::RekeySa);
        assert_eq!(notify.data, [0xaa, 0xbb]);
    }

    #[test]
    fn construct() {
        assert_eq!(emit_into_junk(&rekey()), REKEY);
    }

    #[test]
    fn parse() {
        assert_eq!(Notify::parse_body(&REKEY, 0).unwrap(), rekey());
    }

    #[test]
    fn round_trip_unknown_type_into_junk() {
        let notify = Notify::new(NotifyType::Unknown(40_000), vec![1, 2, 3]);
        let bytes = emit_into_junk(&notify);
        assert_eq!(bytes, [0, 0, 0x9c, 0x40, 1, 2, 3]);
        assert_eq!(Notify::parse_body(&bytes, 0).unwrap(), notify);
    }

    #[test]
    fn truncated() {
        // The data has no length of its own: cutting into it is not an
        // error, cutting into the header or the SPI is.
        every_truncation_fails::<Notify>(&REKEY, &[8, 9]);
    }

    #[test]
    fn spi_size_past_the_end() {
        let mut bytes = REKEY;
        bytes[1] = 7;
        assert_eq!(
            Notify::parse_body(&bytes, 32),
            Err(WireError::Truncated {
                what: "Notify payload",
                offset: 32,
                needed: 11,
                available: 10
            })
        );
    }

    #[test]
    fn error_and_status_types() {
        assert!(NotifyType::NoProposalChosen.is_error());
        assert!(NotifyType::Unknown(8192).is_error());
        assert!(!NotifyType::InitialContact.is_error());
        assert!(!NotifyType::Unknown(40_960).is_error());
    }

    #[test]
    fn codepoints_named_in_the_brief() {
        for (value, kind) in [
            (1, NotifyType::UnsupportedCriticalPayload),
            (4, NotifyType::InvalidIkeSpi),
            (5, NotifyType::InvalidMajorVersion),
            (7, NotifyType::InvalidSyntax),
            (9, NotifyType::InvalidMessageId),
            (11, NotifyType::InvalidSpi),
            (14, NotifyType::NoProposalChosen),
            (17, NotifyType::InvalidKePayload),
            (24, NotifyType::AuthenticationFailed),
            (34, NotifyType::SinglePairRequired),
            (35, NotifyType::NoAdditionalSas),
            (36, NotifyType::InternalAddressFailure),
            (37, NotifyType::FailedCpRequired),
            (38, NotifyType::TsUnacceptable),
            (39, NotifyType::InvalidSelectors),
            (43, NotifyType::TemporaryFailure),
            (44, NotifyType::ChildSaNotFound),
            (16384, NotifyType::InitialContact),
            (16385, NotifyType::SetWindowSize),
            (16386, NotifyType::AdditionalTsPossible),
            (16387, NotifyType::IpcompSupported),
            (16388, NotifyType::NatDetectionSourceIp),
            (16389, NotifyType::NatDetectionDestinationIp),
            (16390, NotifyType::Cookie),
            (16391, NotifyType::UseTransportMode),
            (16392, NotifyType::HttpCertLookupSupported),
            (16393, NotifyType::RekeySa),
            (16394, NotifyType::EspTfcPaddingNotSupported),
            (16395, NotifyType::NonFirstFragmentsAlso),
            (16396, NotifyType::MobikeSupported),
            (16399, NotifyType::NoAdditionalAddresses),
            (16404, NotifyType::MultipleAuthSupported),
            (16405, NotifyType::AnotherAuthFollows),
            (16417, NotifyType::EapOnlyAuthentication),
            (16418, NotifyType::ChildlessIkev2Supported),
            (16430, NotifyType::Ikev2FragmentationSupported),
            (16431, NotifyType::SignatureHashAlgorithms),
        ] {
            assert_eq!(NotifyType::from(value), kind, "{value}");
            assert_eq!(u16::from(kind), value);
        }
    }

    #[test]
    fn every_value_round_trips_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for value in 0..=u16::MAX {
            let kind = NotifyType::from(value);
            assert_eq!(u16::from(kind), value);
            if let Some(name) = kind.name() {
                assert!(names.insert(name), "{name} twice");
                assert_eq!(kind.to_string(), name);
            }
        }
        // 24 error types, 16384-16446 without gaps.
        assert_eq!(names.len(), 24 + 63);
    }
}

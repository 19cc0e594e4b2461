//! Which algorithms the hub accepts, and choosing among what a peer offers.
//!
//! Proposals are written as operators know them from strongSwan and the
//! config sketch: `aes256-sha256-ecp256` for IKE, `aes256gcm16` or
//! `aes128-sha1` for ESP; several algorithms of one kind in one proposal
//! mean "any of these" (`aes256-aes128-sha256-sha1-modp2048-ecp256`).
//! Selection follows the hub's order: the first hub proposal that some peer
//! proposal satisfies wins, and within it the hub's preferred algorithm of
//! each kind (RFC 7296 section 2.7: the responder picks one transform per
//! type from one of the initiator's proposals).

use std::fmt;

use crate::{
    ike::{
        crypto::{DhGroup, Prf},
        wire::{Proposal, ProtocolId, Transform, TransformType},
    },
    ipsec::{Encr, Integ},
};

/// IANA transform ids (RFC 7296 section 3.3.2) for the algorithms we know.
const ENCR_AES_CBC: u16 = 12;
const ENCR_AES_GCM_16: u16 = 20;

/// One IKE proposal of the hub: any of each list, in preference order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: Vec<Encr>,
    /// Empty when every `encr` is an AEAD.
    pub integ: Vec<Integ>,
    pub prf: Vec<Prf>,
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal of the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Vec<Encr>,
    pub integ: Vec<Integ>,
    /// Extended sequence numbers accepted (RFC 4303 section 2.2.1), and
    /// chosen when the peer offers them: an SA with them never has to be
    /// rekeyed for its sequence number. On unless the proposal says only
    /// `noesn`.
    pub esn: bool,
}

/// What was chosen for an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeChoice {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub prf: Prf,
    pub dh: DhGroup,
}

/// What was chosen for a CHILD_SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspChoice {
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub esn: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposalError {
    #[error("{0:?}: empty proposal")]
    Empty(String),
    #[error(
        "{text:?}: unknown algorithm {word:?} (known: aes128 aes192 aes256 aes128gcm16 aes192gcm16 aes256gcm16, \
         sha1 sha256 sha384 sha512, prfsha1 prfsha256 prfsha384 prfsha512, modp2048 ecp256 ecp384 ecp521 curve25519, \
         esn noesn)"
    )]
    Unknown { text: String, word: String },
    #[error(
        "{0:?}: an IKE proposal needs an encryption algorithm, a PRF (or integrity) and a DH group"
    )]
    IncompleteIke(String),
    #[error(
        "{0:?}: an ESP proposal needs an encryption algorithm, and integrity unless it is AES-GCM"
    )]
    IncompleteEsp(String),
    #[error("{0:?}: AES-GCM already protects integrity; do not mix it with CBC in one proposal")]
    MixedAead(String),
}

enum Word {
    Encr(Encr),
    /// `sha256` is integrity in ESP, and integrity plus PRF in IKE.
    Hash(Integ, Prf),
    Prf(Prf),
    Dh(DhGroup),
    Esn(bool),
}

fn word(text: &str, w: &str) -> Result<Word, ProposalError> {
    let cbc = |key_bits| Word::Encr(Encr::AesCbc { key_bits });
    let gcm = |key_bits| Word::Encr(Encr::AesGcm16 { key_bits });
    Ok(match w {
        "aes128" => cbc(128),
        "aes192" => cbc(192),
        "aes256" => cbc(256),
        "aes128gcm16" | "aes128gcm128" => gcm(128),
        "aes192gcm16" | "aes192gcm128" => gcm(192),
        "aes256gcm16" | "aes256gcm128" => gcm(256),
        "sha1" | "sha" => Word::Hash(Integ::HmacSha1_96, Prf::HmacSha1),
        "sha256" | "sha2_256" => Word::Hash(Integ::HmacSha256_128, Prf::HmacSha256),
        "sha384" | "sha2_384" => Word::Hash(Integ::HmacSha384_192, Prf::HmacSha384),
        "sha512" | "sha2_512" => Word::Hash(Integ::HmacSha512_256, Prf::HmacSha512),
        "prfsha1" => Word::Prf(Prf::HmacSha1),
        "prfsha256" => Word::Prf(Prf::HmacSha256),
        "prfsha384" => Word::Prf(Prf::HmacSha384),
        "prfsha512" => Word::Prf(Prf::HmacSha512),
        "modp2048" => Word::Dh(DhGroup::Modp2048),
        "ecp256" => Word::Dh(DhGroup::Ecp256),
        "ecp384" => Word::Dh(DhGroup::Ecp384),
        "ecp521" => Word::Dh(DhGroup::Ecp521),
        "curve25519" | "x25519" => Word::Dh(DhGroup::Curve25519),
        "esn" => Word::Esn(true),
        "noesn" => Word::Esn(false),
        _ => {
            return Err(ProposalError::Unknown {
                text: text.to_owned(),
                word: w.to_owned(),
            });
        }
    })
}

fn push<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl IkeProposal {
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        let mut p = IkeProposal {
            encr: vec![],
            integ: vec![],
            prf: vec![],
            dh: vec![],
        };
        let mut hash_prfs = Vec::new();
        for w in text.split('-').filter(|w| !w.is_empty()) {
            match word(text, &w.to_ascii_lowercase())? {
                Word::Encr(e) => push(&mut p.encr, e),
                Word::Hash(i, prf) => {
                    push(&mut p.integ, i);
                    push(&mut hash_prfs, prf);
                }
                Word::Prf(prf) => push(&mut p.prf, prf),
                Word::Dh(g) => push(&mut p.dh, g),
                Word::Esn(_) => {
                    return Err(ProposalError::Unknown {
                        text: text.to_owned(),
                        word: w.to_owned(),
                    });
                }
            }
        }
        if p.encr.is_empty() && p.integ.is_empty() && p.prf.is_empty() && p.dh.is_empty() {
            return Err(ProposalError::Empty(text.to_owned()));
        }
        // strongSwan: without an explicit prfX the integrity hashes are the PRFs.
        if p.prf.is_empty() {
            p.prf = hash_prfs;
        }
        let aead = p.encr.iter().filter(|e| e.is_aead()).count();
        if aead != 0 && aead != p.encr.len() {
            return Err(ProposalError::MixedAead(text.to_owned()));
        }
        if aead != 0 {
            p.integ.clear();
        }
        if p.encr.is_empty()
            || p.prf.is_empty()
            || p.dh.is_empty()
            || (aead == 0 && p.integ.is_empty())
        {
            return Err(ProposalError::IncompleteIke(text.to_owned()));
        }
        Ok(p)
    }

    /// The hub's default: what IOS smart defaults and strongSwan offer, minus
    /// the weak (no 3DES, MD5, SHA-1 PRF-only stacks or DH groups 1/2/5).
    pub fn defaults() -> Vec<Self> {
        [
            "aes256gcm16-aes128gcm16-prfsha512-prfsha384-prfsha256-curve25519-ecp256-ecp384-ecp521-modp2048",
            "aes256-aes128-sha512-sha384-sha256-sha1-curve25519-ecp256-ecp384-ecp521-modp2048",
        ]
        .iter()
        .map(|t| Self::parse(t).expect("built-in proposals parse"))
        .collect()
    }
}

impl EspProposal {
    pub fn parse(text: &str) -> Result<Self, ProposalError> {
        let mut p = EspProposal {
            encr: vec![],
            integ: vec![],
            esn: false,
        };
        let mut saw_esn = false;
        for w in text.split('-').filter(|w| !w.is_empty()) {
            match word(text, &w.to_ascii_lowercase())? {
                Word::Encr(e) => push(&mut p.encr, e),
                Word::Hash(i, _) => push(&mut p.integ, i),
                Word::Esn(esn) => {
                    saw_esn = true;
                    p.esn |= esn;
                }
                Word::Prf(_) | Word::Dh(_) => {
                    // DH in an ESP proposal is PFS for rekeying; not yet.
                    return Err(ProposalError::Unknown {
                        text: text.to_owned(),
                        word: w.to_owned(),
                    });
                }
            }
        }
        if p.encr.is_empty() && p.integ.is_empty() {
            return Err(ProposalError::Empty(text.to_owned()));
        }
        let aead = p.encr.iter().filter(|e| e.is_aead()).count();
        if aead != 0 && aead != p.encr.len() {
            return Err(ProposalError::MixedAead(text.to_owned()));
        }
        if aead != 0 {
            p.integ.clear();
        }
        if p.encr.is_empty() || (aead == 0 && p.integ.is_empty()) {
            return Err(ProposalError::IncompleteEsp(text.to_owned()));
        }
        // Without a word on it, ESN is accepted.
        if !saw_esn {
            p.esn = true;
        }
        Ok(p)
    }

    /// AES-GCM (`esp-gcm`, 128 or 256) and Cisco's default transform set
    /// `esp-aes esp-sha-hmac` (AES-CBC-128 + HMAC-SHA1-96), and their peers.
    pub fn defaults() -> Vec<Self> {
        ["aes256gcm16-aes128gcm16", "aes256-aes128-sha256-sha1"]
            .iter()
            .map(|t| Self::parse(t).expect("built-in proposals parse"))
            .collect()
    }
}

fn encr_of(t: &Transform) -> Option<Encr> {
    Encr::from_iana(t.id, t.key_length)
}

/// Chooses the IKE algorithms: returns the choice and the peer's proposal
/// number (echoed in the response), or `None` (NO_PROPOSAL_CHOSEN).
/// `ke_group`: prefer a proposal with the group the peer already sent a KE
/// for, so no INVALID_KE_PAYLOAD round trip is needed.
pub fn choose_ike(
    hub: &[IkeProposal],
    peer: &[Proposal],
    ke_group: Option<u16>,
) -> Option<(IkeChoice, u8)> {
    let pass = |restrict: Option<u16>| {
        hub.iter().find_map(|ours| {
            peer.iter()
                .filter(|p| p.protocol == ProtocolId::Ike)
                .find_map(|theirs| {
                    let offered = |kind| theirs.transforms.iter().filter(move |t| t.kind == kind);
                    let encr =
                        ours.encr.iter().copied().find(|e| {
                            offered(TransformType::Encr).any(|t| encr_of(t) == Some(*e))
                        })?;
                    let prf = ours.prf.iter().copied().find(|p| {
                        offered(TransformType::Prf).any(|t| Prf::from_iana(t.id) == Some(*p))
                    })?;
                    let integ = if encr.is_aead() {
                        None
                    } else {
                        Some(ours.integ.iter().copied().find(|i| {
                            offered(TransformType::Integ)
                                .any(|t| Integ::from_iana(t.id) == Some(*i))
                        })?)
                    };
                    let dh = ours.dh.iter().copied().find(|g| {
                        restrict.is_none_or(|r| r == g.iana())
                            && offered(TransformType::Dh).any(|t| t.id == g.iana())
                    })?;
                    Some((
                        IkeChoice {
                            encr,
                            integ,
                            prf,
                            dh,
                        },
                        theirs.number,
                    ))
                })
        })
    };
    ke_group.and_then(|g| pass(Some(g))).or_else(|| pass(None))
}

/// Chooses the ESP algorithms from the peer's CHILD_SA proposals: the choice,
/// the peer's proposal number and its SPI (our outbound SPI).
pub fn choose_esp(hub: &[EspProposal], peer: &[Proposal]) -> Option<(EspChoice, u8, u32)> {
    hub.iter().find_map(|ours| {
        peer.iter()
            .filter(|p| p.protocol == ProtocolId::Esp && p.spi.len() == 4)
            .find_map(|theirs| {
                let offered = |kind| theirs.transforms.iter().filter(move |t| t.kind == kind);
                let encr = ours
                    .encr
                    .iter()
                    .copied()
                    .find(|e| offered(TransformType::Encr).any(|t| encr_of(t) == Some(*e)))?;
                let integ = if encr.is_aead() {
                    None
                } else {
                    Some(ours.integ.iter().copied().find(|i| {
                        offered(TransformType::Integ).any(|t| Integ::from_iana(t.id) == Some(*i))
                    })?)
                };
                // No ESN transform at all means no ESN (RFC 7296 section 3.3.2).
                let esns: Vec<u16> = offered(TransformType::Esn).map(|t| t.id).collect();
                let esn = if ours.esn && esns.contains(&1) {
                    true
                } else if esns.is_empty() || esns.contains(&0) {
                    false
                } else {
                    return None;
                };
                let spi = u32::from_be_bytes(theirs.spi.as_slice().try_into().ok()?);
                Some((EspChoice { encr, integ, esn }, theirs.number, spi))
            })
    })
}

fn encr_transform(e: Encr) -> Transform {
    let (id, bits) = match e {
        Encr::AesCbc { key_bits } => (ENCR_AES_CBC, key_bits),
        Encr::AesGcm16 { key_bits } => (ENCR_AES_GCM_16, key_bits),
    };
    Transform {
        kind: TransformType::Encr,
        id,
        key_length: Some(bits),
        other_attributes: vec![],
    }
}

fn plain(kind: TransformType, id: u16) -> Transform {
    Transform {
        kind,
        id,
        key_length: None,
        other_attributes: vec![],
    }
}

impl IkeChoice {
    /// The SA payload proposal that answers the peer (one transform per type).
    pub fn to_proposal(&self, number: u8) -> Proposal {
        let mut transforms = vec![
            encr_transform(self.encr),
            plain(TransformType::Prf, self.prf.iana()),
        ];
        if let Some(i) = self.integ {
            transforms.push(plain(TransformType::Integ, i.iana()));
        }
        transforms.push(plain(TransformType::Dh, self.dh.iana()));
        Proposal {
            number,
            protocol: ProtocolId::Ike,
            spi: vec![],
            transforms,
        }
    }

    /// For offers we make as an initiator.
    pub fn offer(hub: &IkeProposal, number: u8) -> Proposal {
        let mut transforms: Vec<Transform> = hub.encr.iter().map(|e| encr_transform(*e)).collect();
        transforms.extend(hub.prf.iter().map(|p| plain(TransformType::Prf, p.iana())));
        transforms.extend(
            hub.integ
                .iter()
                .map(|i| plain(TransformType::Integ, i.iana())),
        );
        transforms.extend(hub.dh.iter().map(|g| plain(TransformType::Dh, g.iana())));
        Proposal {
            number,
            protocol: ProtocolId::Ike,
            spi: vec![],
            transforms,
        }
    }
}

impl EspChoice {
    /// For offers we make as an initiator: ESN first when the proposal
    /// accepts it, and no ESN, for a peer without them.
    pub fn offer(hub: &EspProposal, number: u8, our_spi: u32) -> Proposal {
        let mut transforms: Vec<Transform> = hub.encr.iter().map(|e| encr_transform(*e)).collect();
        transforms.extend(
            hub.integ
                .iter()
                .map(|i| plain(TransformType::Integ, i.iana())),
        );
        if hub.esn {
            transforms.push(plain(TransformType::Esn, 1));
        }
        transforms.push(plain(TransformType::Esn, 0));
        Proposal {
            number,
            protocol: ProtocolId::Esp,
            spi: our_spi.to_be_bytes().to_vec(),
            transforms,
        }
    }

    pub fn to_proposal(&self, number: u8, our_spi: u32) -> Proposal {
        let mut transforms = vec![encr_transform(self.encr)];
        if let Some(i) = self.integ {
            transforms.push(plain(TransformType::Integ, i.iana()));
        }
        transforms.push(plain(TransformType::Esn, u16::from(self.esn)));
        Proposal {
            number,
            protocol: ProtocolId::Esp,
            spi: our_spi.to_be_bytes().to_vec(),
            transforms,
        }
    }
}

/// A peer's offer, for the log line that explains NO_PROPOSAL_CHOSEN.
pub fn describe_offer(peer: &[Proposal]) -> String {
    peer.iter()
        .map(|p| {
            let ts: Vec<String> = p
                .transforms
                .iter()
                .map(|t| match (t.kind, t.key_length) {
                    (kind, Some(bits)) => format!("{kind:?}:{}/{bits}", t.id),
                    (kind, None) => format!("{kind:?}:{}", t.id),
                })
                .collect();
            format!("#{} {:?} [{}]", p.number, p.protocol, ts.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for IkeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.integ {
            Some(i) => write!(f, "{}/{:?}/{:?}/{:?}", self.encr, i, self.prf, self.dh),
            None => write!(f, "{}/{:?}/{:?}", self.encr, self.prf, self.dh),
        }
    }
}

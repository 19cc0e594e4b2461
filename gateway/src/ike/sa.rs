//! What the exchanges of one IKE SA share (RFC 7296 section 2): its SPIs,
//! keys and SK ciphers in either role ([`Keymat`]); on the responder its
//! message-ID window, retransmission cache, dead peer detection and
//! CHILD_SAs ([`IkeSa`]); on the initiator the established SA ([`InitiatedSa`]);
//! what the exchanges hand back to their caller ([`Action`],
//! [`ChildSaParams`], [`DerivedKeys`]); and the helpers they all use:
//! sealing and opening SK payloads, NAT detection hashes, identities,
//! configuration attributes.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

pub use crate::ike::secrets::{DerivedKeys, EspSecrets, IkeSaSecrets};

pub(crate) use crate::ike::ids::{
    fake_nat_hash, identification_of, identity_of, nat_hash, subnet_attribute, subnet_value,
};

use crate::{
    config::{AuthMethod, Identity},
    iface::SaLifetime,
    ike::{
        crypto::{self, ChildKeys, CryptoError, DhPrivate, IkeKeys, SkCipher},
        job::Job,
        proposal::{EspChoice, IkeChoice},
        wire::{
            self, ExchangeType, Header, HeaderFlags, Notify, NotifyType, Payload, PayloadType,
            ProtocolId, TrafficSelector,
        },
    },
    ipsec::{Mode, Rng, Secret},
    net::Ipv4Prefix,
};

/// Length of the nonces we send (RFC 7296 section 2.10: at least half the
/// PRF's key size; 32 bytes covers SHA-512).
pub(crate) const NONCE_LEN: usize = 32;

/// Requests from the original initiator: I set, R clear (RFC 7296 section 3.1).
pub(crate) const INITIATOR_REQUEST: HeaderFlags = HeaderFlags {
    initiator: true,
    response: false,
    version: false,
};

/// Responses from the original responder: I clear, R set.
pub(crate) const RESPONDER_RESPONSE: HeaderFlags = HeaderFlags {
    initiator: false,
    response: true,
    version: false,
};

/// Where the spoke's addresses come from (the real one is `pool::Pools`).
pub trait AddressPools {
    fn acquire(&mut self, pool: &str, identity: &str) -> Result<Ipv4Addr, String>;
    fn release(&mut self, pool: &str, address: Ipv4Addr);
}

/// A CHILD_SA for the datapath and the XDP filter: everything needed to
/// build the peer's virtual-access and install the SA pair on it.
#[derive(Clone, Debug)]
pub struct ChildSaParams {
    pub ike_spi: u64,
    /// The IKE SA's tunnel id, as in `Action::SessionUp` (on the initiator:
    /// `InitiatorConfig::tunnel_id`).
    pub tunnel_id: u32,
    /// The `[ikev2.profile.NAME]` that accepted the peer (on the initiator:
    /// `InitiatorConfig::profile`).
    pub profile: String,
    /// The `[virtual_template.N]` the peer's virtual-access is cloned from.
    pub virtual_template: Option<u16>,
    /// The peer's address inside the tunnel: the pool address leased to it in
    /// this IKE_AUTH, routed /32 via its virtual-access. `None` on the
    /// initiator (the hub's inner address is not negotiated).
    pub peer_inner: Option<Ipv4Addr>,
    /// Prefixes behind the peer, routed via its virtual-access. On the hub:
    /// the INTERNAL_IP4_SUBNETs of the peer's CFG_REQUEST that the profile's
    /// `route_accept` let through; on the initiator: those the hub pushed in
    /// its CFG_REPLY (`route set`).
    pub peer_routes: Vec<Ipv4Prefix>,
    pub spi_in: u32,
    pub spi_out: u32,
    pub mode: Mode,
    /// UDP encapsulation ports (local, remote) when ESP goes in UDP 4500
    /// (RFC 3948): NAT between the peers, or encapsulation forced.
    pub encap: Option<(u16, u16)>,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub esp: EspChoice,
    /// ESP keys (RFC 7296 section 2.17): `encr_i` / `integ_i` protect what
    /// the initiator sends, `encr_r` / `integ_r` what the responder sends.
    /// On the hub (the responder) the first pair is what it receives.
    pub keys: ChildKeys,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
    /// The limits the datapath enforces (soft: rekey; hard: gone), from
    /// the profile's lifetimes with jitter.
    pub lifetime: SaLifetime,
    /// We initiated the exchange that created this CHILD_SA (IKE_AUTH as a
    /// dialling spoke, or a CREATE_CHILD_SA of ours), so `keys.encr_i` and
    /// `keys.integ_i` protect what we send (RFC 7296 section 2.17).
    pub initiator: bool,
    /// The inbound SPI of the CHILD_SA this one rekeys (RFC 7296 section
    /// 1.3.3): the new pair goes on the same interface, beside the old one
    /// until the old one is deleted.
    pub replaces: Option<u32>,
}

impl ChildSaParams {
    /// Both directions' keys, for the key log. `initiator`: we initiated
    /// the CHILD_SA, so the initiator's keys protect what we send.
    pub fn derived_keys(&self, initiator: bool) -> DerivedKeys {
        let child = self;
        let k = &child.keys;
        let (ours, theirs) = if initiator {
            ((&k.encr_i, &k.integ_i), (&k.encr_r, &k.integ_r))
        } else {
            ((&k.encr_r, &k.integ_r), (&k.encr_i, &k.integ_i))
        };
        let direction = |src, dst, spi, (encr, integ): (&Secret, &Secret)| EspSecrets {
            src,
            dst,
            spi,
            esp: child.esp,
            encr: encr.clone(),
            integ: integ.clone(),
        };
        DerivedKeys::ChildSa {
            inbound: direction(child.remote, child.local, child.spi_in, theirs),
            outbound: direction(child.local, child.remote, child.spi_out, ours),
        }
    }
}

/// What happened to a spoke's session, for the log and the other modules.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send `packet` (an IKE message; the task adds the non-ESP marker on 4500).
    Send {
        local: SocketAddrV4,
        remote: SocketAddrV4,
        packet: Vec<u8>,
    },
    /// Send a NAT keepalive (RFC 3948 section 2.3: one 0xFF byte, no
    /// non-ESP marker) from our UDP 4500 to the peer.
    NatKeepalive {
        remote: SocketAddrV4,
    },
    ChildUp(ChildSaParams),
    ChildDown {
        ike_spi: u64,
        spi_in: u32,
        spi_out: u32,
    },
    /// A CHILD_SA a rekey replaced was deleted: it sends no more (its
    /// successor takes the outbound traffic now, RFC 7296 section 2.8) but
    /// keeps decrypting for `LINGER`, then its `ChildDown` follows.
    ChildRetired {
        ike_spi: u64,
        spi_in: u32,
        spi_out: u32,
    },
    SessionUp {
        tunnel_id: u32,
        peer: SocketAddrV4,
        identity: String,
        profile: String,
        address: Option<Ipv4Addr>,
    },
    SessionDown {
        tunnel_id: u32,
        peer: SocketAddrV4,
        identity: Option<String>,
        reason: String,
    },
    /// The IKE SA of `tunnel_id` was rekeyed (RFC 7296 section 1.3.2): its
    /// CHILD_SAs now belong to the IKE SA whose SPI (ours) is `new_spi`.
    IkeRekeyed {
        tunnel_id: u32,
        peer: SocketAddrV4,
        old_spi: u64,
        new_spi: u64,
        initiated: bool,
    },
    /// An authenticated IKE message came from a new address or port (a NAT
    /// rebinding, RFC 7296 section 2.23): the IKE SA answers there now, and
    /// its CHILD_SAs' ESP must go there too.
    PeerMoved {
        tunnel_id: u32,
        from: SocketAddrV4,
        to: SocketAddrV4,
    },
    /// An exchange failed in a way the operator should see (auth failure,
    /// no proposal chosen ...), with the peer it concerns.
    Refused {
        peer: SocketAddrV4,
        reason: String,
    },
    /// Keys were derived: for the key log (`ike::keylog`), written by the
    /// socket task when one is open, dropped otherwise.
    KeysDerived(DerivedKeys),
    /// Run this off the engine's thread and hand the result back with
    /// `Engine::computed` (or `Engine::abandon` it). Only with offload on.
    Compute(Job),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaState {
    /// IKE_SA_INIT answered; waiting for IKE_AUTH.
    HalfOpen,
    /// IKE_AUTH done: READY in IOS terms.
    Ready,
    /// Rekeyed (RFC 7296 section 1.3.2): its CHILD_SAs moved to the new IKE
    /// SA; it only waits for its DELETE (ours or the peer's).
    Rekeyed,
}

/// Why an incoming datagram produced nothing: counted by the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    Malformed,
    UnknownSpi,
    BadMessageId,
    Integrity,
    NotARequest,
}

/// The SPIs, keys and SK ciphers of one IKE SA, and which end we are: what
/// every exchange on it needs to protect its messages (RFC 7296 section
/// 3.14) and to derive CHILD_SA keys (section 2.17), in either role.
pub(crate) struct Keymat {
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    /// We are the SA's original initiator: the I flag of what we send
    /// (section 3.1), and SK_ei/SK_ai protect it.
    pub(crate) initiator: bool,
    pub(crate) choice: IkeChoice,
    pub(crate) keys: IkeKeys,
    /// Opens what the peer sends; seals what we send.
    pub(crate) rx: SkCipher,
    pub(crate) tx: SkCipher,
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
}

impl Keymat {
    /// Derives a new IKE SA's keys from the IKE_SA_INIT exchange (section
    /// 2.14) and sets up the SK ciphers of both directions.
    pub(crate) fn derive(
        initiator: bool,
        choice: IkeChoice,
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let keys = IkeKeys::derive(
            choice.prf,
            choice.encr,
            choice.integ,
            &ni,
            &nr,
            shared,
            spi_i,
            spi_r,
        );
        Self::with_keys(initiator, choice, keys, ni, nr, spi_i, spi_r)
    }

    /// The keys of the IKE SA that rekeys this one (RFC 7296 section 2.18):
    /// `SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)` with this SA's
    /// PRF, then the new SA's keys from its own transforms and SPIs.
    /// `initiator`: we initiated the rekey, so we are the new SA's original
    /// initiator.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rekeyed(
        &self,
        initiator: bool,
        choice: IkeChoice,
        ni: Vec<u8>,
        nr: Vec<u8>,
        shared: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let skeyseed = IkeKeys::skeyseed_rekey(self.choice.prf, &self.keys.sk_d, shared, &ni, &nr);
        let keys = IkeKeys::from_skeyseed(
            choice.prf,
            choice.encr,
            choice.integ,
            &skeyseed,
            &ni,
            &nr,
            spi_i,
            spi_r,
        );
        Self::with_keys(initiator, choice, keys, ni, nr, spi_i, spi_r)
    }

    pub(crate) fn with_keys(
        initiator: bool,
        choice: IkeChoice,
        keys: IkeKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
        spi_i: u64,
        spi_r: u64,
    ) -> Result<Self, CryptoError> {
        let cipher = |sk_e: &[u8], sk_a: &[u8]| {
            SkCipher::new(choice.encr, choice.integ, sk_e, choice.integ.map(|_| sk_a))
        };
        // The initiator's direction first: its error is the one reported.
        let from_initiator = cipher(&keys.sk_ei, &keys.sk_ai);
        let from_responder = cipher(&keys.sk_er, &keys.sk_ar);
        let (from_initiator, from_responder) = (from_initiator?, from_responder?);
        let (rx, tx) = if initiator {
            (from_responder, from_initiator)
        } else {
            (from_initiator, from_responder)
        };
        Ok(Keymat {
            spi_i,
            spi_r,
            initiator,
            choice,
            keys,
            rx,
            tx,
            ni,
            nr,
        })
    }

    /// The header flags of what we send (section 3.1).
    pub(crate) fn flags(&self, response: bool) -> HeaderFlags {
        HeaderFlags {
            initiator: self.initiator,
            response,
            version: false,
        }
    }

    /// Builds an encrypted message (section 3.14): header and SK header
    /// with their final lengths first, since they are authenticated.
    pub(crate) fn seal(
        &self,
        rng: &mut dyn Rng,
        exchange: ExchangeType,
        message_id: u32,
        response: bool,
        payloads: &[Payload],
    ) -> Vec<u8> {
        let (first, plaintext) = wire::emit_payloads(payloads);
        let body_len = self.tx.sealed_len(plaintext.len());
        let total = wire::HEADER_LEN + 4 + body_len;
        let mut header = header(
            self.spi_i,
            self.spi_r,
            exchange,
            message_id,
            self.flags(response),
        );
        header.next_payload = PayloadType::Encrypted;
        header.length = u32::try_from(total).expect("IKE messages are far below 4 GiB");
        let mut packet = vec![0u8; wire::HEADER_LEN + 4];
        header.emit(&mut packet[..wire::HEADER_LEN]);
        packet[wire::HEADER_LEN] = u8::from(first);
        let sk_len = u16::try_from(4 + body_len).expect("SK payload below 64 KiB");
        packet[wire::HEADER_LEN + 2..wire::HEADER_LEN + 4].copy_from_slice(&sk_len.to_be_bytes());
        let body = self.tx.seal(&packet, &plaintext, rng);
        packet.extend_from_slice(&body);
        packet
    }

    /// Decrypts the SK (or SKF) payload `body` at the end of `datagram`;
    /// everything before it is authenticated with it.
    pub(crate) fn open(&self, datagram: &[u8], body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let aad = &datagram[..datagram.len() - body.len()];
        self.rx.open(aad, body)
    }

    /// The keys of a CHILD_SA created with IKE_AUTH: `KEYMAT = prf+(SK_d,
    /// Ni | Nr)` (section 2.17).
    pub(crate) fn child_keys(&self, esp: EspChoice) -> Result<ChildKeys, CryptoError> {
        self.new_child_keys(esp, &self.ni, &self.nr, None)
    }

    /// The keys of a CHILD_SA created with CREATE_CHILD_SA: `KEYMAT =
    /// prf+(SK_d, [g^ir (new) |] Ni | Nr)` with that exchange's nonces
    /// (section 2.17).
    pub(crate) fn new_child_keys(
        &self,
        esp: EspChoice,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
    ) -> Result<ChildKeys, CryptoError> {
        let len = ChildKeys::keymat_len(esp.encr, esp.integ);
        let keymat = crypto::child_keymat(self.choice.prf, &self.keys.sk_d, ni, nr, shared, len);
        ChildKeys::split(&keymat, esp.encr, esp.integ)
    }

    /// Our SPI of the SA: the one the peer's messages name us by.
    pub(crate) fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// The keys that decrypt this SA's messages, for the key log.
    pub(crate) fn secrets(&self) -> DerivedKeys {
        DerivedKeys::IkeSa(IkeSaSecrets {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            encr: self.choice.encr,
            integ: self.choice.integ,
            sk_ei: self.keys.sk_ei.clone(),
            sk_er: self.keys.sk_er.clone(),
            sk_ai: self.keys.sk_ai.clone(),
            sk_ar: self.keys.sk_ar.clone(),
        })
    }
}

/// A CHILD_SA of an IKE SA.
pub(crate) struct ChildSa {
    pub(crate) params: ChildSaParams,
    /// When it was installed (its lifetime counts from here).
    pub(crate) created: Instant,
    /// The datapath said its soft lifetime ran out: a rekey is due.
    pub(crate) rekey_due: bool,
    /// A new CHILD_SA replaced it (the inbound SPI of the new one, the
    /// lowest nonce of the exchange that did, and whether we initiated
    /// that exchange) (RFC 7296 section 2.8.1: when
    /// both ends rekeyed it at once, the SA made with the lowest of the
    /// four nonces is redundant). It lives on until deleted.
    pub(crate) replaced: Option<(u32, Vec<u8>, bool)>,
}

impl ChildSa {
    pub(crate) fn new(params: ChildSaParams, created: Instant) -> Self {
        ChildSa {
            params,
            created,
            rekey_due: false,
            replaced: None,
        }
    }
}

/// What our outstanding request on an IKE SA is for (one at a time: the
/// window of one, RFC 7296 section 2.3).
pub(crate) enum Request {
    /// An empty INFORMATIONAL: dead peer detection (section 2.4).
    Liveness,
    /// A DELETE of these CHILD_SAs (our inbound SPIs), or of the IKE SA.
    Delete { children: Vec<u32>, ike: bool },
    /// A CREATE_CHILD_SA rekeying a CHILD_SA or the IKE SA.
    Rekey(Rekeying),
}

/// What our outstanding CREATE_CHILD_SA is for, with the secrets its
/// response needs.
pub(crate) enum Rekeying {
    Child {
        /// The inbound SPI of the CHILD_SA being rekeyed, and of its successor.
        old_spi_in: u32,
        new_spi_in: u32,
        ni: Vec<u8>,
        dh: Option<DhPrivate>,
    },
    Ike {
        /// Our SPI of the new IKE SA (its SPIi: we are its original initiator).
        new_spi: u64,
        ni: Vec<u8>,
        dh: DhPrivate,
    },
}

/// Our request in flight, resent until answered.
pub(crate) struct Outstanding {
    pub(crate) id: u32,
    pub(crate) packet: Vec<u8>,
    pub(crate) tries: u32,
    pub(crate) next_try: Instant,
    pub(crate) request: Request,
}

/// One IKE SA, keyed in the engine by our SPI: one the hub answered, one
/// a spoke dialled and handed over once up (`Engine::adopt`), or one made
/// by a rekey, in which the rekey's initiator is the original initiator
/// (RFC 7296 section 2.18).
pub(crate) struct IkeSa {
    pub(crate) tunnel_id: u32,
    pub(crate) keymat: Keymat,
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
    pub(crate) state: SaState,
    /// The IKE_SA_INIT messages, signed by the AUTH payloads (section 2.15).
    pub(crate) init_request: Vec<u8>,
    pub(crate) init_response: Vec<u8>,
    /// NAT between us and the peer (RFC 7296 section 2.23): ESP goes in UDP.
    pub(crate) nat: bool,
    /// Only when we are the side behind the NAT (the peer's
    /// NAT_DETECTION_DESTINATION_IP hash did not match our address), since
    /// that side sends the keepalives that keep the mapping open (RFC 3948
    /// section 2.3): when we last sent one (at first, when the SA started).
    pub(crate) keepalive_sent: Option<Instant>,
    /// The message ID of our next request (liveness checks, DELETE,
    /// rekeys).
    pub(crate) next_request_id: u32,
    /// The message ID the peer's next request must carry.
    pub(crate) next_peer_id: u32,
    /// The peer's last request's ID and our response: the window of one
    /// (section 2.3), answered again, bytes for bytes, when retransmitted.
    pub(crate) last_response: Option<(u32, Vec<u8>)>,
    /// When the peer last proved it is alive: a valid IKE message, or ESP
    /// the datapath saw on one of its CHILD_SAs (`Engine::note_alive`).
    pub(crate) last_heard: Instant,
    /// Dead peer detection (RFC 7296 section 2.4): (interval, retry).
    pub(crate) dpd: Option<(Duration, Duration)>,
    /// IOS `on-demand`: only a peer silent while we sent it traffic is asked.
    pub(crate) dpd_on_demand: bool,
    /// When the datapath last saw us send ESP to the peer (`note_sending`).
    pub(crate) last_sent: Option<Instant>,
    /// Our request in flight, if any.
    pub(crate) outstanding: Option<Outstanding>,
    /// When the IKE SA is to be rekeyed (its lifetime less jitter), and
    /// when it must be gone if that failed (its lifetime).
    pub(crate) rekey_at: Option<Instant>,
    pub(crate) expire_at: Option<Instant>,
    pub(crate) created: Instant,
    pub(crate) established: Option<Instant>,
    pub(crate) identity: Option<Identity>,
    pub(crate) profile: Option<String>,
    pub(crate) auth_remote: Option<AuthMethod>,
    pub(crate) auth_local: Option<AuthMethod>,
    pub(crate) lease: Option<(String, Ipv4Addr)>,
    pub(crate) children: Vec<ChildSa>,
    pub(crate) fragments: Reassembly,
    /// CHILD_SAs (our inbound SPIs) to DELETE when no request is in flight:
    /// the old one after our rekey, a redundant one after a collision, one
    /// past its hard lifetime.
    pub(crate) pending_delete: Vec<u32>,
    /// DELETE this IKE SA when no request is in flight (we rekeyed it, or
    /// it is our redundant half of a collision).
    pub(crate) pending_delete_ike: bool,
    /// No rekey of ours starts before this (after a refusal, try later).
    pub(crate) next_rekey_try: Instant,
    /// The lowest nonce of the rekey that made this SA (section 2.8.1).
    pub(crate) rekey_nonce: Option<Vec<u8>>,
    /// When `Rekeyed`: our SPI of the SA that replaced it.
    pub(crate) rekeyed_to: Option<u64>,
    /// Deleted CHILD_SAs that a rekey replaced, still in the datapath until
    /// the instant given (inbound SPI, outbound SPI, until): see `LINGER`.
    pub(crate) lingering: Vec<(u32, u32, Instant)>,
}

/// An IKE SA we initiated, once IKE_AUTH is done (a spoke's dial): what its
/// INFORMATIONAL exchanges need.
pub(crate) struct InitiatedSa {
    pub(crate) keymat: Keymat,
    pub(crate) next_message_id: u32,
    /// Our inbound SPI of the CHILD_SA, if one was created.
    pub(crate) child_spi: Option<u32>,
}

/// Requests are resent this often when the SA has no DPD retry interval.
pub(crate) const RETRANSMIT: Duration = Duration::from_secs(2);
/// A deleted CHILD_SA that a rekey replaced keeps decrypting this long:
/// ESP its peer sealed on it an instant before switching to the new one
/// (a datapath worker holds its tables for a batch) may arrive after the
/// DELETE's exchange is done.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Tries of a request before the peer is declared gone (section 2.4).
pub(crate) const REQUEST_TRIES: u32 = 5;

impl IkeSa {
    /// Sends a request of ours (one at a time: the window of one, section
    /// 2.3) and keeps it for retransmission until answered.
    pub(crate) fn start_request(
        &mut self,
        rng: &mut dyn Rng,
        now: Instant,
        exchange: ExchangeType,
        payloads: &[Payload],
        request: Request,
    ) -> Vec<u8> {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        let packet = self.keymat.seal(rng, exchange, id, false, payloads);
        self.outstanding = Some(Outstanding {
            id,
            packet: packet.clone(),
            tries: 1,
            next_try: now + self.retry_interval(),
            request,
        });
        packet
    }

    /// How long a request waits for its answer before it is sent again.
    pub(crate) fn retry_interval(&self) -> Duration {
        self.dpd.map_or(RETRANSMIT, |(_, retry)| retry)
    }

    /// An IKE SA made by a rekey of this one (section 2.18): the same peer and
    /// identity, message IDs from zero, nothing else yet. As made it is only
    /// good for being deleted (`Rekeyed`): the successor of a rekey gets the
    /// session on top (`successor`); our losing half of a simultaneous rekey
    /// stays like this, to be deleted by us, its creator (section 2.8.1).
    pub(crate) fn next(&self, keymat: Keymat, now: Instant, nonce: Vec<u8>) -> IkeSa {
        IkeSa {
            tunnel_id: self.tunnel_id,
            local: self.local,
            remote: self.remote,
            nat: self.nat,
            keepalive_sent: self.keepalive_sent,
            identity: self.identity.clone(),
            profile: self.profile.clone(),
            auth_remote: self.auth_remote,
            auth_local: self.auth_local,
            rekey_nonce: Some(nonce),
            ..IkeSa::placeholder(keymat, now)
        }
    }

    /// An SA with `keymat` and nothing else yet, `Rekeyed` (only good for
    /// being deleted) until the caller says otherwise.
    pub(crate) fn placeholder(keymat: Keymat, now: Instant) -> IkeSa {
        let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        IkeSa {
            tunnel_id: 0,
            keymat,
            local: unspecified,
            remote: unspecified,
            state: SaState::Rekeyed,
            init_request: Vec::new(),
            init_response: Vec::new(),
            nat: false,
            keepalive_sent: None,
            next_request_id: 0,
            next_peer_id: 0,
            last_response: None,
            last_heard: now,
            dpd: None,
            dpd_on_demand: true,
            last_sent: None,
            outstanding: None,
            rekey_at: None,
            expire_at: Some(now + std::time::Duration::from_mins(1)),
            created: now,
            established: Some(now),
            identity: None,
            profile: None,
            auth_remote: None,
            auth_local: None,
            lease: None,
            children: Vec::new(),
            fragments: Reassembly::default(),
            pending_delete: Vec::new(),
            pending_delete_ike: false,
            next_rekey_try: now,
            rekey_nonce: None,
            rekeyed_to: None,
            lingering: Vec::new(),
        }
    }

    /// Takes the CHILD_SA at `index` out of the SA (deleted): its
    /// `ChildDown`, or, if a rekey replaced it, its `ChildRetired` now and
    /// its `ChildDown` after `LINGER`. The caller releases its SPI with the
    /// `ChildDown`.
    pub(crate) fn retire_child(&mut self, index: usize, now: Instant) -> Action {
        let child = self.children.remove(index);
        let (spi_in, spi_out) = (child.params.spi_in, child.params.spi_out);
        let ike_spi = self.keymat.our_spi();
        if child.replaced.is_some() {
            self.lingering.push((spi_in, spi_out, now + LINGER));
            return Action::ChildRetired {
                ike_spi,
                spi_in,
                spi_out,
            };
        }
        Action::ChildDown {
            ike_spi,
            spi_in,
            spi_out,
        }
    }

    /// The lingering CHILD_SAs whose time is up (all of them with `None`).
    pub(crate) fn lingered(&mut self, now: Option<Instant>) -> Vec<Action> {
        let ike_spi = self.keymat.our_spi();
        let mut out = Vec::new();
        self.lingering.retain(|(spi_in, spi_out, until)| {
            if now.is_some_and(|now| now < *until) {
                return true;
            }
            out.push(Action::ChildDown {
                ike_spi,
                spi_in: *spi_in,
                spi_out: *spi_out,
            });
            false
        });
        out
    }

    /// The CHILD_SA with inbound SPI `spi_in`.
    pub(crate) fn child(&self, spi_in: u32) -> Option<&ChildSa> {
        self.children.iter().find(|c| c.params.spi_in == spi_in)
    }
}

/// Decrypted fragments of the request being reassembled (RFC 7383 section
/// 2.6); `exchange::fragments` fills it.
#[derive(Default)]
pub(crate) struct Reassembly {
    pub(crate) message_id: u32,
    pub(crate) first_inner: Option<PayloadType>,
    pub(crate) parts: Vec<Option<Vec<u8>>>,
}

/// Our inbound CHILD_SA SPIs in use: a new one must not collide.
#[derive(Default)]
pub(crate) struct ChildSpis(HashSet<u32>);

impl ChildSpis {
    pub(crate) fn allocate(&mut self, rng: &mut dyn Rng) -> u32 {
        loop {
            let mut b = [0u8; 4];
            rng.fill(&mut b);
            let spi = u32::from_be_bytes(b);
            // SPIs 1-255 are reserved by IANA (RFC 4303 section 2.1).
            if spi > 255 && self.0.insert(spi) {
                return spi;
            }
        }
    }

    /// Marks an SPI chosen elsewhere (a dial's) as in use.
    pub(crate) fn insert(&mut self, spi: u32) {
        self.0.insert(spi);
    }

    pub(crate) fn release(&mut self, spi: u32) {
        self.0.remove(&spi);
    }
}

/// An IKE header; `next_payload` and `length` are filled in when emitted.
pub(crate) fn header(
    spi_i: u64,
    spi_r: u64,
    exchange: ExchangeType,
    message_id: u32,
    flags: HeaderFlags,
) -> Header {
    Header {
        spi_i,
        spi_r,
        next_payload: PayloadType::None,
        major_version: 2,
        minor_version: 0,
        exchange,
        flags,
        message_id,
        length: 0,
    }
}

/// A notify without SPI: Protocol ID zero (RFC 7296 section 3.10).
pub(crate) fn notify(kind: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: ProtocolId::None,
        spi: vec![],
        kind,
        data,
    })
}

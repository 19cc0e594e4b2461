//! The IKEv2 exchanges, responder side (RFC 7296): datagrams, time and
//! events in; datagrams to send and session events out. No sockets, no
//! clocks, no files: the socket task (`ike::task`) owns those, and tests
//! drive the engine directly.
//!
//! One `IkeSa` per spoke, keyed by our (responder) SPI. The message-ID
//! window is 1 (RFC 7296 section 2.3): a retransmitted request gets the
//! cached response, bytes for bytes.

use std::{
    collections::{HashMap, HashSet},
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::{AuthMethod, Identity},
    ike::{
        crypto::{self, ChildKeys, IkeKeys, SkCipher},
        keylog::KeyLog,
        policy::{Policy, ProfilePolicy},
        proposal::{self, EspChoice, IkeChoice},
        wire::{
            self, Auth, AuthMethod as WireAuth, CfgType, Config as CpPayload, ConfigAttribute,
            ConfigAttributeType, Delete, ExchangeType, Header, HeaderFlags, IdType, Identification,
            KeyExchange, Message, Notify, NotifyType, Payload, PayloadType, ProtocolId,
            TrafficSelector,
        },
    },
    ipsec::{Mode, Rng},
    net::{IPPROTO_GRE, Ipv4Prefix, NATT_PORT},
};

/// Half-open SAs (IKE_SA_INIT answered, no IKE_AUTH yet) are dropped after this.
const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
const NONCE_LEN: usize = 32;
/// Length of a NAT_DETECTION hash (SHA-1, RFC 7296 section 3.10.1).
const NAT_HASH_LEN: usize = 20;
/// Most prefixes `route_accept` installs for one peer: a spoke announces its
/// LANs, a handful; a CFG_REQUEST of thousands would be a routing table
/// filled by one peer.
const MAX_PEER_ROUTES: usize = 256;

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
    /// ESP keys (RFC 7296 section 2.17). We are the responder: `encr_i` /
    /// `integ_i` protect what we receive, `encr_r` / `integ_r` what we send.
    pub keys: ChildKeys,
    pub ts_local: Vec<TrafficSelector>,
    pub ts_remote: Vec<TrafficSelector>,
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
    ChildUp(ChildSaParams),
    ChildDown {
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
    /// An exchange failed in a way the operator should see (auth failure,
    /// no proposal chosen ...), with the peer it concerns.
    Refused {
        peer: SocketAddrV4,
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaState {
    /// IKE_SA_INIT answered; waiting for IKE_AUTH.
    HalfOpen,
    /// IKE_AUTH done: READY in IOS terms.
    Ready,
}

struct ChildSa {
    params: ChildSaParams,
}

struct IkeSa {
    tunnel_id: u32,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    state: SaState,
    choice: IkeChoice,
    keys: IkeKeys,
    /// Protects what the initiator sends (SK_ei/SK_ai) and what we send.
    rx: SkCipher,
    tx: SkCipher,
    ni: Vec<u8>,
    nr: Vec<u8>,
    init_request: Vec<u8>,
    init_response: Vec<u8>,
    /// NAT between us and the peer (RFC 7296 section 2.23): ESP goes in UDP.
    nat: bool,
    next_request_id: u32,
    last_response: Option<(u32, Vec<u8>)>,
    /// When the peer last proved it is alive: a valid IKE message, or ESP
    /// the datapath saw on one of its CHILD_SAs (`note_alive`).
    last_heard: Instant,
    /// Dead peer detection (RFC 7296 section 2.4): (interval, retry).
    dpd: Option<(Duration, Duration)>,
    /// IOS `on-demand`: only a peer silent while we sent it traffic is asked.
    dpd_on_demand: bool,
    /// When the datapath last saw us send ESP to the peer (`note_sending`).
    last_sent: Option<Instant>,
    /// Our outstanding liveness check: message id, packet, tries, next try.
    probe: Option<(u32, Vec<u8>, u32, Instant)>,
    created: Instant,
    established: Option<Instant>,
    identity: Option<Identity>,
    profile: Option<String>,
    auth_remote: Option<AuthMethod>,
    auth_local: Option<AuthMethod>,
    lease: Option<(String, Ipv4Addr)>,
    children: Vec<ChildSa>,
    fragments: Reassembly,
}

/// Most fragments one message may come in (RFC 7383 leaves the limit to
/// the receiver; 64 x 1280 bytes is far above any IKE_AUTH with certificates).
const MAX_FRAGMENTS: u16 = 64;

/// Liveness checks sent before a silent peer is declared dead.
const DPD_TRIES: u32 = 5;

/// Decrypted fragments of the request being reassembled (RFC 7383 section 2.6).
#[derive(Default)]
struct Reassembly {
    message_id: u32,
    first_inner: Option<PayloadType>,
    parts: Vec<Option<Vec<u8>>>,
}

impl Reassembly {
    /// Adds a decrypted fragment; returns the whole plaintext when complete.
    fn add(
        &mut self,
        message_id: u32,
        f: &wire::EncryptedFragment,
        part: Vec<u8>,
    ) -> Option<(PayloadType, Vec<u8>)> {
        if f.total == 0 || f.total > MAX_FRAGMENTS || f.number == 0 || f.number > f.total {
            return None;
        }
        // A new message, or the peer re-fragmented with another total
        // (section 2.6.1): start over.
        if self.message_id != message_id || self.parts.len() != usize::from(f.total) {
            *self = Reassembly {
                message_id,
                first_inner: None,
                parts: vec![None; usize::from(f.total)],
            };
        }
        if f.number == 1 {
            self.first_inner = Some(f.first_inner);
        }
        self.parts[usize::from(f.number) - 1] = Some(part);
        if self.parts.iter().any(Option::is_none) {
            return None;
        }
        let first = self.first_inner?;
        let whole = self.parts.drain(..).flatten().flatten().collect();
        *self = Reassembly::default();
        Some((first, whole))
    }
}

/// `show crypto ikev2 sa` and `show crypto session`, one row per IKE SA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaReport {
    pub tunnel_id: u32,
    pub local: String,
    pub remote: String,
    pub status: String,
    pub encryption: String,
    pub prf: String,
    pub hash: Option<String>,
    pub dh_group: u16,
    pub auth_sign: Option<String>,
    pub auth_verify: Option<String>,
    pub lifetime_s: u64,
    pub active_time_s: u64,
    pub spi_i: String,
    pub spi_r: String,
    pub identity: Option<String>,
    pub profile: Option<String>,
    pub assigned_address: Option<Ipv4Addr>,
    pub nat_t: bool,
    pub children: Vec<ChildReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildReport {
    pub spi_in: String,
    pub spi_out: String,
    pub mode: Mode,
    pub encryption: String,
    pub integrity: Option<String>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
}

/// IKE SA lifetime we report (IOS default 86400 s); rekeying comes later.
const IKE_LIFETIME_S: u64 = 86_400;

pub struct Engine {
    policy: Policy,
    sas: HashMap<u64, IkeSa>,
    /// (peer, SPIi) -> our SPI: recognises a retransmitted IKE_SA_INIT.
    by_initiator: HashMap<(SocketAddrV4, u64), u64>,
    rng: Box<dyn Rng + Send>,
    next_tunnel_id: u32,
    /// Inbound CHILD_SA SPIs in use: a new one must not collide.
    child_spis: HashSet<u32>,
    /// Debugging only: where each IKE SA's keys go (`ike::keylog`).
    keylog: Option<KeyLog>,
    /// Pretend the peer is behind NAT so ESP goes in UDP 4500 (see
    /// `with_forced_encapsulation`).
    forced_encapsulation: bool,
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

impl Engine {
    pub fn new(policy: Policy, rng: Box<dyn Rng + Send>) -> Self {
        Engine {
            policy,
            sas: HashMap::new(),
            by_initiator: HashMap::new(),
            rng,
            next_tunnel_id: 1,
            child_spis: HashSet::new(),
            keylog: None,
            forced_encapsulation: false,
        }
    }

    /// Forces UDP encapsulation of ESP (RFC 3948, port 4500) even when no
    /// NAT is between the hub and a peer, as strongSwan's `encap = yes`
    /// does: the IKE_SA_INIT response carries a NAT_DETECTION_SOURCE_IP
    /// that matches no address, so the peer believes the hub is behind NAT
    /// and floats to 4500 (RFC 7296 section 2.23), and the hub marks the SA
    /// as NATed. For a datapath that carries ESP only inside UDP. Applies to
    /// peers that do NAT-T (that sent NAT_DETECTION notifies); off by
    /// default.
    #[must_use]
    pub fn with_forced_encapsulation(mut self, on: bool) -> Self {
        self.forced_encapsulation = on;
        self
    }

    /// Writes each new IKE SA's keys (and its CHILD_SAs' ESP keys) to
    /// `keylog`, in the formats of Wireshark's decryption tables, as soon as
    /// they are derived. For debugging and tests only: whoever reads the
    /// log can decrypt the SAs.
    #[must_use]
    pub fn with_keylog(mut self, keylog: Option<KeyLog>) -> Self {
        self.keylog = keylog;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles one IKE message (without the non-ESP marker) that arrived on
    /// `local` from `remote`.
    pub fn handle(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        datagram: &[u8],
        pools: &mut dyn AddressPools,
    ) -> Result<Vec<Action>, Dropped> {
        let message = Message::parse(datagram).map_err(|_| Dropped::Malformed)?;
        let header = &message.header;
        if header.flags.response {
            // The only requests the hub sends are liveness checks.
            return self.probe_answered(now, datagram, &message);
        }
        match header.exchange {
            ExchangeType::IkeSaInit => Ok(self.sa_init(now, local, remote, datagram, &message)),
            _ => self.protected(now, local, remote, datagram, &message, pools),
        }
    }

    /// Expires half-open SAs.
    pub fn tick(&mut self, now: Instant, pools: &mut dyn AddressPools) -> Vec<Action> {
        let expired: Vec<u64> = self
            .sas
            .iter()
            .filter(|(_, sa)| {
                sa.state == SaState::HalfOpen && now.duration_since(sa.created) > HALF_OPEN_TIMEOUT
            })
            .map(|(spi, _)| *spi)
            .collect();
        for spi in &expired {
            if let Some(sa) = self.sas.remove(spi) {
                self.by_initiator.remove(&(sa.remote, sa.spi_i));
                tracing::debug!(peer = %sa.remote, "half-open IKE SA expired without IKE_AUTH");
            }
        }
        self.dead_peer_detection(now, pools)
    }

    /// RFC 7296 section 2.4: a peer silent for the profile's DPD interval
    /// (no IKE message, no ESP) gets an empty INFORMATIONAL request, resent
    /// every retry interval; after `DPD_TRIES` unanswered the SA is
    /// deleted, as IOS does with `dpd INTERVAL RETRY`.
    fn dead_peer_detection(&mut self, now: Instant, pools: &mut dyn AddressPools) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut dead = Vec::new();
        for (spi, sa) in &mut self.sas {
            let Some((interval, retry)) = sa.dpd.filter(|_| sa.state == SaState::Ready) else {
                continue;
            };
            // On demand (IOS's default, RFC 7296 section 2.4's "only when
            // there is traffic to send"): a peer we sent nothing to since
            // it was last heard is not asked.
            let wanted = !sa.dpd_on_demand || sa.last_sent.is_some_and(|t| t > sa.last_heard);
            match &mut sa.probe {
                None if wanted && now.duration_since(sa.last_heard) >= interval => {
                    let id = sa.next_request_id;
                    sa.next_request_id += 1;
                    let packet = seal(
                        &mut *self.rng,
                        sa,
                        ExchangeType::Informational,
                        id,
                        false,
                        &[],
                    );
                    actions.push(Action::Send {
                        local: sa.local,
                        remote: sa.remote,
                        packet: packet.clone(),
                    });
                    sa.probe = Some((id, packet, 1, now + retry));
                }
                Some((_, packet, tries, next)) if now >= *next => {
                    if *tries >= DPD_TRIES {
                        dead.push(*spi);
                        continue;
                    }
                    *tries += 1;
                    *next = now + retry;
                    actions.push(Action::Send {
                        local: sa.local,
                        remote: sa.remote,
                        packet: packet.clone(),
                    });
                }
                _ => {}
            }
        }
        for spi in dead {
            if let Some(sa) = self.sas.remove(&spi) {
                tracing::info!(peer = %sa.remote, tries = DPD_TRIES, "DPD: the peer did not answer; deleting its SA");
                actions.extend(self.teardown(&sa, "DPD: peer not responding", pools));
            }
        }
        actions
    }

    /// The peer answered our liveness check.
    fn probe_answered(
        &mut self,
        now: Instant,
        datagram: &[u8],
        message: &Message,
    ) -> Result<Vec<Action>, Dropped> {
        let header = &message.header;
        let sa = self
            .sas
            .get_mut(&header.spi_r)
            .filter(|sa| sa.spi_i == header.spi_i)
            .ok_or(Dropped::UnknownSpi)?;
        if header.exchange != ExchangeType::Informational
            || sa
                .probe
                .as_ref()
                .is_none_or(|(id, ..)| *id != header.message_id)
        {
            return Err(Dropped::NotARequest);
        }
        let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
            return Err(Dropped::Malformed);
        };
        let aad = &datagram[..datagram.len() - sk.body.len()];
        sa.rx.open(aad, &sk.body).map_err(|_| Dropped::Integrity)?;
        sa.probe = None;
        sa.last_heard = now;
        Ok(Vec::new())
    }

    /// The datapath saw ESP from the peer of IKE SA `spi_r`: it is alive,
    /// no liveness check is needed (IOS `on-demand`, strongSwan `dpd_delay`).
    pub fn note_alive(&mut self, spi_r: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi_r) {
            sa.last_heard = now;
        }
    }

    /// The datapath saw us send ESP to the peer of IKE SA `spi_r` (for
    /// `on-demand` dead peer detection).
    pub fn note_sending(&mut self, spi_r: u64, now: Instant) {
        if let Some(sa) = self.sas.get_mut(&spi_r) {
            sa.last_sent = Some(now);
        }
    }

    /// Rows for `show crypto ikev2 sa`.
    pub fn report(&self, now: Instant) -> Vec<SaReport> {
        let mut rows: Vec<SaReport> = self.sas.values().map(|sa| sa.report(now)).collect();
        rows.sort_by_key(|r| r.tunnel_id);
        rows
    }

    /// Tears down every SA (hub shutting down): DELETE to each peer.
    pub fn shutdown(&mut self, pools: &mut dyn AddressPools) -> Vec<Action> {
        let spis: Vec<u64> = self.sas.keys().copied().collect();
        let mut actions = Vec::new();
        for spi in spis {
            actions.extend(self.delete(spi, "hub shutting down", pools));
        }
        actions
    }

    /// Deletes one IKE SA (ours as responder, `spi_r`) with its CHILD_SAs:
    /// a DELETE to the peer (RFC 7296 section 1.4.1), sent once without
    /// waiting for the answer, and the local teardown. Used when the SA is
    /// no longer wanted (an idle NHRP shortcut, `clear ip nhrp`).
    pub fn delete(
        &mut self,
        spi_r: u64,
        reason: &str,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        let Some(mut sa) = self.sas.remove(&spi_r) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if sa.state == SaState::Ready {
            let delete = Payload::Delete(Delete {
                protocol: ProtocolId::Ike,
                spi_size: 0,
                spis: vec![],
            });
            let id = sa.next_request_id;
            sa.next_request_id += 1;
            let packet = seal(
                &mut *self.rng,
                &sa,
                ExchangeType::Informational,
                id,
                false,
                &[delete],
            );
            actions.push(Action::Send {
                local: sa.local,
                remote: sa.remote,
                packet,
            });
        }
        actions.extend(self.teardown(&sa, reason, pools));
        actions
    }

    fn new_spi(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && !self.sas.contains_key(&spi) {
                return spi;
            }
        }
    }

    fn new_child_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let spi = u32::from_be_bytes(b);
            // SPIs 1-255 are reserved by IANA (RFC 4303 section 2.1).
            if spi > 255 && self.child_spis.insert(spi) {
                return spi;
            }
        }
    }

    // ----- IKE_SA_INIT (RFC 7296 section 1.2) -----

    #[allow(
        clippy::too_many_lines,
        reason = "reads top to bottom like RFC 7296 section 1.2"
    )]
    fn sa_init(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        datagram: &[u8],
        message: &Message,
    ) -> Vec<Action> {
        let header = &message.header;
        if header.message_id != 0 || header.spi_r != 0 {
            return vec![];
        }
        // A retransmission: the same answer again.
        if let Some(sa) = self
            .by_initiator
            .get(&(remote, header.spi_i))
            .and_then(|spi| self.sas.get(spi))
        {
            if sa.init_request == datagram {
                return vec![Action::Send {
                    local,
                    remote,
                    packet: sa.init_response.clone(),
                }];
            }
            return vec![];
        }
        let refuse = |kind: NotifyType, data: Vec<u8>, reason: String| {
            let reply = Message {
                header: response_header(header.spi_i, 0, ExchangeType::IkeSaInit, 0),
                // No SPI: Protocol ID zero (RFC 7296 section 3.10).
                payloads: vec![notify(kind, data)],
            };
            vec![
                Action::Send {
                    local,
                    remote,
                    packet: reply.emit(),
                },
                Action::Refused {
                    peer: remote,
                    reason,
                },
            ]
        };
        if let Some(kind) = message.unsupported_critical() {
            return refuse(
                NotifyType::UnsupportedCriticalPayload,
                vec![kind],
                format!("IKE_SA_INIT with unsupported critical payload {kind}"),
            );
        }
        let mut proposals = None;
        let mut ke = None;
        let mut ni = None;
        let mut nat_src = Vec::new();
        let mut nat_dst = None;
        for p in &message.payloads {
            match p {
                Payload::Sa(list) => proposals = Some(list),
                Payload::Ke(k) => ke = Some(k),
                Payload::Nonce(n) => ni = Some(n),
                Payload::Notify(n) if n.kind == NotifyType::NatDetectionSourceIp => {
                    nat_src.push(n.data.clone());
                }
                Payload::Notify(n) if n.kind == NotifyType::NatDetectionDestinationIp => {
                    nat_dst = Some(n.data.clone());
                }
                _ => {}
            }
        }
        let (Some(proposals), Some(ke), Some(ni)) = (proposals, ke, ni) else {
            return refuse(
                NotifyType::InvalidSyntax,
                vec![],
                "IKE_SA_INIT without SA, KE or nonce".into(),
            );
        };
        if !(16..=256).contains(&ni.len()) {
            return refuse(
                NotifyType::InvalidSyntax,
                vec![],
                format!("nonce of {} bytes", ni.len()),
            );
        }
        let Some((choice, number)) =
            proposal::choose_ike(&self.policy.ike_proposals, proposals, Some(ke.group))
        else {
            return refuse(
                NotifyType::NoProposalChosen,
                vec![],
                format!(
                    "no acceptable IKE proposal; peer offered {}",
                    proposal::describe_offer(proposals)
                ),
            );
        };
        if ke.group != choice.dh.iana() {
            // RFC 7296 section 1.2: tell the initiator which group to use.
            return refuse(
                NotifyType::InvalidKePayload,
                choice.dh.iana().to_be_bytes().to_vec(),
                format!(
                    "KE for DH group {} but group {} chosen; asked for a new KE",
                    ke.group,
                    choice.dh.iana()
                ),
            );
        }
        let dh = match choice.dh.generate(&mut *self.rng) {
            Ok(dh) => dh,
            Err(e) => {
                return refuse(
                    NotifyType::NoProposalChosen,
                    vec![],
                    format!("DH key generation failed: {e}"),
                );
            }
        };
        let shared = match dh.shared_secret(&ke.data) {
            Ok(s) => s,
            Err(e) => {
                return refuse(
                    NotifyType::InvalidSyntax,
                    vec![],
                    format!("peer's KE is not valid: {e}"),
                );
            }
        };
        let spi_r = self.new_spi();
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr);

        // NAT detection: compare the peer's hashes with what we see.
        let peer_natted = !nat_src.is_empty()
            && !nat_src
                .iter()
                .any(|h| *h == nat_hash(header.spi_i, 0, remote));
        let we_natted = nat_dst
            .as_ref()
            .is_some_and(|h| *h != nat_hash(header.spi_i, 0, local));
        // Forcing takes a peer that does NAT-T at all (it sent both
        // notifies), as strongSwan's COND_NAT_FAKE does: one that does not
        // would never float to 4500 nor encapsulate.
        let peer_does_natt = !nat_src.is_empty() && nat_dst.is_some();
        let forced = self.forced_encapsulation && peer_does_natt;
        if self.forced_encapsulation && !peer_does_natt {
            tracing::warn!(peer = %remote, "UDP encapsulation is forced but the peer sent no NAT_DETECTION notifies (no NAT-T): its ESP will not be in UDP");
        }
        let nat = peer_natted || we_natted || forced;
        let frag = message
            .notify(NotifyType::Ikev2FragmentationSupported)
            .is_some();

        let keys = IkeKeys::derive(
            choice.prf,
            choice.encr,
            choice.integ,
            ni,
            &nr,
            &shared,
            header.spi_i,
            spi_r,
        );
        let (rx, tx) = match (
            SkCipher::new(
                choice.encr,
                choice.integ,
                &keys.sk_ei,
                choice.integ.map(|_| keys.sk_ai.as_slice()),
            ),
            SkCipher::new(
                choice.encr,
                choice.integ,
                &keys.sk_er,
                choice.integ.map(|_| keys.sk_ar.as_slice()),
            ),
        ) {
            (Ok(rx), Ok(tx)) => (rx, tx),
            (Err(e), _) | (_, Err(e)) => {
                return refuse(
                    NotifyType::NoProposalChosen,
                    vec![],
                    format!("cipher setup failed: {e}"),
                );
            }
        };
        if let Some(keylog) = &mut self.keylog {
            keylog.record(header.spi_i, spi_r, &choice, &keys);
        }

        let mut payloads = vec![
            Payload::Sa(vec![choice.to_proposal(number)]),
            Payload::Ke(KeyExchange {
                group: choice.dh.iana(),
                data: dh.public_key().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
            notify(
                NotifyType::NatDetectionSourceIp,
                if self.forced_encapsulation {
                    fake_nat_hash(&mut *self.rng)
                } else {
                    nat_hash(header.spi_i, spi_r, local)
                },
            ),
            notify(
                NotifyType::NatDetectionDestinationIp,
                nat_hash(header.spi_i, spi_r, remote),
            ),
        ];
        if frag {
            payloads.push(notify(NotifyType::Ikev2FragmentationSupported, vec![]));
        }
        let reply = Message {
            header: response_header(header.spi_i, spi_r, ExchangeType::IkeSaInit, 0),
            payloads,
        };
        let packet = reply.emit();
        let tunnel_id = self.next_tunnel_id;
        self.next_tunnel_id = self.next_tunnel_id.wrapping_add(1).max(1);
        self.sas.insert(
            spi_r,
            IkeSa {
                tunnel_id,
                spi_i: header.spi_i,
                spi_r,
                local,
                remote,
                state: SaState::HalfOpen,
                choice,
                keys,
                rx,
                tx,
                ni: ni.clone(),
                nr,
                init_request: datagram.to_vec(),
                init_response: packet.clone(),
                nat,
                next_request_id: 0,
                last_response: None,
                last_heard: now,
                dpd: None,
                dpd_on_demand: true,
                last_sent: None,
                probe: None,
                created: now,
                established: None,
                identity: None,
                profile: None,
                auth_remote: None,
                auth_local: None,
                lease: None,
                children: Vec::new(),
                fragments: Reassembly::default(),
            },
        );
        self.by_initiator.insert((remote, header.spi_i), spi_r);
        tracing::debug!(peer = %remote, %choice, nat, forced, "IKE_SA_INIT answered");
        vec![Action::Send {
            local,
            remote,
            packet,
        }]
    }

    // ----- encrypted exchanges -----

    fn protected(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        datagram: &[u8],
        message: &Message,
        pools: &mut dyn AddressPools,
    ) -> Result<Vec<Action>, Dropped> {
        let header = &message.header;
        let Some(sa) = self.sas.get_mut(&header.spi_r) else {
            return Err(Dropped::UnknownSpi);
        };
        if sa.spi_i != header.spi_i {
            return Err(Dropped::UnknownSpi);
        }
        // Window of one: the next request, or the last one again.
        if let Some((id, packet)) = &sa.last_response
            && header.message_id == *id
        {
            // A retransmitted fragmented request is answered once, on its
            // first fragment (RFC 7383 section 2.6.1).
            if matches!(message.payloads.last(), Some(Payload::EncryptedFragment(f)) if f.number != 1)
            {
                return Ok(Vec::new());
            }
            return Ok(vec![Action::Send {
                local,
                remote,
                packet: packet.clone(),
            }]);
        }
        let expected = sa.last_response.as_ref().map_or(1, |(id, _)| id + 1);
        if header.message_id != expected {
            return Err(Dropped::BadMessageId);
        }
        let Some((first_inner, plaintext)) = open_request(sa, message, datagram)? else {
            // A fragment: the rest of the message is still to come.
            return Ok(Vec::new());
        };
        let inner =
            wire::parse_payloads(first_inner, &plaintext).map_err(|_| Dropped::Malformed)?;
        sa.last_heard = now;
        // The peer may float to 4500 (RFC 7296 section 2.23).
        sa.local = local;
        sa.remote = remote;
        let id = header.message_id;
        // RFC 7296 section 2.5: an unknown payload marked critical rejects
        // the whole request (and an IKE_AUTH with it, the SA).
        let critical = inner.iter().find_map(|p| match p {
            Payload::Unknown {
                kind,
                critical: true,
                ..
            } => Some(*kind),
            _ => None,
        });
        let (exchange, mut actions, reply, delete_sa) = match (header.exchange, sa.state, critical)
        {
            (exchange, state, Some(kind)) => {
                let refused = Action::Refused {
                    peer: remote,
                    reason: format!("unsupported critical payload {kind}"),
                };
                let reply = vec![notify(NotifyType::UnsupportedCriticalPayload, vec![kind])];
                (exchange, vec![refused], reply, state == SaState::HalfOpen)
            }
            (ExchangeType::IkeAuth, SaState::HalfOpen, None) => {
                let (reply, actions, ok) = self.ike_auth(now, header.spi_r, &inner, pools);
                (ExchangeType::IkeAuth, actions, reply, !ok)
            }
            (ExchangeType::Informational, SaState::Ready, None) => {
                let (reply, actions, delete) = self.informational(header.spi_r, &inner);
                (ExchangeType::Informational, actions, reply, delete)
            }
            (ExchangeType::CreateChildSa, SaState::Ready, None) => {
                // Rekeying and extra CHILD_SAs come with a later issue.
                (
                    ExchangeType::CreateChildSa,
                    vec![],
                    vec![notify(NotifyType::NoAdditionalSas, vec![])],
                    false,
                )
            }
            _ => return Err(Dropped::BadMessageId),
        };
        let sa = self.sas.get_mut(&header.spi_r).expect("checked above");
        let packet = seal(&mut *self.rng, sa, exchange, id, true, &reply);
        sa.last_response = Some((id, packet.clone()));
        actions.insert(
            0,
            Action::Send {
                local,
                remote,
                packet,
            },
        );
        if delete_sa && let Some(sa) = self.sas.remove(&header.spi_r) {
            let reason = if exchange == ExchangeType::IkeAuth {
                "IKE_AUTH failed"
            } else {
                "deleted by peer"
            };
            actions.extend(self.teardown(&sa, reason, pools));
        }
        Ok(actions)
    }

    /// Removes an SA's children, releases its address, reports it down.
    fn teardown(&mut self, sa: &IkeSa, reason: &str, pools: &mut dyn AddressPools) -> Vec<Action> {
        self.by_initiator.remove(&(sa.remote, sa.spi_i));
        for child in &sa.children {
            self.child_spis.remove(&child.params.spi_in);
        }
        // The reverse of the setup (SessionUp, then each ChildUp): the
        // children go first, last one first, then the session.
        let mut actions: Vec<Action> = sa
            .children
            .iter()
            .rev()
            .map(|c| Action::ChildDown {
                ike_spi: sa.spi_r,
                spi_in: c.params.spi_in,
                spi_out: c.params.spi_out,
            })
            .collect();
        if let Some((pool, address)) = &sa.lease {
            pools.release(pool, *address);
        }
        if sa.state == SaState::Ready {
            actions.push(Action::SessionDown {
                tunnel_id: sa.tunnel_id,
                peer: sa.remote,
                identity: sa.identity.as_ref().map(ToString::to_string),
                reason: reason.to_owned(),
            });
        }
        actions
    }

    // ----- IKE_AUTH (RFC 7296 sections 1.2, 2.15, 2.19, 3.15) -----

    /// Returns the reply payloads, the actions, and whether the SA lives on.
    #[allow(
        clippy::too_many_lines,
        reason = "reads top to bottom like RFC 7296 sections 1.2 and 2.15"
    )]
    fn ike_auth(
        &mut self,
        now: Instant,
        spi: u64,
        inner: &[Payload],
        pools: &mut dyn AddressPools,
    ) -> (Vec<Payload>, Vec<Action>, bool) {
        let sa = self.sas.get(&spi).expect("caller checked");
        let remote = sa.remote;
        let fail = |kind: NotifyType, reason: String| {
            (
                vec![notify(kind, vec![])],
                vec![Action::Refused {
                    peer: remote,
                    reason,
                }],
                false,
            )
        };
        let mut id_i = None;
        let mut auth = None;
        let mut cp_request = None;
        let mut sa_proposals = None;
        let mut ts_i = None;
        let mut ts_r = None;
        let mut transport = false;
        for p in inner {
            match p {
                Payload::IdI(id) => id_i = Some(id),
                Payload::Auth(a) => auth = Some(a),
                Payload::Cp(cp) if cp.cfg_type == CfgType::Request => cp_request = Some(cp),
                Payload::Sa(list) => sa_proposals = Some(list),
                Payload::TsI(ts) => ts_i = Some(ts),
                Payload::TsR(ts) => ts_r = Some(ts),
                Payload::Notify(n) if n.kind == NotifyType::UseTransportMode => transport = true,
                _ => {}
            }
        }
        let (Some(id_i), Some(auth)) = (id_i, auth) else {
            return fail(
                NotifyType::InvalidSyntax,
                "IKE_AUTH without IDi or AUTH (EAP is not supported)".into(),
            );
        };
        let Some(identity) = identity_of(id_i) else {
            return fail(
                NotifyType::AuthenticationFailed,
                format!("unsupported identity type {:?}", id_i.id_type),
            );
        };
        let Some(profile) = self.policy.profile_for(&identity).cloned() else {
            return fail(
                NotifyType::AuthenticationFailed,
                format!("identity {identity} matches no IKEv2 profile"),
            );
        };
        // PSK authentication (certificates come with a later issue).
        if profile.auth_remote != AuthMethod::PreShare || auth.method != WireAuth::SharedKeyMic {
            return fail(
                NotifyType::AuthenticationFailed,
                format!(
                    "identity {identity}: profile {} expects {:?}, peer used {:?}",
                    profile.name, profile.auth_remote, auth.method
                ),
            );
        }
        let Some(entry) = profile.keyring_entry(&identity, *remote.ip()) else {
            return fail(
                NotifyType::AuthenticationFailed,
                format!(
                    "identity {identity}: no keyring peer in profile {}",
                    profile.name
                ),
            );
        };
        let (Some(psk_remote), Some(psk_local)) =
            (entry.psk_remote.clone(), entry.psk_local.clone())
        else {
            return fail(
                NotifyType::AuthenticationFailed,
                format!("keyring peer {} has no pre-shared key", entry.name),
            );
        };
        let octets = crypto::signed_octets(
            &sa.init_request,
            &sa.nr,
            sa.choice.prf,
            &sa.keys.sk_pi,
            &id_i.body_bytes(),
        );
        if !crypto::psk_auth_verify(sa.choice.prf, &psk_remote, &octets, &auth.data) {
            return fail(
                NotifyType::AuthenticationFailed,
                format!(
                    "identity {identity}: pre-shared key does not match (keyring peer {})",
                    entry.name
                ),
            );
        }

        // Our side of AUTH.
        let id_r = identification_of(&profile.local_identity);
        let our_octets = crypto::signed_octets(
            &sa.init_response,
            &sa.ni,
            sa.choice.prf,
            &sa.keys.sk_pr,
            &id_r.body_bytes(),
        );
        let our_auth = crypto::psk_auth(sa.choice.prf, &psk_local, &our_octets);
        let mut reply = vec![
            Payload::IdR(id_r),
            Payload::Auth(Auth {
                method: WireAuth::SharedKeyMic,
                data: our_auth,
            }),
        ];
        let mut actions = Vec::new();

        // Configuration payload: an address from the profile's pool, and
        // the prefixes behind the peer (`route accept any`).
        let mut lease = None;
        let mut wants_address = false;
        let mut peer_routes = Vec::new();
        if let Some(cp) = cp_request {
            peer_routes =
                accepted_routes(&profile, *sa.local.ip(), remote, &identity, &cp.attributes);
            wants_address = cp
                .attributes
                .iter()
                .any(|a| a.kind == ConfigAttributeType::InternalIp4Address);
            if wants_address {
                let acquired = match &profile.pool {
                    Some(pool) => pools
                        .acquire(pool, &identity.to_string())
                        .map(|address| (pool.clone(), address))
                        .map_err(|e| {
                            format!("identity {identity}: no address from pool {pool}: {e}")
                        }),
                    None => Err(format!(
                        "identity {identity} asked for an address; profile {} has no pool",
                        profile.name
                    )),
                };
                if let Ok((_, address)) = &acquired {
                    let mut attributes = vec![ConfigAttribute {
                        kind: ConfigAttributeType::InternalIp4Address,
                        value: address.octets().to_vec(),
                    }];
                    // RFC 7296 section 3.15.1: address then netmask, 8 octets.
                    attributes.extend(profile.route_set.iter().map(|prefix| ConfigAttribute {
                        kind: ConfigAttributeType::InternalIp4Subnet,
                        value: [prefix.addr.octets(), prefix.netmask().octets()].concat(),
                    }));
                    reply.push(Payload::Cp(CpPayload {
                        cfg_type: CfgType::Reply,
                        attributes,
                    }));
                }
                match acquired {
                    Ok(l) => lease = Some(l),
                    Err(reason) => {
                        actions.push(Action::Refused {
                            peer: remote,
                            reason,
                        });
                        reply.push(notify(NotifyType::InternalAddressFailure, vec![]));
                    }
                }
            }
        }
        // A CFG_REQUEST with only subnets in it asks for no address.
        let address_failed = wants_address && lease.is_none();

        // The CHILD_SA created with IKE_AUTH (RFC 7296 section 1.2).
        let mut child = None;
        if let (Some(proposals), Some(ts_i), Some(ts_r), false) =
            (sa_proposals, ts_i, ts_r, address_failed)
        {
            match proposal::choose_esp(&profile.esp_proposals, proposals) {
                None => {
                    actions.push(Action::Refused {
                        peer: remote,
                        reason: format!(
                            "identity {identity}: no acceptable ESP proposal; peer offered {}",
                            proposal::describe_offer(proposals)
                        ),
                    });
                    reply.push(notify(NotifyType::NoProposalChosen, vec![]));
                }
                Some((esp, number, spi_out)) => {
                    match narrow(
                        ts_i,
                        ts_r,
                        transport,
                        *sa.remote.ip(),
                        *sa.local.ip(),
                        lease.as_ref().map(|l| l.1),
                    ) {
                        None => {
                            actions.push(Action::Refused {
                                peer: remote,
                                reason: format!(
                                    "identity {identity}: traffic selectors not acceptable"
                                ),
                            });
                            reply.push(notify(NotifyType::TsUnacceptable, vec![]));
                        }
                        Some((mode, tsi, tsr)) => {
                            child = Some((esp, number, spi_out, mode, tsi, tsr));
                        }
                    }
                }
            }
        }

        let spi_in = if child.is_some() {
            self.new_child_spi()
        } else {
            0
        };
        let sa = self.sas.get_mut(&spi).expect("caller checked");
        if let Some((esp, number, spi_out, mode, tsi, tsr)) = child {
            let len = ChildKeys::keymat_len(esp.encr, esp.integ);
            let keymat =
                crypto::child_keymat(sa.choice.prf, &sa.keys.sk_d, &sa.ni, &sa.nr, None, len);
            let Ok(keys) = ChildKeys::split(&keymat, esp.encr, esp.integ) else {
                unreachable!("KEYMAT is derived at exactly the length the split needs")
            };
            if mode == Mode::Transport {
                reply.push(notify(NotifyType::UseTransportMode, vec![]));
            }
            reply.push(Payload::Sa(vec![esp.to_proposal(number, spi_in)]));
            reply.push(Payload::TsI(tsi.clone()));
            reply.push(Payload::TsR(tsr.clone()));
            // ESP in UDP (RFC 3948) from our 4500 to wherever the peer's
            // IKE now comes from: its 4500, or what a NAT made of it.
            let encap =
                (sa.nat || sa.local.port() == NATT_PORT).then(|| (NATT_PORT, sa.remote.port()));
            let params = ChildSaParams {
                ike_spi: spi,
                tunnel_id: sa.tunnel_id,
                profile: profile.name.clone(),
                virtual_template: profile.virtual_template,
                peer_inner: lease.as_ref().map(|l| l.1),
                peer_routes,
                spi_in,
                spi_out,
                mode,
                encap,
                local: *sa.local.ip(),
                remote: *sa.remote.ip(),
                esp,
                keys,
                ts_local: tsr,
                ts_remote: tsi,
            };
            if let Some(keylog) = &mut self.keylog {
                keylog.record_child(&params);
            }
            actions.push(Action::ChildUp(params.clone()));
            sa.children.push(ChildSa { params });
        }
        sa.state = SaState::Ready;
        sa.established = Some(now);
        sa.identity = Some(identity.clone());
        sa.profile = Some(profile.name.clone());
        sa.dpd_on_demand = profile.dpd_on_demand;
        sa.dpd = profile.dpd.map(|(interval, retry)| {
            (
                Duration::from_secs(u64::from(interval)),
                Duration::from_secs(u64::from(retry)),
            )
        });
        sa.auth_remote = Some(profile.auth_remote);
        sa.auth_local = Some(profile.auth_local);
        sa.lease.clone_from(&lease);
        sa.next_request_id = 0;
        actions.insert(
            0,
            Action::SessionUp {
                tunnel_id: sa.tunnel_id,
                peer: sa.remote,
                identity: identity.to_string(),
                profile: profile.name.clone(),
                address: lease.map(|l| l.1),
            },
        );
        (reply, actions, true)
    }

    // ----- INFORMATIONAL (RFC 7296 section 1.4) -----

    fn informational(&mut self, spi: u64, inner: &[Payload]) -> (Vec<Payload>, Vec<Action>, bool) {
        let sa = self.sas.get_mut(&spi).expect("caller checked");
        let mut reply = Vec::new();
        let mut actions = Vec::new();
        for p in inner {
            let Payload::Delete(d) = p else { continue };
            match d.protocol {
                // Deleting the IKE SA deletes its children too (section 1.4.1).
                ProtocolId::Ike => return (vec![], actions, true),
                ProtocolId::Esp | ProtocolId::Ah => {
                    let mut ours = Vec::new();
                    for peer_spi in &d.spis {
                        let Ok(bytes) = <[u8; 4]>::try_from(peer_spi.as_slice()) else {
                            continue;
                        };
                        let spi_out = u32::from_be_bytes(bytes);
                        if let Some(pos) =
                            sa.children.iter().position(|c| c.params.spi_out == spi_out)
                        {
                            let child = sa.children.remove(pos);
                            self.child_spis.remove(&child.params.spi_in);
                            ours.push(child.params.spi_in.to_be_bytes().to_vec());
                            actions.push(Action::ChildDown {
                                ike_spi: spi,
                                spi_in: child.params.spi_in,
                                spi_out,
                            });
                        }
                    }
                    if !ours.is_empty() {
                        reply.push(Payload::Delete(Delete {
                            protocol: d.protocol,
                            spi_size: 4,
                            spis: ours,
                        }));
                    }
                }
                ProtocolId::None | ProtocolId::Unknown(_) => {}
            }
        }
        // An empty request is a liveness check (DPD): the empty reply is the answer.
        (reply, actions, false)
    }
}

impl IkeSa {
    fn report(&self, now: Instant) -> SaReport {
        let hex = |v: u64| format!("{v:016x}");
        SaReport {
            tunnel_id: self.tunnel_id,
            local: format!("{}/{}", self.local.ip(), self.local.port()),
            remote: format!("{}/{}", self.remote.ip(), self.remote.port()),
            status: match self.state {
                SaState::HalfOpen => "IN-NEG".into(),
                SaState::Ready => "READY".into(),
            },
            encryption: self.choice.encr.to_string(),
            prf: prf_name(self.choice.prf).to_owned(),
            hash: self.choice.integ.map(|i| integ_name(i).to_owned()),
            dh_group: self.choice.dh.iana(),
            auth_sign: self.auth_local.map(|a| a.as_str().to_owned()),
            auth_verify: self.auth_remote.map(|a| a.as_str().to_owned()),
            lifetime_s: IKE_LIFETIME_S,
            active_time_s: self
                .established
                .map_or(0, |t| now.duration_since(t).as_secs()),
            spi_i: hex(self.spi_i),
            spi_r: hex(self.spi_r),
            identity: self.identity.as_ref().map(ToString::to_string),
            profile: self.profile.clone(),
            assigned_address: self.lease.as_ref().map(|l| l.1),
            nat_t: self.nat,
            children: self
                .children
                .iter()
                .map(|c| ChildReport {
                    spi_in: format!("{:#010x}", c.params.spi_in),
                    spi_out: format!("{:#010x}", c.params.spi_out),
                    mode: c.params.mode,
                    encryption: c.params.esp.encr.to_string(),
                    integrity: c.params.esp.integ.map(|i| integ_name(i).to_owned()),
                    local_ts: c.params.ts_local.iter().map(describe_ts).collect(),
                    remote_ts: c.params.ts_remote.iter().map(describe_ts).collect(),
                })
                .collect(),
        }
    }
}

/// IOS spells algorithms `SHA256`, `SHA96` ... in `show crypto ikev2 sa`.
fn prf_name(prf: crypto::Prf) -> &'static str {
    match prf {
        crypto::Prf::HmacSha1 => "SHA1",
        crypto::Prf::HmacSha256 => "SHA256",
        crypto::Prf::HmacSha384 => "SHA384",
        crypto::Prf::HmacSha512 => "SHA512",
    }
}

fn integ_name(integ: crate::ipsec::Integ) -> &'static str {
    match integ {
        crate::ipsec::Integ::HmacSha1_96 => "SHA96",
        crate::ipsec::Integ::HmacSha256_128 => "SHA256",
        crate::ipsec::Integ::HmacSha384_192 => "SHA384",
        crate::ipsec::Integ::HmacSha512_256 => "SHA512",
    }
}

fn describe_ts(ts: &TrafficSelector) -> String {
    match ts.as_ipv4() {
        Some((a, b)) if a == b => format!("{a}/32 proto {}", ts.ip_protocol),
        Some((a, b)) => format!("{a}-{b} proto {}", ts.ip_protocol),
        None => format!("{:?}", ts.ts_type),
    }
}

/// Decrypts a request's SK payload, or adds an SKF fragment to the SA's
/// reassembly (RFC 7383 section 2.6: each fragment is protected on its own;
/// the message is whole when every fragment has arrived). `None`: waiting
/// for more fragments.
fn open_request(
    sa: &mut IkeSa,
    message: &Message,
    datagram: &[u8],
) -> Result<Option<(PayloadType, Vec<u8>)>, Dropped> {
    match message.payloads.last() {
        Some(Payload::Encrypted(sk)) => {
            let aad = &datagram[..datagram.len() - sk.body.len()];
            let plaintext = sa.rx.open(aad, &sk.body).map_err(|_| Dropped::Integrity)?;
            Ok(Some((sk.first_inner, plaintext)))
        }
        Some(Payload::EncryptedFragment(f)) => {
            let aad = &datagram[..datagram.len() - f.body.len()];
            let part = sa.rx.open(aad, &f.body).map_err(|_| Dropped::Integrity)?;
            Ok(sa.fragments.add(message.header.message_id, f, part))
        }
        _ => Err(Dropped::Malformed),
    }
}

/// An INTERNAL_IP4_SUBNET value as a prefix: address then netmask, 8
/// octets (RFC 7296 section 3.15.1); the netmask must be contiguous and the
/// address must have no bits beyond it.
pub(crate) fn subnet_attribute(value: &[u8]) -> Result<Ipv4Prefix, String> {
    let Ok(v) = <[u8; 8]>::try_from(value) else {
        return Err(format!("{} octets instead of 8", value.len()));
    };
    let addr = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
    let mask = Ipv4Addr::new(v[4], v[5], v[6], v[7]);
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    if bits.checked_shl(len).unwrap_or(0) != 0 {
        return Err(format!("{addr} mask {mask}: the netmask is not contiguous"));
    }
    let len = u8::try_from(len).expect("at most 32");
    Ipv4Prefix::new(addr, len)
        .ok_or_else(|| format!("{addr}/{len} has host bits set (the address is not the network's)"))
}

/// The prefixes of a CFG_REQUEST's INTERNAL_IP4_SUBNETs that the profile's
/// `route_accept` (IOS `route accept any`) installs via the peer's
/// virtual-access; each one left out gets a log line saying why:
///
/// - a zero-length value asks us for our subnets (RFC 7296 section 3.15.1
///   lets a request leave values empty); it is not a route, and is
///   skipped without a log line;
/// - a value that is not 8 octets, a netmask with holes, or an address with
///   host bits set: refused, not repaired. Whether `10.1.1.1/24` means the
///   host or its network is a guess, and a hub routing for thousands of
///   spokes should not install guesses;
/// - 0.0.0.0/0: refused. One spoke would take every destination the hub has
///   no better route for (the other spokes' LANs while their sessions are
///   down, the Internet); a default route via a spoke is for a static
///   route, not for what a peer claims;
/// - a prefix overlapping the profile's pool: refused. Those addresses are
///   the spokes' own tunnel addresses, each routed /32 via its spoke's
///   virtual-access (and what `bgp listen range` accepts sessions from);
///   one spoke claiming them would catch the traffic of spokes not up yet;
/// - a prefix holding the hub's tunnel source or the peer's outer address:
///   refused, it would route the tunnel's own ESP into the tunnel;
/// - duplicates are dropped, and at most `MAX_PEER_ROUTES` are taken.
fn accepted_routes(
    profile: &ProfilePolicy,
    hub: Ipv4Addr,
    peer: SocketAddrV4,
    identity: &Identity,
    attributes: &[ConfigAttribute],
) -> Vec<Ipv4Prefix> {
    let subnets: Vec<&ConfigAttribute> = attributes
        .iter()
        .filter(|a| a.kind == ConfigAttributeType::InternalIp4Subnet && !a.value.is_empty())
        .collect();
    if subnets.is_empty() {
        return Vec::new();
    }
    if !profile.route_accept {
        tracing::debug!(%peer, %identity, profile = %profile.name, count = subnets.len(), "INTERNAL_IP4_SUBNET in the CFG_REQUEST ignored: the profile has no route_accept");
        return Vec::new();
    }
    let mut routes: Vec<Ipv4Prefix> = Vec::new();
    for attribute in subnets {
        let refused = match subnet_attribute(&attribute.value) {
            Err(why) => Err(why),
            Ok(prefix) if prefix.len == 0 => Err(format!("{prefix}: a default route")),
            Ok(prefix)
                if profile.pool_range.is_some_and(|(first, last)| {
                    let (a, b) = prefix.range();
                    a <= last && first <= b
                }) =>
            {
                Err(format!(
                    "{prefix} overlaps the pool of profile {}",
                    profile.name
                ))
            }
            Ok(prefix) if prefix.contains(hub) => {
                Err(format!("{prefix} holds the hub's tunnel source {hub}"))
            }
            Ok(prefix) if prefix.contains(*peer.ip()) => Err(format!(
                "{prefix} holds the peer's own outer address {}",
                peer.ip()
            )),
            Ok(prefix) if routes.contains(&prefix) => continue,
            Ok(_) if routes.len() >= MAX_PEER_ROUTES => {
                Err(format!("more than {MAX_PEER_ROUTES} prefixes"))
            }
            Ok(prefix) => Ok(prefix),
        };
        match refused {
            Ok(prefix) => routes.push(prefix),
            Err(why) => tracing::warn!(
                %peer, %identity, profile = %profile.name,
                "route accept: INTERNAL_IP4_SUBNET refused: {why}"
            ),
        }
    }
    if !routes.is_empty() {
        tracing::info!(%peer, %identity, profile = %profile.name, routes = ?routes.iter().map(ToString::to_string).collect::<Vec<_>>(), "route accept: prefixes from the peer's CFG_REQUEST");
    }
    routes
}

/// Chooses the mode and narrows the selectors (RFC 7296 section 2.9).
/// Transport mode when the peer asks for it and the selectors cover GRE
/// between the two outer addresses (an IOS spoke's Tunnel1, `CISCO-GRE-MODE`);
/// otherwise tunnel mode, with the peer's side narrowed to its pool address.
fn narrow(
    ts_i: &[TrafficSelector],
    ts_r: &[TrafficSelector],
    transport: bool,
    peer: Ipv4Addr,
    local: Ipv4Addr,
    lease: Option<Ipv4Addr>,
) -> Option<(Mode, Vec<TrafficSelector>, Vec<TrafficSelector>)> {
    let covers = |list: &[TrafficSelector], addr: Ipv4Addr, proto: u8| {
        list.iter().any(|t| {
            t.as_ipv4().is_some_and(|(a, b)| a <= addr && addr <= b)
                && (t.ip_protocol == 0 || t.ip_protocol == proto)
        })
    };
    if transport && covers(ts_i, peer, IPPROTO_GRE) && covers(ts_r, local, IPPROTO_GRE) {
        return Some((
            Mode::Transport,
            vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, peer, peer)],
            vec![TrafficSelector::ipv4(IPPROTO_GRE, 0..=65535, local, local)],
        ));
    }
    let first_v4 = |list: &[TrafficSelector]| list.iter().find(|t| t.as_ipv4().is_some()).cloned();
    let tsi = match lease {
        Some(address) => {
            if !covers(ts_i, address, 0)
                && !ts_i.iter().any(|t| {
                    t.as_ipv4()
                        .is_some_and(|(a, b)| a <= address && address <= b)
                })
            {
                return None;
            }
            TrafficSelector::ipv4(0, 0..=65535, address, address)
        }
        None => first_v4(ts_i)?,
    };
    let tsr: Vec<TrafficSelector> = ts_r
        .iter()
        .filter(|t| t.as_ipv4().is_some())
        .cloned()
        .collect();
    if tsr.is_empty() {
        return None;
    }
    Some((Mode::Tunnel, vec![tsi], tsr))
}

fn notify(kind: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify {
        protocol: ProtocolId::None,
        spi: vec![],
        kind,
        data,
    })
}

fn response_header(spi_i: u64, spi_r: u64, exchange: ExchangeType, message_id: u32) -> Header {
    Header {
        spi_i,
        spi_r,
        next_payload: PayloadType::None,
        major_version: 2,
        minor_version: 0,
        exchange,
        flags: HeaderFlags {
            initiator: false,
            response: true,
            version: false,
        },
        message_id,
        length: 0,
    }
}

fn seal(
    rng: &mut dyn Rng,
    sa: &IkeSa,
    exchange: ExchangeType,
    message_id: u32,
    response: bool,
    payloads: &[Payload],
) -> Vec<u8> {
    // The hub is the original responder of every SA it holds: I clear
    // (RFC 7296 section 3.1), R set on responses only.
    let flags = HeaderFlags {
        initiator: false,
        response,
        version: false,
    };
    seal_with(
        rng, &sa.tx, sa.spi_i, sa.spi_r, exchange, message_id, flags, payloads,
    )
}

/// Builds an encrypted message (RFC 7296 section 3.14): header and SK
/// header with their final lengths first, since they are authenticated.
/// `flags`: I for the original initiator of the SA, R for responses.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_with(
    rng: &mut dyn Rng,
    tx: &SkCipher,
    spi_i: u64,
    spi_r: u64,
    exchange: ExchangeType,
    message_id: u32,
    flags: HeaderFlags,
    payloads: &[Payload],
) -> Vec<u8> {
    let (first, plaintext) = wire::emit_payloads(payloads);
    let body_len = tx.sealed_len(plaintext.len());
    let total = wire::HEADER_LEN + 4 + body_len;
    let mut header = response_header(spi_i, spi_r, exchange, message_id);
    header.flags = flags;
    header.next_payload = PayloadType::Encrypted;
    header.length = u32::try_from(total).expect("IKE messages are far below 4 GiB");
    let mut packet = vec![0u8; wire::HEADER_LEN + 4];
    header.emit(&mut packet[..wire::HEADER_LEN]);
    packet[wire::HEADER_LEN] = u8::from(first);
    let sk_len = u16::try_from(4 + body_len).expect("SK payload below 64 KiB");
    packet[wire::HEADER_LEN + 2..wire::HEADER_LEN + 4].copy_from_slice(&sk_len.to_be_bytes());
    let body = tx.seal(&packet, &plaintext, rng);
    packet.extend_from_slice(&body);
    packet
}

/// Builds an encrypted message as SKF fragments of at most `fragment_len`
/// plaintext bytes each (RFC 7383 section 2.5): every fragment carries its
/// own header, SKF header and protection; only the first names the first
/// inner payload.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_fragments(
    rng: &mut dyn Rng,
    tx: &SkCipher,
    spi_i: u64,
    spi_r: u64,
    exchange: ExchangeType,
    message_id: u32,
    flags: HeaderFlags,
    payloads: &[Payload],
    fragment_len: usize,
) -> Vec<Vec<u8>> {
    const SKF_HEADER_LEN: usize = 8;
    let (first, plaintext) = wire::emit_payloads(payloads);
    let chunks: Vec<&[u8]> = plaintext.chunks(fragment_len.max(1)).collect();
    let total = u16::try_from(chunks.len()).expect("fragment count fits in 16 bits");
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let number = u16::try_from(i + 1).expect("fragment count fits in 16 bits");
            let body_len = tx.sealed_len(chunk.len());
            let mut header = response_header(spi_i, spi_r, exchange, message_id);
            header.flags = flags;
            header.next_payload = PayloadType::EncryptedFragment;
            header.length =
                u32::try_from(wire::HEADER_LEN + SKF_HEADER_LEN + body_len).expect("small");
            let mut packet = vec![0u8; wire::HEADER_LEN + SKF_HEADER_LEN];
            header.emit(&mut packet[..wire::HEADER_LEN]);
            packet[wire::HEADER_LEN] = if number == 1 { u8::from(first) } else { 0 };
            let skf_len = u16::try_from(SKF_HEADER_LEN + body_len).expect("fragment below 64 KiB");
            packet[wire::HEADER_LEN + 2..wire::HEADER_LEN + 4]
                .copy_from_slice(&skf_len.to_be_bytes());
            packet[wire::HEADER_LEN + 4..wire::HEADER_LEN + 6]
                .copy_from_slice(&number.to_be_bytes());
            packet[wire::HEADER_LEN + 6..wire::HEADER_LEN + 8]
                .copy_from_slice(&total.to_be_bytes());
            let body = tx.seal(&packet, chunk, rng);
            packet.extend_from_slice(&body);
            packet
        })
        .collect()
}

/// A NAT_DETECTION_SOURCE_IP that matches no address, to force UDP
/// encapsulation: SHA-1-sized random bytes, as strongSwan's `encap = yes`
/// sends (`generate_natd_hash_faked`). Random rather than the hash of
/// 0.0.0.0:0 because the point is to look like a real NAT to every peer:
/// a fixed fake is recognisable by anyone who computes it (and a peer that
/// special-cased it would defeat the forcing), while random bytes are what
/// any NAT's rewritten address hashes to, and cannot match a real endpoint
/// (one chance in 2^160).
pub(crate) fn fake_nat_hash(rng: &mut dyn Rng) -> Vec<u8> {
    let mut hash = vec![0u8; NAT_HASH_LEN];
    rng.fill(&mut hash);
    hash
}

/// RFC 7296 section 2.23: SHA-1(SPIi | SPIr | IP | port).
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddrV4) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + 8 + 4 + 2);
    data.extend_from_slice(&spi_i.to_be_bytes());
    data.extend_from_slice(&spi_r.to_be_bytes());
    data.extend_from_slice(&addr.ip().octets());
    data.extend_from_slice(&addr.port().to_be_bytes());
    crypto::sha1(&data)
}

pub(crate) fn identity_of(id: &Identification) -> Option<Identity> {
    let text = || String::from_utf8(id.data.clone()).ok();
    match id.id_type {
        IdType::Fqdn => text().map(Identity::Fqdn),
        IdType::Rfc822Addr => text().map(Identity::Email),
        IdType::KeyId => text().map(Identity::KeyId),
        IdType::Ipv4Addr => <[u8; 4]>::try_from(id.data.as_slice())
            .ok()
            .map(|o| Identity::Address(Ipv4Addr::from(o))),
        _ => None,
    }
}

pub(crate) fn identification_of(identity: &Identity) -> Identification {
    match identity {
        Identity::Fqdn(n) => Identification {
            id_type: IdType::Fqdn,
            data: n.as_bytes().to_vec(),
        },
        Identity::Email(e) => Identification {
            id_type: IdType::Rfc822Addr,
            data: e.as_bytes().to_vec(),
        },
        Identity::KeyId(k) => Identification {
            id_type: IdType::KeyId,
            data: k.as_bytes().to_vec(),
        },
        Identity::Address(a) => Identification {
            id_type: IdType::Ipv4Addr,
            data: a.octets().to_vec(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::{
        io::{self, Write},
        sync::{Arc, Mutex},
    };

    use super::*;
    use crate::{
        ike::{
            crypto::DhGroup,
            wire::{Proposal, Transform, TransformType},
        },
        ipsec::SystemRng,
    };

    const HUB: &str = include_str!("../../../examples/hub.toml");

    struct NoPools;

    impl AddressPools for NoPools {
        fn acquire(&mut self, _: &str, _: &str) -> Result<Ipv4Addr, String> {
            Err("no pools in this test".into())
        }
        fn release(&mut self, _: &str, _: Ipv4Addr) {}
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn engine() -> Engine {
        let config = crate::config::parse(HUB, "hub.toml").unwrap();
        Engine::new(Policy::from_config(&config).unwrap(), Box::new(SystemRng))
    }

    fn transform(kind: TransformType, id: u16, key_length: Option<u16>) -> Transform {
        Transform {
            kind,
            id,
            key_length,
            other_attributes: vec![],
        }
    }

    /// An IKE_SA_INIT request offering `encr_id` (AES-CBC-256 is 12) with
    /// SHA-256 and Curve25519, and a KE for `ke_group`.
    fn sa_init(spi_i: u64, encr_id: u16, ke_group: u16) -> Vec<u8> {
        let proposal = Proposal {
            number: 1,
            protocol: ProtocolId::Ike,
            spi: vec![],
            transforms: vec![
                transform(TransformType::Encr, encr_id, Some(256)),
                transform(TransformType::Prf, 5, None),
                transform(TransformType::Integ, 12, None),
                transform(TransformType::Dh, 31, None),
            ],
        };
        let ke = DhGroup::Curve25519.generate(&mut SystemRng).unwrap();
        Message {
            header: Header {
                spi_i,
                spi_r: 0,
                next_payload: PayloadType::None,
                major_version: 2,
                minor_version: 0,
                exchange: ExchangeType::IkeSaInit,
                flags: HeaderFlags {
                    initiator: true,
                    response: false,
                    version: false,
                },
                message_id: 0,
                length: 0,
            },
            payloads: vec![
                Payload::Sa(vec![proposal]),
                Payload::Ke(KeyExchange {
                    group: ke_group,
                    data: ke.public_key().to_vec(),
                }),
                Payload::Nonce(vec![7; 32]),
            ],
        }
        .emit()
    }

    fn only_send(actions: &[Action]) -> Message {
        let packets: Vec<&Vec<u8>> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { packet, .. } => Some(packet),
                _ => None,
            })
            .collect();
        assert_eq!(packets.len(), 1, "{actions:?}");
        Message::parse(packets[0]).unwrap()
    }

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            "192.0.2.1:500".parse().unwrap(),
            "198.51.100.7:500".parse().unwrap(),
        )
    }

    /// RFC 7296 section 3.10: a notify without SPI has Protocol ID 0 (tshark
    /// showed "Protocol ID: IKE (1)" with "SPI Size: 0" in these refusals).
    #[test]
    fn sa_init_refusals_carry_a_notify_with_protocol_id_zero() {
        let (local, remote) = addrs();
        let mut engine = engine();
        // 3DES (3) is not accepted: NO_PROPOSAL_CHOSEN.
        let actions = engine
            .handle(
                Instant::now(),
                local,
                remote,
                &sa_init(1, 3, 31),
                &mut NoPools,
            )
            .unwrap();
        let reply = only_send(&actions);
        let Payload::Notify(n) = &reply.payloads[0] else {
            panic!("{reply:?}")
        };
        assert_eq!(
            (n.kind, n.protocol, n.spi.len()),
            (NotifyType::NoProposalChosen, ProtocolId::None, 0)
        );
        // A KE for MODP-1024 (2) while Curve25519 is chosen: INVALID_KE_PAYLOAD.
        let actions = engine
            .handle(
                Instant::now(),
                local,
                remote,
                &sa_init(2, 12, 2),
                &mut NoPools,
            )
            .unwrap();
        let reply = only_send(&actions);
        let Payload::Notify(n) = &reply.payloads[0] else {
            panic!("{reply:?}")
        };
        assert_eq!(
            (n.kind, n.protocol, n.data.as_slice()),
            (NotifyType::InvalidKePayload, ProtocolId::None, &[0, 31][..])
        );
    }

    #[test]
    fn sa_init_writes_one_key_line_per_new_sa_when_the_key_log_is_on() {
        let (local, remote) = addrs();
        let out = Shared::default();
        let mut engine = engine().with_keylog(Some(KeyLog::to_writers(
            "mem",
            Box::new(out.clone()),
            Box::new(io::sink()),
        )));
        let request = sa_init(0x1111, 12, 31);
        let reply = only_send(
            &engine
                .handle(Instant::now(), local, remote, &request, &mut NoPools)
                .unwrap(),
        );
        // A retransmission gets the same answer and no second line.
        engine
            .handle(Instant::now(), local, remote, &request, &mut NoPools)
            .unwrap();
        // A refused one creates no SA and no line.
        engine
            .handle(
                Instant::now(),
                local,
                remote,
                &sa_init(0x2222, 3, 31),
                &mut NoPools,
            )
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let fields: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(fields.len(), 8, "{text}");
        assert_eq!(fields[0], "0000000000001111");
        assert_eq!(fields[1], format!("{:016x}", reply.header.spi_r));
        assert_eq!((fields[2].len(), fields[3].len()), (64, 64));
        assert_eq!(fields[4], "\"AES-CBC-256 [RFC3602]\"");
        assert_eq!((fields[5].len(), fields[6].len()), (64, 64));
        assert_eq!(fields[7], "\"HMAC_SHA2_256_128 [RFC4868]\"");
        let sa = &engine.sas[&reply.header.spi_r];
        assert_eq!(
            lines[0],
            crate::ike::keylog::uat_line(sa.spi_i, sa.spi_r, &sa.choice, &sa.keys)
        );
    }

    #[test]
    fn subnet_attributes_are_address_and_contiguous_mask() {
        let v = |a: [u8; 4], m: [u8; 4]| [a, m].concat();
        let ok = |value: &[u8]| subnet_attribute(value).unwrap().to_string();
        assert_eq!(
            ok(&v([192, 168, 1, 0], [255, 255, 255, 0])),
            "192.168.1.0/24"
        );
        assert_eq!(ok(&v([10, 0, 0, 1], [255; 4])), "10.0.0.1/32");
        assert_eq!(ok(&v([0; 4], [0; 4])), "0.0.0.0/0");
        let err = |value: &[u8]| subnet_attribute(value).unwrap_err();
        for len in [0, 1, 4, 7, 9, 17] {
            assert!(
                err(&vec![255; len]).contains("octets instead of 8"),
                "{len}"
            );
        }
        assert!(err(&v([10, 0, 0, 0], [255, 0, 255, 0])).contains("not contiguous"));
        assert!(err(&v([10, 0, 0, 0], [0, 0, 0, 255])).contains("not contiguous"));
        assert!(err(&v([10, 1, 1, 1], [255, 255, 255, 0])).contains("host bits"));
    }

    #[test]
    fn route_accept_takes_only_well_formed_safe_prefixes() {
        let attribute = |value: Vec<u8>| ConfigAttribute {
            kind: ConfigAttributeType::InternalIp4Subnet,
            value,
        };
        let subnet = |p: &str| {
            let p: Ipv4Prefix = p.parse().unwrap();
            attribute([p.addr.octets(), p.netmask().octets()].concat())
        };
        let mut profile = engine().policy.profiles[0].clone();
        assert_eq!(
            profile.pool_range,
            Some((Ipv4Addr::new(10, 1, 1, 100), Ipv4Addr::new(10, 1, 1, 254)))
        );
        let (hub, peer) = addrs();
        let id = Identity::Fqdn("spoke1.cisco.com".into());
        let mut attributes = vec![
            ConfigAttribute {
                kind: ConfigAttributeType::InternalIp4Address,
                value: vec![],
            },
            attribute(vec![]),                 // a question, not a route
            attribute(vec![10, 9, 0, 0, 255]), // short
            attribute(vec![1; 300]),           // long
            attribute(vec![10, 9, 0, 0, 255, 0, 255, 0]),
            attribute(vec![10, 9, 0, 1, 255, 255, 0, 0]),
            subnet("0.0.0.0/0"),
            subnet("10.1.1.128/25"),   // inside the pool
            subnet("10.0.0.0/8"),      // around it
            subnet("192.0.2.0/24"),    // holds the hub's address
            subnet("198.51.100.7/32"), // the peer's outer address
            subnet("192.168.101.0/24"),
            subnet("10.1.1.0/26"),      // below the pool: 10.1.1.0-63
            subnet("192.168.101.0/24"), // twice
        ];
        assert!(
            accepted_routes(&profile, *hub.ip(), peer, &id, &attributes).is_empty(),
            "route_accept is off in the example"
        );
        profile.route_accept = true;
        let routes = accepted_routes(&profile, *hub.ip(), peer, &id, &attributes);
        let shown: Vec<String> = routes.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["192.168.101.0/24", "10.1.1.0/26"]);
        // A flood is cut at MAX_PEER_ROUTES.
        attributes = (0..1000u32)
            .map(|i| {
                let a = Ipv4Addr::from(0xac10_0000 + (i << 8));
                attribute([a.octets(), [255, 255, 255, 0]].concat())
            })
            .collect();
        let routes = accepted_routes(&profile, *hub.ip(), peer, &id, &attributes);
        assert_eq!(routes.len(), MAX_PEER_ROUTES);
    }

    #[test]
    fn forcing_needs_a_peer_that_does_nat_t() {
        // The request of `sa_init` has no NAT_DETECTION notifies.
        let (local, remote) = addrs();
        let mut engine = engine().with_forced_encapsulation(true);
        let reply = only_send(
            &engine
                .handle(
                    Instant::now(),
                    local,
                    remote,
                    &sa_init(0x3333, 12, 31),
                    &mut NoPools,
                )
                .unwrap(),
        );
        assert!(reply.notify(NotifyType::NatDetectionSourceIp).is_some());
        assert!(!engine.report(Instant::now())[0].nat_t);
    }
}

//! What an SA pair becomes in XFRM: two states (RFC 4303 ESP, in UDP per
//! RFC 3948 behind NAT) and the policies that send GRE, or a tunnel-mode
//! peer's inner traffic, through them; and the pairs of one interface.
//!
//! Several pairs may live on one interface (a rekey, RFC 7296 section 2.8,
//! make-before-break): they share the reqid (the interface's number) and
//! so the policies, laid with the first pair and removed with the last.
//! Inbound, the kernel finds each state by its SPI, so all of them
//! decrypt. Outbound, the policy's template matches every state with the
//! reqid and xfrm_state_find takes the best one (xfrm_state_look_at): one
//! that is not dying (past a soft limit) over one that is, then the most
//! recently added, and adding a state bumps the generation of the others
//! so that cached routes (the GRE link's) look again. So the newest pair
//! sends, at once; a pair whose outbound is deferred
//! ([`SaPair::defer_outbound`]) gets its outbound state only when no older
//! one is left to send on.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Instant,
};

use super::{State, os};
use crate::iface::{DatapathError, SaLifetime, SaPair, VaId};
use crate::net::IPPROTO_ESP;
use crate::sys::{
    raw_os_error,
    xfrm::{
        EspAlgorithms, Integrity, UdpEncap, XFRM_INF, XfrmAction, XfrmDir, XfrmLifetime, XfrmMode,
        XfrmPolicy, XfrmSelector, XfrmState, XfrmTemplate,
    },
};
use crate::{
    ipsec::{Encr, Integ, Mode},
    net::Ipv4Prefix,
};

/// The inbound replay window (IOS and strongSwan default to 64 packets);
/// also set on outbound ESN states, which the kernel refuses without one
/// (it checks no replay on output).
const REPLAY_WINDOW: u32 = 64;
/// Priority of our policies: more specific than a catch-all an operator
/// may have.
const POLICY_PRIORITY: u32 = 1000;
/// The kernel reports a NAT mapping change of an inbound SA in UDP at most
/// once per this many seconds while the new port stays the same
/// (`XFRMA_MTIMER_THRESH`; without it, once per packet).
pub(super) const MAPPING_INTERVAL_SECONDS: u32 = 1;

/// Packets an outbound SA without ESN may send before its soft expiry:
/// 2^32 - 2^26, so that the rekey has 2^26 (67 million) packets, about a
/// minute at a million packets a second, before the 32-bit sequence number
/// would wrap (RFC 4303 section 3.3.3: a sender must not let it cycle; the
/// kernel refuses to send past it). The packet counter of a new SA is its
/// sequence number.
const SEQ_SOFT_LIMIT_32: u64 = (1 << 32) - (1 << 26);
/// The same with ESN (2^64 - 2^32), for form's sake.
const SEQ_SOFT_LIMIT_64: u64 = u64::MAX - u32::MAX as u64;

/// An SA pair as installed: the states with their keys (an update,
/// `XFRM_MSG_UPDSA`, needs the whole SA again) and what the events need.
pub(super) struct InstalledSa {
    pub spi_in: u32,
    pub spi_out: u32,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub mode: Mode,
    /// Outbound, inbound.
    pub states: [XfrmState; 2],
    /// Whether the outbound state is in the kernel (a deferred one waits
    /// for the older pairs to go).
    pub outbound_installed: bool,
    /// Deleted after a rekey and lingering: its outbound state is gone for
    /// good, its inbound state decrypts until the pair is removed.
    pub retired: bool,
    /// A soft expiry was reported for the pair (once per pair).
    pub soft_reported: bool,
    /// When a NAT mapping change was last reported.
    pub last_moved: Option<Instant>,
}

impl InstalledSa {
    fn outbound(&self) -> &XfrmState {
        &self.states[0]
    }

    fn inbound(&self) -> &XfrmState {
        &self.states[1]
    }

    /// The peer's endpoint: its address and, with UDP, its port (0 for raw
    /// ESP).
    pub(super) fn peer(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.remote, self.inbound().encap.map_or(0, |e| e.sport))
    }

    /// Whether one of its states is the kernel's SA to `dst` with `spi`.
    fn has_state(&self, dst: Ipv4Addr, spi: u32) -> bool {
        (dst == self.local && spi == self.spi_in) || (dst == self.remote && spi == self.spi_out)
    }
}

/// The kernel's name for the ESP transform.
fn algorithms(
    encr: Encr,
    integ: Option<Integ>,
    keys: &crate::ipsec::SaKeys,
) -> Result<EspAlgorithms, DatapathError> {
    match (encr, integ) {
        (Encr::AesGcm16 { .. }, _) => Ok(EspAlgorithms::AesGcm {
            key_with_salt: keys.encr.clone(),
            icv_bits: 128,
        }),
        (Encr::AesCbc { .. }, Some(i)) => Ok(EspAlgorithms::AesCbc {
            enc_key: keys.encr.clone(),
            integrity: match i {
                Integ::HmacSha1_96 => Integrity::HmacSha1_96,
                Integ::HmacSha256_128 => Integrity::HmacSha256_128,
                Integ::HmacSha384_192 => Integrity::HmacSha384_192,
                Integ::HmacSha512_256 => Integrity::HmacSha512_256,
            },
            integ_key: keys.integ.clone(),
        }),
        (Encr::AesCbc { .. }, None) => Err(DatapathError::Keys(
            "AES-CBC without an integrity algorithm".into(),
        )),
    }
}

/// The XFRM limits of one state of a pair: the pair's bytes and seconds
/// (each state counts its own direction, so whichever reaches a limit
/// first expires the pair), and on the outbound state the soft packet
/// limit that announces the sequence number's wrap. `Some(0)` seconds is no
/// limit, as in XFRM.
fn xfrm_lifetime(l: &SaLifetime, outbound: bool, esn: bool) -> XfrmLifetime {
    let seq_limit = match (outbound, esn) {
        (false, _) => XFRM_INF,
        (true, false) => SEQ_SOFT_LIMIT_32,
        (true, true) => SEQ_SOFT_LIMIT_64,
    };
    XfrmLifetime {
        soft_bytes: l.soft_bytes.unwrap_or(XFRM_INF),
        hard_bytes: l.hard_bytes.unwrap_or(XFRM_INF),
        soft_packets: seq_limit,
        hard_packets: XFRM_INF,
        soft_add_seconds: l.soft_seconds.unwrap_or(0),
        hard_add_seconds: l.hard_seconds.unwrap_or(0),
    }
}

fn host(a: Ipv4Addr) -> Ipv4Prefix {
    Ipv4Prefix { addr: a, len: 32 }
}

const ANY: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::UNSPECIFIED,
    len: 0,
};

impl State {
    /// The outbound and inbound states of `sa`; `initial_seq` is 0 but in
    /// tests that start the sequence numbers near a wrap.
    pub(super) fn states(
        sa: &SaPair,
        reqid: u32,
        initial_seq: u64,
    ) -> Result<[XfrmState; 2], DatapathError> {
        let mode = match sa.mode {
            Mode::Transport => XfrmMode::Transport,
            Mode::Tunnel => XfrmMode::Tunnel,
        };
        let selector = |src, dst| (sa.mode == Mode::Transport).then(|| XfrmSelector::gre(src, dst));
        let out = XfrmState {
            src: sa.local,
            dst: sa.remote,
            spi: sa.spi_out,
            reqid,
            mode,
            algorithms: algorithms(sa.encr, sa.integ, &sa.outbound)?,
            replay_window: if sa.esn { REPLAY_WINDOW } else { 0 },
            esn: sa.esn,
            encap: sa.encap.map(|(local, remote)| UdpEncap {
                sport: local,
                dport: remote,
            }),
            selector: selector(sa.local, sa.remote),
            lifetime: xfrm_lifetime(&sa.lifetime, true, sa.esn),
            initial_seq,
            mapping_interval: None,
        };
        let inbound = XfrmState {
            src: sa.remote,
            dst: sa.local,
            spi: sa.spi_in,
            reqid,
            mode,
            algorithms: algorithms(sa.encr, sa.integ, &sa.inbound)?,
            replay_window: REPLAY_WINDOW,
            esn: sa.esn,
            encap: sa.encap.map(|(local, remote)| UdpEncap {
                sport: remote,
                dport: local,
            }),
            selector: selector(sa.remote, sa.local),
            lifetime: xfrm_lifetime(&sa.lifetime, false, sa.esn),
            initial_seq,
            mapping_interval: sa.encap.map(|_| MAPPING_INTERVAL_SECONDS),
        };
        Ok([out, inbound])
    }

    pub(super) fn policies(sa: &SaPair, reqid: u32, inner: Option<Ipv4Addr>) -> Vec<XfrmPolicy> {
        let template = |src, dst, mode| {
            Some(XfrmTemplate {
                src,
                dst,
                reqid,
                mode,
            })
        };
        let policy = |selector, dir, template| XfrmPolicy {
            selector,
            dir,
            priority: POLICY_PRIORITY,
            action: XfrmAction::Allow,
            template,
        };
        match (sa.mode, inner) {
            (Mode::Transport, _) => vec![
                policy(
                    XfrmSelector::gre(sa.local, sa.remote),
                    XfrmDir::Out,
                    template(sa.local, sa.remote, XfrmMode::Transport),
                ),
                policy(
                    XfrmSelector::gre(sa.remote, sa.local),
                    XfrmDir::In,
                    template(sa.remote, sa.local, XfrmMode::Transport),
                ),
            ],
            // A tunnel-mode peer's inner address; what it reaches through
            // us is forwarded (decrypted, then routed on).
            (Mode::Tunnel, Some(inner)) => vec![
                policy(
                    XfrmSelector::between(ANY, host(inner)),
                    XfrmDir::Out,
                    template(sa.local, sa.remote, XfrmMode::Tunnel),
                ),
                policy(
                    XfrmSelector::between(host(inner), ANY),
                    XfrmDir::In,
                    template(sa.remote, sa.local, XfrmMode::Tunnel),
                ),
                policy(
                    XfrmSelector::between(host(inner), ANY),
                    XfrmDir::Fwd,
                    template(sa.remote, sa.local, XfrmMode::Tunnel),
                ),
            ],
            (Mode::Tunnel, None) => Vec::new(),
        }
    }

    /// Whether `sa` may join the pairs of its interface: the same mode and
    /// addresses (the policies name them), SPIs not in use.
    pub(super) fn check_new_pair(&self, sa: &SaPair) -> Result<(), DatapathError> {
        let va = self.va(sa.va)?;
        if let Some(first) = va.pairs.first()
            && (first.mode, first.local, first.remote) != (sa.mode, sa.local, sa.remote)
        {
            return Err(DatapathError::Unsupported(format!(
                "{}: a new SA pair must have the mode and outer addresses of the pairs there \
                 ({:?} {} -> {}), not {:?} {} -> {}",
                sa.va, first.mode, first.local, first.remote, sa.mode, sa.local, sa.remote
            )));
        }
        let in_use = self.vas.values().flat_map(|v| &v.pairs).any(|p| {
            (p.local, p.spi_in) == (sa.local, sa.spi_in)
                || (p.remote, p.spi_out) == (sa.remote, sa.spi_out)
        });
        if in_use {
            return Err(DatapathError::SpiInUse(sa.spi_in));
        }
        Ok(())
    }

    /// Adds `sa`'s states (and, for the interface's first pair, its
    /// policies) beside the pairs already there. All or nothing.
    pub(super) fn add_pair(&mut self, sa: &SaPair) -> Result<(), DatapathError> {
        self.check_new_pair(sa)?;
        let va = self.va(sa.va)?;
        let inner = va.spec.peer_inner;
        let first_pair = va.pairs.is_empty();
        // Deferred only while an older pair sends.
        let defer = sa.defer_outbound && va.pairs.iter().any(|p| p.outbound_installed);
        let reqid = sa.va.raw();
        let states = State::states(sa, reqid, self.initial_seq)?;
        let wanted: &[XfrmState] = if defer { &states[1..] } else { &states[..] };
        for (i, state) in wanted.iter().enumerate() {
            if let Err(e) = self.xfrm.add_state(state) {
                for done in &wanted[..i] {
                    let _ = self.xfrm.del_state(done.dst, done.spi, IPPROTO_ESP);
                }
                return Err(os(format!(
                    "{}: adding XFRM state spi {:#010x}",
                    sa.va, state.spi
                ))(e));
            }
        }
        let mut policies = Vec::new();
        if first_pair {
            for policy in State::policies(sa, reqid, inner) {
                if let Err(e) = self.xfrm.add_policy(&policy) {
                    for (selector, dir) in policies.iter().rev() {
                        let _ = self.xfrm.del_policy(selector, *dir);
                    }
                    for done in wanted {
                        let _ = self.xfrm.del_state(done.dst, done.spi, IPPROTO_ESP);
                    }
                    return Err(os(format!(
                        "{}: adding XFRM policy {}",
                        sa.va, policy.selector
                    ))(e));
                }
                policies.push((policy.selector, policy.dir));
            }
        }
        let Some(v) = self.vas.get_mut(&sa.va) else {
            return Err(DatapathError::NoSuchInterface(sa.va));
        };
        if first_pair {
            v.policies = policies;
        }
        v.pairs.push(InstalledSa {
            spi_in: sa.spi_in,
            spi_out: sa.spi_out,
            local: sa.local,
            remote: sa.remote,
            mode: sa.mode,
            states,
            outbound_installed: !defer,
            retired: false,
            soft_reported: false,
            last_moved: None,
        });
        Ok(())
    }

    /// Removes the pair of `id` with `spi_in` from the kernel (states the
    /// kernel already deleted at a hard expiry are no error); the last pair
    /// takes the policies with it. If no pair is left sending, the deferred
    /// ones get their outbound states. `false` if there is no such pair.
    pub(super) fn remove_pair(&mut self, id: VaId, spi_in: u32) -> bool {
        let Some(v) = self.vas.get_mut(&id) else {
            return false;
        };
        let Some(at) = v.pairs.iter().position(|p| p.spi_in == spi_in) else {
            return false;
        };
        let pair = v.pairs.remove(at);
        let policies = if v.pairs.is_empty() {
            std::mem::take(&mut v.policies)
        } else {
            Vec::new()
        };
        // The successor first, so that there is always a state to send on.
        self.promote_deferred(id);
        let mut states = vec![pair.inbound()];
        if pair.outbound_installed {
            states.push(pair.outbound());
        }
        for state in states {
            self.delete_state(id, state);
        }
        for (selector, dir) in policies.iter().rev() {
            if let Err(e) = self.xfrm.del_policy(selector, *dir) {
                tracing::warn!(interface = %id, error = %e, "removing an XFRM policy failed");
            }
        }
        true
    }

    /// The pair of `id` with `spi_in` sends no more (deleted after a rekey,
    /// RFC 7296 section 2.8): a deferred successor gets its outbound state
    /// first, then this pair's goes; its inbound state stays until
    /// `remove_pair`. `false` if there is no such pair.
    pub(super) fn retire_pair(&mut self, id: VaId, spi_in: u32) -> bool {
        let Some(pair) = self
            .vas
            .get_mut(&id)
            .and_then(|v| v.pairs.iter_mut().find(|p| p.spi_in == spi_in))
        else {
            return false;
        };
        pair.retired = true;
        let sending = std::mem::replace(&mut pair.outbound_installed, false);
        let outbound = pair.outbound().clone();
        self.promote_deferred(id);
        if sending {
            self.delete_state(id, &outbound);
        }
        true
    }

    /// If no pair of `id` sends, the deferred ones (not retired) get their
    /// outbound states, oldest first: the kernel sends on the newest, and
    /// adding a state makes it look again.
    fn promote_deferred(&mut self, id: VaId) {
        let Some(v) = self.vas.get_mut(&id) else {
            return;
        };
        if v.pairs.iter().any(|p| p.outbound_installed) {
            return;
        }
        let deferred: Vec<XfrmState> = v
            .pairs
            .iter_mut()
            .filter(|p| !p.retired)
            .map(|p| {
                p.outbound_installed = true;
                p.outbound().clone()
            })
            .collect();
        for state in deferred {
            if let Err(e) = self.xfrm.add_state(&state) {
                tracing::error!(interface = %id, spi = format_args!("{:#010x}", state.spi), error = %e, "the deferred outbound SA could not be added: nothing sends on the interface");
            }
        }
    }

    fn delete_state(&mut self, id: VaId, state: &XfrmState) {
        match self.xfrm.del_state(state.dst, state.spi, IPPROTO_ESP) {
            Err(e) if raw_os_error(&e) != Some(libc::ESRCH) => {
                tracing::warn!(interface = %id, spi = format_args!("{:#010x}", state.spi), error = %e, "removing an XFRM state failed");
            }
            _ => {}
        }
    }

    /// Removes all the pairs of `id` and its policies.
    pub(super) fn remove_all_pairs(&mut self, id: VaId) {
        let spis: Vec<u32> = self
            .vas
            .get(&id)
            .map(|v| v.pairs.iter().map(|p| p.spi_in).collect())
            .unwrap_or_default();
        // Newest first: no deferred state is added on the way.
        for spi_in in spis.into_iter().rev() {
            self.remove_pair(id, spi_in);
        }
    }

    /// The pair one of whose states is the kernel's SA to `dst` with `spi`.
    pub(super) fn pair_of_state(
        &mut self,
        dst: Ipv4Addr,
        spi: u32,
    ) -> Option<(VaId, &mut InstalledSa)> {
        self.vas.iter_mut().find_map(|(id, v)| {
            v.pairs
                .iter_mut()
                .find(|p| p.has_state(dst, spi))
                .map(|p| (*id, p))
        })
    }

    /// NAT rebinding (RFC 7296 section 2.23): the peer of `id` now sends
    /// from `remote`. The states of its pairs in UDP move to the new port
    /// (outbound destination, inbound source) with `XFRM_MSG_UPDSA`, which
    /// copies the encapsulation into the SA in place (xfrm_state_update);
    /// ESP output reads the ports for each packet, so the next one goes
    /// there. The address cannot move: the states (looked up by
    /// destination and SPI), the policies and the GRE link name it.
    pub(super) fn update_peer(
        &mut self,
        id: VaId,
        remote: SocketAddrV4,
    ) -> Result<(), DatapathError> {
        let v = self
            .vas
            .get_mut(&id)
            .ok_or(DatapathError::NoSuchInterface(id))?;
        let current = v
            .pairs
            .last()
            .map_or(*v.spec.remote_outer.ip(), |p| p.remote);
        if *remote.ip() != current {
            return Err(DatapathError::Unsupported(format!(
                "{id}: the peer moved from {current} to {}, and the kernel datapath follows a \
                 port change only (its XFRM states, policies and GRE link are keyed by the \
                 peer's address): new SAs are needed",
                remote.ip()
            )));
        }
        let mut pairs = std::mem::take(&mut v.pairs);
        let result = self.move_pairs(id, &mut pairs, remote.port());
        let Some(v) = self.vas.get_mut(&id) else {
            return Err(DatapathError::NoSuchInterface(id));
        };
        v.pairs = pairs;
        result?;
        v.spec.remote_outer = remote;
        Ok(())
    }

    fn move_pairs(
        &mut self,
        id: VaId,
        pairs: &mut [InstalledSa],
        port: u16,
    ) -> Result<(), DatapathError> {
        for pair in pairs {
            let [out, inbound] = &mut pair.states;
            let (Some(out_encap), Some(in_encap)) = (&mut out.encap, &mut inbound.encap) else {
                // Raw ESP has no port to move.
                continue;
            };
            if out_encap.dport == port && in_encap.sport == port {
                continue;
            }
            let mut moved_out = out.clone();
            let mut moved_in = inbound.clone();
            if let Some(e) = &mut moved_out.encap {
                e.dport = port;
            }
            if let Some(e) = &mut moved_in.encap {
                e.sport = port;
            }
            // The start numbers of the states as added would be ignored
            // (the replay state is not copied), but say what is meant.
            moved_out.initial_seq = 0;
            moved_in.initial_seq = 0;
            if pair.outbound_installed {
                self.xfrm.update_state(&moved_out).map_err(os(format!(
                    "{id}: moving SA spi {:#010x} to port {port}",
                    moved_out.spi
                )))?;
            }
            *out = moved_out;
            self.xfrm.update_state(&moved_in).map_err(os(format!(
                "{id}: moving SA spi {:#010x} to port {port}",
                moved_in.spi
            )))?;
            *inbound = moved_in;
        }
        Ok(())
    }
}

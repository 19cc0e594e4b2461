//! A small, blocking NETLINK_XFRM client for the kernel datapath: ESP
//! security associations (SAs) and security policies (SPs) for IPv4, and
//! the socket options that keep the IKE sockets out of the policies.
//!
//! The messages are built by hand with the layouts of `linux/xfrm.h` (the
//! uapi header, whose structures "may not change size"); each layout is
//! written down below as offsets with its size, and the tests hold them to
//! `#[repr(C)]` copies of the C structures and to the bytes iproute2's
//! `ip xfrm` sends for the same SA or policy. (The `netlink-packet-xfrm`
//! crate has these types too, but its parsers slice kernel input without
//! checking its length, and this module needs only a handful of messages.)
//! Everything is in host byte order except addresses, SPIs and ports, which
//! the kernel keeps in network order (`__be32`, `__be16`).
//!
//! Requests are answered the way [`super::netlink::Netlink`]'s are: one at a
//! time, acknowledged, sequence numbers checked, kernel errors turned into
//! `io::Error`s that name the SA or policy and carry the kernel's
//! extended-ack text, e.g. "adding SA esp spi 0xc0ffee01 192.0.2.1 ->
//! 198.51.100.7 reqid 7: Protocol not supported (os error 93); kernel says:
//! Requested type not found" (the kernel without esp4). Buffers that held
//! key material are zeroed when dropped.
//!
//! One file per concern: `layout` (the C structures as offsets), `codec`
//! (attributes and byte order), `selector` (selectors, modes and lifetimes,
//! which SAs and policies share), `state` (SAs), `policy`, `sockopt`
//! (the IKE sockets' options) and `monitor` (the kernel's expire and NAT
//! mapping events). The request socket client is here.

use std::{
    fmt,
    io::{self, ErrorKind},
    net::Ipv4Addr,
    os::fd::AsRawFd,
};

use netlink_packet_core::NLM_F_DUMP;
use netlink_sys::protocols::NETLINK_XFRM;
use zeroize::Zeroizing;

use self::{
    codec::invalid_data,
    policy::userpolicy_id,
    state::{decode_id, decode_stats, is_ipv4, usersa_id},
};
use super::netlink::{KernelError, Transport, open_socket};
use crate::net::IPPROTO_ESP;

mod codec;
#[allow(dead_code)] // the whole layout, also the fields never set here
pub(crate) mod layout;
mod monitor;
mod policy;
mod selector;
mod sockopt;
mod state;

pub use monitor::{XfrmEvent, XfrmMapping, XfrmMonitor};
pub use policy::{XfrmAction, XfrmDir, XfrmPolicy, XfrmTemplate};
pub use selector::{XfrmLifetime, XfrmMode, XfrmSelector};
pub use sockopt::{bypass_policies, set_udp_encap_espinudp, udp_encap};
pub use state::{
    EspAlgorithms, Integrity, UdpEncap, XfrmReplay, XfrmState, XfrmStateId, XfrmStateInfo,
    XfrmStateStats,
};

/// `UDP_ENCAP_ESPINUDP` (linux/udp.h): ESP in UDP as RFC 3948 frames it,
/// with the non-ESP marker for IKE on the same port.
pub const UDP_ENCAP_ESPINUDP: u16 = 2;

// Message types (linux/xfrm.h, enum starting at XFRM_MSG_BASE 0x10).
const XFRM_MSG_NEWSA: u16 = 0x10;
const XFRM_MSG_DELSA: u16 = 0x11;
const XFRM_MSG_GETSA: u16 = 0x12;
const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_DELPOLICY: u16 = 0x14;
const XFRM_MSG_GETPOLICY: u16 = 0x15;
const XFRM_MSG_EXPIRE: u16 = 0x18;
const XFRM_MSG_UPDPOLICY: u16 = 0x19;
const XFRM_MSG_UPDSA: u16 = 0x1a;
#[cfg_attr(not(test), allow(dead_code))] // the monitor's tests make one
const XFRM_MSG_POLEXPIRE: u16 = 0x1b;
const XFRM_MSG_MAPPING: u16 = 0x26;

// Attributes (enum xfrm_attr_type_t).
const XFRMA_ALG_CRYPT: u16 = 2;
const XFRMA_ENCAP: u16 = 4;
const XFRMA_TMPL: u16 = 5;
#[cfg_attr(not(test), allow(dead_code))] // iproute2 sends it; see the tests
const XFRMA_SRCADDR: u16 = 13;
const XFRMA_ALG_AEAD: u16 = 18;
const XFRMA_ALG_AUTH_TRUNC: u16 = 20;
const XFRMA_REPLAY_ESN_VAL: u16 = 23;
const XFRMA_MTIMER_THRESH: u16 = 32;

// Multicast groups (enum xfrm_nlgroups).
const XFRMNLGRP_EXPIRE: u32 = 2;
const XFRMNLGRP_MAPPING: u32 = 8;

// xfrm_usersa_info.flags.
const XFRM_STATE_AF_UNSPEC: u8 = 32;
const XFRM_STATE_ESN: u8 = 128;

/// `XFRM_INF`: no limit (byte and packet lifetimes).
pub const XFRM_INF: u64 = u64::MAX;

/// The legacy replay bitmap's size (`xfrm_replay_state.bitmap`, 32 bits):
/// larger windows need `XFRMA_REPLAY_ESN_VAL`.
const LEGACY_REPLAY_WINDOW: u32 = 32;

/// `XFRMA_REPLAY_ESN_MAX`: the largest replay window, in packets.
pub const MAX_REPLAY_WINDOW: u32 = 4096;

const AF_INET: u16 = 2;

use layout as l;

/// A blocking NETLINK_XFRM socket in the network namespace of the thread
/// that opened it.
pub struct Xfrm {
    transport: Transport,
}

impl fmt::Debug for Xfrm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xfrm")
            .field("fd", &self.transport.socket.as_raw_fd())
            .field("seq", &self.transport.seq)
            .finish_non_exhaustive()
    }
}

impl Xfrm {
    /// Opens a NETLINK_XFRM socket (needs CAP_NET_ADMIN for changes).
    pub fn open() -> io::Result<Xfrm> {
        let socket = open_socket(NETLINK_XFRM, "opening a NETLINK_XFRM socket")?;
        Ok(Xfrm {
            transport: Transport::new(socket),
        })
    }

    /// Installs an SA (`ip xfrm state add`); EEXIST if one with the same
    /// destination, SPI and protocol is there. A kernel without ESP
    /// (esp4) refuses with EPROTONOSUPPORT ("Requested type not found"),
    /// one without the algorithm with ENOSYS ("Requested AEAD algorithm
    /// not found" and the like).
    pub fn add_state(&mut self, state: &XfrmState) -> io::Result<()> {
        let what = || format!("adding SA {}", state.label());
        let msg = state
            .encode()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{}: {e}", what())))?;
        self.request(XFRM_MSG_NEWSA, 0, &msg.bytes, &what).map(drop)
    }

    /// Changes an SA in place (`XFRM_MSG_UPDSA`, `ip xfrm state update`):
    /// the kernel builds `state` (keys and all, so they must be given
    /// again), then xfrm_state_update copies into the SA with the same
    /// destination, SPI and protocol only its UDP encapsulation ports (same
    /// encapsulation type), its lifetime limits (which clears a soft
    /// expiry) and, for an SA without SPI, the selector; counters, keys and
    /// the replay state stay. ESRCH if there is no such SA, EINVAL if one
    /// has UDP encapsulation and the other not.
    pub fn update_state(&mut self, state: &XfrmState) -> io::Result<()> {
        let what = || format!("updating SA {}", state.label());
        let msg = state
            .encode()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{}: {e}", what())))?;
        self.request(XFRM_MSG_UPDSA, 0, &msg.bytes, &what).map(drop)
    }

    /// The ESP SA to `dst` with `spi` as the kernel has it (no keys);
    /// ESRCH if there is none.
    pub fn get_state(&mut self, dst: Ipv4Addr, spi: u32) -> io::Result<XfrmStateInfo> {
        let what = || format!("reading SA esp spi {spi:#010x} dst {dst}");
        let answers = self.request(XFRM_MSG_GETSA, 0, &usersa_id(dst, spi, IPPROTO_ESP), &what)?;
        let (_, payload) = answers
            .iter()
            .find(|(kind, _)| *kind == XFRM_MSG_NEWSA)
            .ok_or_else(|| invalid_data(&format!("{}: no SA in the kernel's answer", what())))?;
        XfrmStateInfo::decode(payload).map_err(|e| super::context(e, what()))
    }

    /// Removes the SA (`ip xfrm state delete dst D proto P spi S`); ESRCH
    /// if there is none.
    pub fn del_state(&mut self, dst: Ipv4Addr, spi: u32, proto: u8) -> io::Result<()> {
        let what = || format!("removing SA proto {proto} spi {spi:#010x} dst {dst}");
        self.request(XFRM_MSG_DELSA, 0, &usersa_id(dst, spi, proto), &what)
            .map(drop)
    }

    /// The counters of the ESP SA to `dst` with `spi`; ESRCH if there is
    /// none.
    pub fn get_state_stats(&mut self, dst: Ipv4Addr, spi: u32) -> io::Result<XfrmStateStats> {
        let what = || format!("reading SA esp spi {spi:#010x} dst {dst}");
        let answers = self.request(XFRM_MSG_GETSA, 0, &usersa_id(dst, spi, IPPROTO_ESP), &what)?;
        let info = answers
            .iter()
            .find(|(kind, _)| *kind == XFRM_MSG_NEWSA)
            .and_then(|(_, payload)| payload.get(..l::USERSA_INFO_LEN))
            .ok_or_else(|| invalid_data(&format!("{}: no SA in the kernel's answer", what())))?;
        Ok(decode_stats(info))
    }

    /// Every SA of this namespace, IPv4 or not (`ip xfrm state list`).
    pub fn states(&mut self) -> io::Result<Vec<XfrmStateId>> {
        let what = || "listing the SAs".to_owned();
        let answers = self.dump(XFRM_MSG_GETSA, &what)?;
        let mut out = Vec::new();
        for (kind, payload) in answers {
            if kind != XFRM_MSG_NEWSA {
                continue;
            }
            let info = payload
                .get(..l::USERSA_INFO_LEN)
                .ok_or_else(|| invalid_data(&format!("{}: a short SA", what())))?;
            if !is_ipv4(info) {
                continue;
            }
            out.push(decode_id(info));
        }
        Ok(out)
    }

    /// Removes every IPv4 SA with `reqid` (the kernel's flush takes only a
    /// protocol): a dump, then one delete per SA. SAs that vanish meanwhile
    /// are not an error. Returns how many were removed.
    pub fn del_states_by_reqid(&mut self, reqid: u32) -> io::Result<usize> {
        let mut removed = 0;
        for sa in self.states()? {
            if sa.reqid != reqid {
                continue;
            }
            match self.del_state(sa.dst, sa.spi, sa.proto) {
                Ok(()) => removed += 1,
                Err(e) if super::raw_os_error(&e) == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Installs a policy (`ip xfrm policy add`); EEXIST if one with the
    /// same selector and direction is there.
    pub fn add_policy(&mut self, policy: &XfrmPolicy) -> io::Result<()> {
        let what = || format!("adding policy {}", policy.label());
        // The message type decides: NEWPOLICY refuses an existing policy,
        // UPDPOLICY replaces it (xfrm_add_policy); no NLM_F_* needed.
        self.request(XFRM_MSG_NEWPOLICY, 0, &policy.encode().bytes, &what)
            .map(drop)
    }

    /// Installs or replaces a policy (`ip xfrm policy update`).
    pub fn update_policy(&mut self, policy: &XfrmPolicy) -> io::Result<()> {
        let what = || format!("updating policy {}", policy.label());
        self.request(XFRM_MSG_UPDPOLICY, 0, &policy.encode().bytes, &what)
            .map(drop)
    }

    /// Removes the policy with `selector` and `dir`; ENOENT if there is
    /// none.
    pub fn del_policy(&mut self, selector: &XfrmSelector, dir: XfrmDir) -> io::Result<()> {
        let what = || format!("removing policy {selector} dir {dir}");
        self.request(XFRM_MSG_DELPOLICY, 0, &userpolicy_id(selector, dir), &what)
            .map(drop)
    }

    /// The policy with `selector` and `dir`; ENOENT if there is none.
    pub fn get_policy(&mut self, selector: &XfrmSelector, dir: XfrmDir) -> io::Result<XfrmPolicy> {
        let what = || format!("reading policy {selector} dir {dir}");
        let answers = self.request(XFRM_MSG_GETPOLICY, 0, &userpolicy_id(selector, dir), &what)?;
        let (_, payload) = answers
            .iter()
            .find(|(kind, _)| *kind == XFRM_MSG_NEWPOLICY)
            .ok_or_else(|| {
                invalid_data(&format!("{}: no policy in the kernel's answer", what()))
            })?;
        XfrmPolicy::decode(payload).map_err(|e| super::context(e, what()))
    }

    /// Every IPv4 policy of this namespace, the sockets' own left out
    /// (`ip xfrm policy list`).
    pub fn policies(&mut self) -> io::Result<Vec<XfrmPolicy>> {
        let what = || "listing the policies".to_owned();
        let answers = self.dump(XFRM_MSG_GETPOLICY, &what)?;
        let mut out = Vec::new();
        for (kind, payload) in answers {
            if kind != XFRM_MSG_NEWPOLICY {
                continue;
            }
            let family = payload.get(l::SEL_FAMILY..l::SEL_FAMILY + 2);
            if family != Some(&AF_INET.to_ne_bytes()[..]) {
                continue;
            }
            // Per-socket policies ([`bypass_policies`]) come with the dump,
            // their direction offset by XFRM_POLICY_MAX (3); iproute2 shows
            // them as "socket in/out".
            if payload.get(l::POL_DIR).is_some_and(|&dir| dir >= 3) {
                continue;
            }
            out.push(XfrmPolicy::decode(&payload).map_err(|e| super::context(e, what()))?);
        }
        Ok(out)
    }

    /// A dump (`NLM_F_DUMP`, no filter), retried when a change interrupts
    /// it.
    fn dump(
        &mut self,
        kind: u16,
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<(u16, Zeroizing<Vec<u8>>)>> {
        for _ in 0..4 {
            match self.exchange(kind, NLM_F_DUMP, &[]) {
                Ok(Ok((answers, false))) => return Ok(answers),
                Ok(Ok((_, true))) => {}
                Ok(Err(kernel)) => return Err(kernel.into_io(what())),
                Err(local) => return Err(super::context(local, what())),
            }
        }
        Err(io::Error::new(
            ErrorKind::Interrupted,
            format!("{}: the dump was interrupted by changes 4 times", what()),
        ))
    }

    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<(u16, Zeroizing<Vec<u8>>)>> {
        match self.exchange(kind, flags, payload) {
            Ok(Ok((answers, _))) => Ok(answers),
            Ok(Err(kernel)) => Err(kernel.into_io(what())),
            Err(local) => Err(super::context(local, what())),
        }
    }

    /// Sends one request and collects the answers (message type and
    /// payload) up to the ACK or NLMSG_DONE, with whether the dump was
    /// interrupted. The outer error is a local one, the inner one the
    /// kernel's.
    #[allow(clippy::type_complexity)] // one private call site shape
    fn exchange(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
    ) -> io::Result<Result<(Vec<(u16, Zeroizing<Vec<u8>>)>, bool), KernelError>> {
        Ok(self
            .transport
            .exchange(kind, flags, payload, "sending an XFRM request")?
            .map(|raw| {
                let messages = raw
                    .messages
                    .into_iter()
                    .map(|(header, payload)| (header.message_type, payload))
                    .collect();
                (messages, raw.interrupted)
            }))
    }
}

#[cfg(test)]
mod tests;

//! The kernel's XFRM events: SA lifetimes running out (`XFRM_MSG_EXPIRE`,
//! multicast group `XFRMNLGRP_EXPIRE`) and authenticated ESP in UDP from a
//! new source address or port (`XFRM_MSG_MAPPING`, `XFRMNLGRP_MAPPING`: the
//! peer's NAT mapping moved, RFC 3948 / RFC 7296 section 2.23), read from a
//! NETLINK_XFRM socket subscribed to both groups, as strongSwan's
//! kernel-netlink plugin does.
//!
//! The kernel sends an expire at a soft limit once (it marks the SA dying,
//! which outbound lookups then avoid) and at a hard limit after deleting
//! the SA (xfrm_timer_handler, xfrm_state_check_expire). Mapping events
//! come from esp4's input after the ICV verified (esp_input_done2), one
//! per packet, or with `XFRMA_MTIMER_THRESH` at most one per interval per
//! SA while the port stays the same (km_new_mapping).

use std::{
    io::{self, ErrorKind},
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use netlink_sys::{Socket, protocols::NETLINK_XFRM};

use super::{
    XFRM_MSG_EXPIRE, XFRM_MSG_MAPPING, XFRMNLGRP_EXPIRE, XFRMNLGRP_MAPPING,
    codec::{get_addr, get_be16, get_be32, get_u32, invalid_data},
    layout as l,
    state::{XfrmStateInfo, is_ipv4},
};
use crate::sys::{
    context,
    netlink::{HEADER_LEN, parse_header},
};

/// What the monitor read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XfrmEvent {
    /// An SA reached a soft limit (`hard` false: it stays, the kernel
    /// marked it dying) or a hard one (`hard` true: the kernel deleted it).
    Expire { state: XfrmStateInfo, hard: bool },
    /// Authenticated ESP in UDP for an inbound SA came from another source.
    Mapping(XfrmMapping),
    /// The kernel dropped events: the socket's buffer was full (ENOBUFS),
    /// or a datagram was larger than ours.
    Lost,
    /// Another message sent to the groups (an `XFRM_MSG_POLEXPIRE`, or an
    /// IPv6 SA's event), by type.
    Other(u16),
}

/// `struct xfrm_user_mapping`: which inbound SA, and where its peer's ESP
/// came from before and now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XfrmMapping {
    /// The SA's destination (our address) and SPI.
    pub dst: Ipv4Addr,
    pub spi: u32,
    pub reqid: u32,
    /// The SA's source and its encapsulation's source port.
    pub old: SocketAddrV4,
    /// Where the packet came from.
    pub new: SocketAddrV4,
}

/// A NETLINK_XFRM socket subscribed to the expire and mapping groups of
/// the network namespace of the thread that opened it (needs
/// CAP_NET_ADMIN). Non-blocking: wait for it with `sys::poll`.
pub struct XfrmMonitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for XfrmMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XfrmMonitor")
            .field("fd", &self.socket.as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// The receive buffer: events are a few hundred bytes, several to a
/// datagram at most.
const BUFFER: usize = 64 * 1024;

/// The socket's receive queue: room for a burst of expires (thousands of
/// SAs added at once expire at once).
const RCVBUF: usize = 1 << 20;

impl XfrmMonitor {
    pub fn open() -> io::Result<XfrmMonitor> {
        let what = "opening the XFRM event socket";
        let mut socket = Socket::new(NETLINK_XFRM).map_err(|e| context(e, what))?;
        socket.bind_auto().map_err(|e| context(e, what))?;
        for (group, name) in [
            (XFRMNLGRP_EXPIRE, "XFRMNLGRP_EXPIRE"),
            (XFRMNLGRP_MAPPING, "XFRMNLGRP_MAPPING"),
        ] {
            socket
                .add_membership(group)
                .map_err(|e| context(e, format!("{what}: joining {name}")))?;
        }
        socket
            .set_non_blocking(true)
            .map_err(|e| context(e, what))?;
        // Best effort: without it the default queue holds fewer events.
        let _ = socket.set_rx_buf_sz(RCVBUF);
        Ok(XfrmMonitor {
            socket,
            buf: vec![0; BUFFER],
        })
    }

    /// Reads one datagram's events into `out`; `false` when none was
    /// waiting. Losses are events ([`XfrmEvent::Lost`]), not errors.
    pub fn read(&mut self, out: &mut Vec<XfrmEvent>) -> io::Result<bool> {
        let received = {
            let mut slice: &mut [u8] = &mut self.buf[..];
            self.socket.recv(&mut slice, libc::MSG_TRUNC)
        };
        match received {
            Ok(n) if n > self.buf.len() => {
                out.push(XfrmEvent::Lost);
                Ok(true)
            }
            Ok(n) => {
                parse_events(&self.buf[..n], out)?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                out.push(XfrmEvent::Lost);
                Ok(true)
            }
            Err(e) => Err(context(e, "reading XFRM events")),
        }
    }
}

impl AsFd for XfrmMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as `self.socket`, which the
        // borrow keeps.
        unsafe { BorrowedFd::borrow_raw(self.socket.as_raw_fd()) }
    }
}

/// The events of one datagram (netlink messages, each 4-aligned). A
/// malformed datagram is an error; messages of other types are
/// [`XfrmEvent::Other`].
pub(super) fn parse_events(mut datagram: &[u8], out: &mut Vec<XfrmEvent>) -> io::Result<()> {
    while datagram.len() >= HEADER_LEN {
        let header = parse_header(datagram);
        let len = header.length as usize;
        if len < HEADER_LEN || len > datagram.len() {
            return Err(invalid_data(&format!(
                "XFRM event of {len} bytes in {} left",
                datagram.len()
            )));
        }
        let payload = &datagram[HEADER_LEN..len];
        out.push(match header.message_type {
            XFRM_MSG_EXPIRE => parse_expire(payload)?,
            XFRM_MSG_MAPPING => parse_mapping(payload)?,
            other => XfrmEvent::Other(other),
        });
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(())
}

/// `struct xfrm_user_expire`, then attributes (a mark, none we read: the
/// state's own attributes are not sent with an expire).
fn parse_expire(payload: &[u8]) -> io::Result<XfrmEvent> {
    let fixed = payload
        .get(..l::USER_EXPIRE_LEN)
        .ok_or_else(|| invalid_data(&format!("XFRM expire of {} bytes", payload.len())))?;
    let info = &fixed[l::EXPIRE_STATE..l::EXPIRE_STATE + l::USERSA_INFO_LEN];
    if !is_ipv4(info) {
        return Ok(XfrmEvent::Other(XFRM_MSG_EXPIRE));
    }
    // Only the fixed part: what follows `hard` is padding and a mark.
    let state = XfrmStateInfo::decode(info)?;
    Ok(XfrmEvent::Expire {
        state,
        hard: fixed[l::EXPIRE_HARD] != 0,
    })
}

fn parse_mapping(payload: &[u8]) -> io::Result<XfrmEvent> {
    let m = payload
        .get(..l::USER_MAPPING_LEN)
        .ok_or_else(|| invalid_data(&format!("XFRM mapping of {} bytes", payload.len())))?;
    let family = u16::from_ne_bytes([
        m[l::MAP_ID + l::SAID_FAMILY],
        m[l::MAP_ID + l::SAID_FAMILY + 1],
    ]);
    if family != super::AF_INET {
        return Ok(XfrmEvent::Other(XFRM_MSG_MAPPING));
    }
    Ok(XfrmEvent::Mapping(XfrmMapping {
        dst: get_addr(m, l::MAP_ID + l::SAID_DADDR),
        spi: get_be32(m, l::MAP_ID + l::SAID_SPI),
        reqid: get_u32(m, l::MAP_REQID),
        old: SocketAddrV4::new(get_addr(m, l::MAP_OLD_SADDR), get_be16(m, l::MAP_OLD_SPORT)),
        new: SocketAddrV4::new(get_addr(m, l::MAP_NEW_SADDR), get_be16(m, l::MAP_NEW_SPORT)),
    }))
}

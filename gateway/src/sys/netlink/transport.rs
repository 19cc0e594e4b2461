//! The request and answer exchange of one blocking netlink socket, shared
//! by rtnetlink ([`super::Netlink`]) and xfrm netlink (`sys::xfrm`): the
//! netlink header, ACKs, errors and extended acks.

use std::{
    io::{self, ErrorKind},
    os::fd::AsRawFd,
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkHeader,
};
use netlink_sys::{Socket, SocketAddr};
use zeroize::Zeroizing;

use super::Netlink;
use crate::sys::{context, context_detail, os_error};

/// The size of a `timeval` socket option.
#[allow(clippy::cast_possible_truncation)] // 16 bytes
const TIMEVAL_LEN: libc::socklen_t = std::mem::size_of::<libc::timeval>() as libc::socklen_t;

/// The netlink header's size.
pub(in crate::sys) const HEADER_LEN: usize = 16;

/// `NLMSGERR_ATTR_MSG`: the extended-ack attribute with the error text.
pub(super) const NLMSGERR_ATTR_MSG: u16 = 1;

/// A whole request: header (port 0: the kernel fills in ours), then
/// `payload`. Requests other than dumps ask for an ACK. Zeroed on drop:
/// xfrm requests carry keys.
pub(in crate::sys) fn request_packet(
    kind: u16,
    flags: u16,
    seq: u32,
    payload: &[u8],
) -> io::Result<Zeroizing<Vec<u8>>> {
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
    let len = HEADER_LEN + payload.len();
    let total = u32::try_from(len)
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "netlink request too large"))?;
    let mut packet = Zeroizing::new(Vec::with_capacity(len));
    packet.extend_from_slice(&total.to_ne_bytes());
    packet.extend_from_slice(&kind.to_ne_bytes());
    packet.extend_from_slice(&flags.to_ne_bytes());
    packet.extend_from_slice(&seq.to_ne_bytes());
    packet.extend_from_slice(&0u32.to_ne_bytes());
    packet.extend_from_slice(payload);
    Ok(packet)
}

/// The answers to one request: each message's header and payload, and
/// whether the kernel said a dump was interrupted by changes.
pub(in crate::sys) struct RawAnswer {
    pub messages: Vec<(NetlinkHeader, Zeroizing<Vec<u8>>)>,
    pub interrupted: bool,
}

/// The request and answer exchange of one blocking netlink socket, shared
/// by rtnetlink (`Netlink`) and xfrm netlink (`xfrm::Xfrm`).
pub(in crate::sys) struct Transport {
    pub socket: Socket,
    pub seq: u32,
    buf: Vec<u8>,
}

impl Transport {
    pub fn new(socket: Socket) -> Self {
        Transport {
            socket,
            seq: 0,
            buf: vec![0; 32 * 1024],
        }
    }

    /// Sends one request (header, then `payload`; requests other than dumps
    /// ask for an ACK) and collects the answers up to the ACK or
    /// NLMSG_DONE. The outer error is a local one (`sending` names the
    /// send), the inner one the kernel's.
    pub fn exchange(
        &mut self,
        kind: u16,
        flags: u16,
        payload: &[u8],
        sending: &str,
    ) -> io::Result<Result<RawAnswer, KernelError>> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let packet = request_packet(kind, flags, seq, payload)?;
        self.socket
            .send(&packet, 0)
            .map_err(|e| context(e, sending))?;

        let mut answer = RawAnswer {
            messages: Vec::new(),
            interrupted: false,
        };
        loop {
            let n = self.recv_datagram()?;
            let mut off = 0;
            while off + HEADER_LEN <= n {
                let data = &self.buf[off..n];
                let header = parse_header(data);
                let msg_len = header.length as usize;
                if msg_len < HEADER_LEN || msg_len > data.len() {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "malformed netlink answer: message of {msg_len} bytes in {} left",
                            data.len()
                        ),
                    ));
                }
                let payload = &data[HEADER_LEN..msg_len];
                off += msg_len.next_multiple_of(4);
                if header.sequence_number != seq {
                    // An answer to an earlier request that timed out.
                    continue;
                }
                match header.message_type {
                    NLMSG_ERROR => {
                        let code = read_i32(payload);
                        if code == 0 {
                            return Ok(Ok(answer));
                        }
                        return Ok(Err(KernelError::new(code, payload, header.flags, true)));
                    }
                    NLMSG_DONE => {
                        let code = read_i32(payload);
                        if code != 0 {
                            return Ok(Err(KernelError::new(code, payload, header.flags, false)));
                        }
                        return Ok(Ok(answer));
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        return Err(io::Error::other("netlink answer overrun"));
                    }
                    _ => {
                        if header.flags & NLM_F_DUMP_INTR != 0 {
                            answer.interrupted = true;
                        }
                        answer
                            .messages
                            .push((header, Zeroizing::new(payload.to_vec())));
                    }
                }
            }
        }
    }

    /// Receives one datagram into `self.buf` (grown to fit) and returns its
    /// length.
    fn recv_datagram(&mut self) -> io::Result<usize> {
        loop {
            let peeked = {
                let mut slice: &mut [u8] = &mut self.buf[..];
                self.socket
                    .recv(&mut slice, libc::MSG_PEEK | libc::MSG_TRUNC)
            };
            let size = match peeked {
                Ok(size) => size,
                Err(e) => return Err(recv_error(e)),
            };
            if size > self.buf.len() {
                self.buf.resize(size.next_multiple_of(4096), 0);
            }
            let mut slice: &mut [u8] = &mut self.buf[..];
            match self.socket.recv(&mut slice, 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(recv_error(e)),
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // xfrm answers (GETSA) carry keys.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

/// A blocking netlink socket of `protocol`, bound to a port the kernel
/// picks and connected to the kernel, with extended and capped acks asked
/// for and a receive timeout of [`Netlink::TIMEOUT`].
pub(in crate::sys) fn open_socket(protocol: isize, what: &str) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol).map_err(|e| context(e, what))?;
    socket.bind_auto().map_err(|e| context(e, what))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| context(e, what))?;
    // Both are optional: older kernels answer without the error text.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(Netlink::TIMEOUT.as_secs()).unwrap_or(5),
        tv_usec: 0,
    };
    // SAFETY: passes a live timeval and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast::<libc::c_void>(),
            TIMEVAL_LEN,
        )
    };
    if rc < 0 {
        return Err(os_error(format!("{what}: setting SO_RCVTIMEO")));
    }
    Ok(socket)
}

pub(in crate::sys) fn recv_error(e: io::Error) -> io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        io::Error::new(
            ErrorKind::TimedOut,
            format!("no answer from the kernel within {:?}", Netlink::TIMEOUT),
        )
    } else {
        context(e, "receiving a netlink answer")
    }
}

pub(in crate::sys) fn parse_header(data: &[u8]) -> NetlinkHeader {
    let mut h = NetlinkHeader::default();
    h.length = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
    h.message_type = u16::from_ne_bytes([data[4], data[5]]);
    h.flags = u16::from_ne_bytes([data[6], data[7]]);
    h.sequence_number = u32::from_ne_bytes([data[8], data[9], data[10], data[11]]);
    h.port_number = u32::from_ne_bytes([data[12], data[13], data[14], data[15]]);
    h
}

pub(in crate::sys) fn read_i32(payload: &[u8]) -> i32 {
    match payload.get(..4) {
        Some(b) => i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        // A truncated error message: call it an I/O error, never an ACK.
        None => -libc::EIO,
    }
}

/// The kernel's refusal: a negative errno and the extended-ack text.
#[derive(Debug)]
pub(in crate::sys) struct KernelError {
    errno: i32,
    message: Option<String>,
}

impl KernelError {
    /// From an NLMSG_ERROR or NLMSG_DONE payload: the code, then for
    /// NLMSG_ERROR the echoed request (only its header when the kernel
    /// says NLM_F_CAPPED, which we ask for), then with NLM_F_ACK_TLVS the
    /// extended-ack attributes.
    pub(in crate::sys) fn new(
        code: i32,
        payload: &[u8],
        flags: u16,
        is_error: bool,
    ) -> KernelError {
        let errno = code.checked_neg().unwrap_or(libc::EIO).max(1);
        let message = if flags & NLM_F_ACK_TLVS == 0 {
            None
        } else {
            let off = if !is_error {
                4
            } else if flags & NLM_F_CAPPED != 0 {
                4 + HEADER_LEN
            } else {
                let echoed = payload
                    .get(4..8)
                    .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize);
                4 + echoed.next_multiple_of(4)
            };
            find_ext_ack_message(payload.get(off..).unwrap_or_default())
        };
        KernelError { errno, message }
    }

    pub(in crate::sys) fn into_io(self, what: String) -> io::Error {
        context_detail(io::Error::from_raw_os_error(self.errno), what, self.message)
    }
}

/// The text of `NLMSGERR_ATTR_MSG` in a run of netlink attributes.
pub(super) fn find_ext_ack_message(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attrs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

//! UDP for ESP-in-UDP: sockets that several workers bind to one ip:port
//! ([`bind_reuseport`]), and batches of datagrams moved with one system call
//! each way ([`RecvBatch`] with `recvmmsg`, [`SendBatch`] with `sendmmsg`).
//!
//! Both batches own their packet buffers, allocated once when the batch is
//! made; `recv` and `flush` allocate nothing. The `mmsghdr`/`iovec`/
//! `sockaddr_in` arrays the kernel reads live in the batch too and are filled
//! in at every call (never kept as pointers across calls).
//!
//! UDP GSO (`UDP_SEGMENT`) on send and UDP GRO on receive are optional
//! ([`SendBatch::set_gso`], [`enable_gro`]): with them one system call
//! carries up to [`MAX_SEGMENTS`] datagrams of one flow in one message; the
//! datagrams on the wire and what the batches show are the same.
//!
//! The socket setup is here; the batches are in `recv` and `send`.

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use super::{context, os_error};

mod recv;
mod send;

pub use recv::RecvBatch;
pub use send::{SendBatch, SendStats};

/// Opens a non-blocking, close-on-exec UDP socket bound to `addr`, with
/// `SO_REUSEADDR` and `SO_REUSEPORT` set before the bind, so that several
/// workers can each own one socket on the same ip:port (the kernel spreads
/// the peers over them by a hash of the 4-tuple: one peer always lands on
/// the same socket).
///
/// `buffer_bytes` > 0 sets the receive and send buffers with
/// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (past `net.core.rmem_max`; needs
/// CAP_NET_ADMIN), falling back to `SO_RCVBUF`/`SO_SNDBUF` (capped by the
/// sysctls) when that is refused with EPERM. The kernel doubles the value
/// for its bookkeeping, as usual. 0 keeps the system defaults.
pub fn bind_reuseport(addr: SocketAddrV4, buffer_bytes: usize) -> io::Result<UdpSocket> {
    let buffer = libc::c_int::try_from(buffer_bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("binding UDP {addr}: socket buffer of {buffer_bytes} bytes is too large"),
        )
    })?;
    // SAFETY: socket takes no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(os_error(format!("opening a UDP socket for {addr}")));
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
        .map_err(|e| context(e, format!("setting SO_REUSEADDR on UDP {addr}")))?;
    set_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(|e| context(e, format!("setting SO_REUSEPORT on UDP {addr}")))?;
    if buffer > 0 {
        for (force, plain, name) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "receive"),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "send"),
        ] {
            match set_int(raw, libc::SOL_SOCKET, force, buffer) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    set_int(raw, libc::SOL_SOCKET, plain, buffer)
                }
                other => other,
            }
            .map_err(|e| {
                context(
                    e,
                    format!("setting the {name} buffer of UDP {addr} to {buffer_bytes} bytes"),
                )
            })?;
        }
    }
    let sa = to_sockaddr(addr);
    // SAFETY: `sa` is a live sockaddr_in of the length passed.
    let rc = unsafe {
        libc::bind(
            raw,
            (&raw const sa).cast::<libc::sockaddr>(),
            SOCKADDR_IN_LEN,
        )
    };
    if rc < 0 {
        return Err(os_error(format!("binding UDP {addr}")));
    }
    Ok(UdpSocket::from(fd))
}

/// The size of `sockaddr_in`, as the socket calls want it.
#[allow(clippy::cast_possible_truncation)] // 16 bytes
const SOCKADDR_IN_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// The size of a `c_int` socket option.
#[allow(clippy::cast_possible_truncation)] // 4 bytes
const INT_LEN: libc::socklen_t = std::mem::size_of::<libc::c_int>() as libc::socklen_t;

/// `AF_INET` as `sin_family` stores it.
#[allow(clippy::cast_possible_truncation)] // 2
const AF_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a live c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            INT_LEN,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads an integer socket option (e.g. `SO_RCVBUF`, to see what the kernel
/// granted).
pub fn get_int_option(
    sock: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = INT_LEN;
    // SAFETY: passes a live c_int and its length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc < 0 {
        Err(os_error(format!("reading socket option {level}/{name}")))
    } else {
        Ok(value)
    }
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: AF_INET,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    if sa.sin_family != AF_INET {
        return SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    }
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )
}

fn zeroed_sockaddr() -> libc::sockaddr_in {
    to_sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (integers and raw pointers); all zeroes
    // is a valid value (null pointers, zero lengths).
    unsafe { std::mem::zeroed() }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn check_batch_shape(what: &str, count: usize, buf_size: usize) -> io::Result<()> {
    if count == 0
        || buf_size == 0
        || count > 1024
        || u32::try_from(buf_size).is_err()
        || count.checked_mul(buf_size).is_none()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "making a {what} of {count} buffers of {buf_size} bytes: \
                 need 1..=1024 buffers of at least one byte"
            ),
        ));
    }
    Ok(())
}

/// `UDP_SEGMENT` (linux/udp.h): the GSO segment size, as a socket option or
/// a control message on send.
const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): the socket option enabling GRO, and the control
/// message carrying the segment size of a coalesced receive.
const UDP_GRO: libc::c_int = 104;
/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` was 64
/// until Linux 6.9) and in one GRO receive (`UDP_GRO_CNT_MAX`).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: one IPv4 packet of 65535 bytes less
/// the IP and UDP headers, rounded down for safety.
const GSO_MAX_BYTES: usize = 65_000;

/// The size of the `UDP_SEGMENT` control message's data.
#[allow(clippy::cast_possible_truncation)] // 2
const U16_LEN: u32 = std::mem::size_of::<u16>() as u32;

/// Room for one control message with an int (CMSG_SPACE(4) = 24 on 64-bit
/// Linux), aligned like `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 32]);

/// Whether the kernel knows UDP GSO (`UDP_SEGMENT`, Linux 4.18+) on `sock`.
pub fn gso_supported(sock: &UdpSocket) -> bool {
    get_int_option(sock, libc::SOL_UDP, UDP_SEGMENT).is_ok()
}

/// Turns on UDP GRO for `sock` (Linux 5.0+): the kernel may then hand one
/// [`RecvBatch`] buffer several datagrams of one flow at once, which the
/// batch splits again. Give such a batch buffers of 65535 bytes: a
/// coalesced receive larger than the buffer is cut.
pub fn enable_gro(sock: &UdpSocket) -> io::Result<()> {
    set_int(sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1).map_err(|e| context(e, "enabling UDP GRO"))
}

#[cfg(test)]
mod tests;

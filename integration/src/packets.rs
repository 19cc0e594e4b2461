//! Sending real packets from inside a namespace, and payload builders.
//!
//! The senders use ordinary sockets opened in the namespace (through
//! [`Netns::run_in`]); the kernel builds the Ethernet and IP headers and
//! routes the packet like any other. For raw Ethernet frames (XDP test runs)
//! see [`crate::frame`].

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::Netns;

/// IKE port.
pub const IKE_PORT: u16 = 500;
/// IKE/ESP-in-UDP port with NAT traversal (RFC 3948).
pub const NATT_PORT: u16 = 4500;
/// IP protocol number of ESP.
pub const IPPROTO_ESP: u8 = 50;
/// IKEv2 exchange type IKE_SA_INIT.
pub const IKE_SA_INIT: u8 = 34;
/// Length of the fixed IKEv2 header.
pub const IKE_HEADER_LEN: usize = 28;

/// Sends one UDP datagram from a socket bound to `src_bind` (port 0: any)
/// inside `ns`.
pub fn send_udp(
    ns: &Netns,
    src_bind: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Result<()> {
    ns.try_run_in(|| -> io::Result<()> {
        let sock = UdpSocket::bind(src_bind)?;
        let sent = sock.send_to(payload, dst)?;
        if sent != payload.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                payload.len()
            )));
        }
        Ok(())
    })
    .with_context(|| format!("sending UDP {src_bind} -> {dst} ({} bytes)", payload.len()))
}

/// A UDP socket bound to `addr` inside `ns` (usable from any thread).
pub fn bind_udp(ns: &Netns, addr: SocketAddrV4) -> Result<UdpSocket> {
    ns.try_run_in(|| UdpSocket::bind(addr))
        .with_context(|| format!("binding UDP {addr}"))
}

/// Makes `sock` send with a zero UDP checksum (`SO_NO_CHECK`), as ESP-in-UDP
/// senders do (RFC 3948 section 2.1: SHOULD be transmitted as zero; the
/// kernel's XFRM encapsulation does). It matters on veth: a checksum left
/// to offload (CHECKSUM_PARTIAL) is lost when XDP redirects the frame
/// through a CPU map, and the receiving socket then drops the datagram as a
/// checksum error.
pub fn udp_zero_checksum(sock: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: valid socket and a c_int option value of the given length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const on).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram, waiting at most `timeout`.
pub fn recv_udp(sock: &UdpSocket, timeout: Duration) -> Result<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let mut buf = vec![0u8; 65_536];
    let local = sock.local_addr()?;
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => {
            buf.truncate(n);
            Ok((buf, from))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            bail!("no UDP datagram arrived on {local} within {timeout:?}")
        }
        Err(e) => Err(e).with_context(|| format!("receiving on UDP {local}")),
    }
}

/// Sends `payload` as one IP packet of protocol `protocol` (e.g.
/// [`IPPROTO_ESP`]) to `dst`, from a raw socket opened inside `ns`.
pub fn send_raw_ip(ns: &Netns, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Result<()> {
    ns.try_run_in(|| -> io::Result<()> {
        let sock = RawIpSocket::open(protocol)?;
        let sent = sock.send_to(dst, payload)?;
        if sent != payload.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                payload.len()
            )));
        }
        Ok(())
    })
    .with_context(|| {
        format!(
            "sending IP protocol {protocol} to {dst} ({} bytes)",
            payload.len()
        )
    })
}

/// `socket(AF_INET, SOCK_RAW, protocol)`: sends payloads (the kernel adds the
/// IP header) and receives whole IPv4 packets (IP header included) of that
/// protocol.
#[derive(Debug)]
pub struct RawIpSocket {
    fd: OwnedFd,
    protocol: u8,
}

impl RawIpSocket {
    /// Opens a raw socket in the calling thread's namespace (use inside
    /// [`Netns::run_in`], or [`open_in`](Self::open_in)).
    pub fn open(protocol: u8) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, protocol })
    }

    /// Opens a raw socket inside `ns`.
    pub fn open_in(ns: &Netns, protocol: u8) -> Result<Self> {
        ns.try_run_in(|| Self::open(protocol))
            .with_context(|| format!("opening a raw socket for IP protocol {protocol}"))
    }

    /// The IP protocol number.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Sends one packet carrying `payload` to `dst`.
    pub fn send_to(&self, dst: Ipv4Addr, payload: &[u8]) -> io::Result<usize> {
        // SAFETY: sockaddr_in is plain data; all zeroes is valid.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::sa_family_t::try_from(libc::AF_INET).map_err(io::Error::other)?;
        addr.sin_addr.s_addr = u32::from(dst).to_be();
        let addr_len =
            libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).map_err(io::Error::other)?;
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&raw const addr).cast(),
                addr_len,
            )
        };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }

    /// Receives one packet (IPv4 header included), waiting at most
    /// `timeout`; `None` if nothing arrived.
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if ready < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if ready == 0 {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                continue;
            }
            let mut buf = vec![0u8; 65_536];
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if let Ok(n) = usize::try_from(n) {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            let err = io::Error::last_os_error();
            if !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                return Err(err);
            }
        }
    }
}

impl AsFd for RawIpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The payload of an IPv4 packet (what follows its header), or `None` if
/// `packet` is not a well-formed IPv4 packet.
pub fn ipv4_payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if ihl < 20 || total < ihl || packet.len() < total {
        return None;
    }
    Some(&packet[ihl..total])
}

/// A 28-byte IKEv2 header that looks like the first IKE_SA_INIT request:
/// initiator SPI `spi_i`, responder SPI 0, no next payload, version 2.0,
/// exchange type 34, flags Initiator, message id 0, length 28.
pub fn ike_sa_init_like(spi_i: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(IKE_HEADER_LEN);
    h.extend_from_slice(&spi_i.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // responder SPI
    h.push(0); // next payload: none
    h.push(0x20); // major version 2, minor 0
    h.push(IKE_SA_INIT);
    h.push(0x08); // flags: Initiator
    h.extend_from_slice(&0u32.to_be_bytes()); // message id
    let len = u32::try_from(IKE_HEADER_LEN).unwrap_or(u32::MAX);
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// `ike` behind the 4-byte non-ESP marker used on port 4500 (RFC 3948).
pub fn non_esp_marker(ike: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + ike.len());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(ike);
    out
}

/// An ESP-looking packet: SPI, sequence number, then `body_len` filler bytes
/// (0, 1, 2, ... wrapping).
pub fn esp(spi: u32, seq: u32, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body_len);
    out.extend_from_slice(&spi.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend((0..=u8::MAX).cycle().take(body_len));
    out
}

/// A NAT-keepalive (RFC 3948): one byte 0xff.
pub fn natt_keepalive() -> Vec<u8> {
    vec![0xff]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_header_layout() {
        let h = ike_sa_init_like(0x0102_0304_0506_0708);
        assert_eq!(h.len(), IKE_HEADER_LEN);
        assert_eq!(&h[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&h[8..16], &[0; 8]);
        assert_eq!(h[16], 0);
        assert_eq!(h[17], 0x20);
        assert_eq!(h[18], 34);
        assert_eq!(h[19], 0x08);
        assert_eq!(&h[20..24], &[0; 4]);
        assert_eq!(u32::from_be_bytes([h[24], h[25], h[26], h[27]]), 28);
    }

    #[test]
    fn marker_esp_keepalive() {
        let ike = ike_sa_init_like(7);
        let m = non_esp_marker(&ike);
        assert_eq!(&m[..4], &[0; 4]);
        assert_eq!(&m[4..], &ike[..]);

        let e = esp(0xdead_beef, 5, 300);
        assert_eq!(e.len(), 308);
        assert_eq!(&e[..8], &[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 5]);
        assert_eq!(e[8], 0);
        assert_eq!(e[8 + 257], 1);

        assert_eq!(natt_keepalive(), vec![0xff]);
    }

    #[test]
    fn ipv4_payload_uses_ihl_and_total_length() {
        let mut p = vec![0x46, 0, 0, 27];
        p.resize(24, 0);
        p.extend_from_slice(b"abc");
        p.extend_from_slice(b"trailer");
        assert_eq!(ipv4_payload(&p), Some(&b"abc"[..]));
        assert_eq!(ipv4_payload(&p[..20]), None);
        assert_eq!(ipv4_payload(&[0x60; 40]), None);
    }
}

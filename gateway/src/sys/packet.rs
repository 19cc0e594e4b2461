//! NHRP on the kernel datapath's GRE links, the way OpenNHRP does it on
//! Linux: an AF_PACKET `SOCK_DGRAM` socket for protocol 0x2001.
//!
//! RFC 2332 NHRP rides in GRE with protocol type 0x2001 (section 5: the
//! NBMA-specific encapsulation; for GRE, RFC 1701's protocol type field).
//! ip_gre maps that field to and from `skb->protocol`: a decapsulated NHRP
//! packet arrives on the link as protocol 0x2001, which a packet socket of
//! that protocol receives, and a packet sent on a packet socket with
//! `sll_protocol` 0x2001 leaves the link with that GRE protocol type. With
//! `SOCK_DGRAM` the kernel strips (and, sending, adds) the link-layer
//! header, so the bytes are the NHRP packet from its fixed header on; a
//! point-to-point ip_gre link has no header ops, so no address is needed.
//!
//! A packet socket belongs to the network namespace of the thread that
//! opens it, like the netlink ones.

use std::{
    io,
    mem::{offset_of, size_of},
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

/// One packet [`PacketSocket::recv`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The packet's length; more than the buffer means it was cut.
    pub len: usize,
    /// The link it came in on (`sll_ifindex`).
    pub ifindex: u32,
    /// `sll_pkttype`: `PACKET_HOST`, `PACKET_OUTGOING`, ...
    pub pkttype: u8,
}

impl Received {
    /// True when the buffer was too small for the whole packet.
    pub fn truncated(&self, buffer: usize) -> bool {
        self.len > buffer
    }
}

/// An AF_PACKET `SOCK_DGRAM` socket, close-on-exec.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    /// Host byte order; 0 for a send-only socket.
    protocol: u16,
}

impl PacketSocket {
    /// A socket that receives every packet of `protocol` (host byte order)
    /// from every link of the namespace, and sends.
    pub fn open(protocol: u16) -> io::Result<PacketSocket> {
        // SAFETY: socket takes no pointers.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol.to_be()),
            )
        };
        if fd < 0 {
            return Err(super::os_error(format!(
                "opening an AF_PACKET socket for protocol {protocol:#06x}"
            )));
        }
        Ok(PacketSocket {
            // SAFETY: `fd` was just returned by socket and is owned by
            // nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            protocol,
        })
    }

    /// A socket that only sends: protocol 0 binds it to no protocol, so
    /// the kernel queues nothing on it that nobody would read.
    pub fn send_only() -> io::Result<PacketSocket> {
        Self::open(0)
    }

    /// The protocol it receives (host byte order), 0 for none.
    pub fn protocol(&self) -> u16 {
        self.protocol
    }

    /// Sends `packet` out of link `ifindex` as `protocol` (host byte order),
    /// which ip_gre puts in the GRE protocol type field.
    pub fn send(&self, ifindex: u32, protocol: u16, packet: &[u8]) -> io::Result<()> {
        let what = || {
            format!(
                "sending {} bytes of protocol {protocol:#06x} out of link {ifindex}",
                packet.len()
            )
        };
        let index = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, what()))?;
        let mut addr = empty_sockaddr_ll();
        addr.sll_protocol = protocol.to_be();
        addr.sll_ifindex = index;
        // SAFETY: `packet` is valid for `packet.len()` bytes; `addr` is a
        // live sockaddr_ll whose size is passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast::<libc::c_void>(),
                packet.len(),
                0,
                (&raw const addr).cast::<libc::sockaddr>(),
                SOCKADDR_LL_LEN,
            )
        };
        if n < 0 {
            return Err(super::os_error(what()));
        }
        if n.cast_unsigned() != packet.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{}: only {n} bytes sent", what()),
            ));
        }
        Ok(())
    }

    /// Reads one packet into `buf` without waiting: `None` when there is
    /// none. The length is the packet's (`MSG_TRUNC`), so a packet cut to
    /// fit is seen as such. Allocates nothing.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let mut addr = empty_sockaddr_ll();
        let mut addr_len = SOCKADDR_LL_LEN;
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `addr`
            // is a live sockaddr_ll of `addr_len` bytes.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&raw mut addr).cast::<libc::sockaddr>(),
                    &raw mut addr_len,
                )
            };
            if n >= 0 {
                let ifindex = u32::try_from(addr.sll_ifindex).unwrap_or(0);
                return Ok(Some(Received {
                    len: n.cast_unsigned(),
                    ifindex,
                    pkttype: addr.sll_pkttype,
                }));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => {
                    return Err(super::context(
                        err,
                        format!(
                            "receiving on the AF_PACKET socket for protocol {:#06x}",
                            self.protocol
                        ),
                    ));
                }
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The size of `sockaddr_ll` (20 bytes): a `SOCK_DGRAM` sender must pass
/// at least the offset of `sll_addr` plus the link's address length (4
/// for GRE).
#[allow(clippy::cast_possible_truncation)] // 20 bytes
const SOCKADDR_LL_LEN: libc::socklen_t = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
const _: () =
    assert!(size_of::<libc::sockaddr_ll>() >= offset_of!(libc::sockaddr_ll, sll_addr) + 4);

/// `AF_PACKET` as `sll_family` stores it.
#[allow(clippy::cast_possible_truncation)] // 17
const AF_PACKET: libc::c_ushort = libc::AF_PACKET as libc::c_ushort;

fn empty_sockaddr_ll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: AF_PACKET,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::net::ETH_P_NHRP;
    use crate::sys::tests::in_netns;

    #[test]
    fn sockaddr_ll_is_what_the_kernel_expects() {
        assert_eq!(SOCKADDR_LL_LEN, 20);
        let mut a = empty_sockaddr_ll();
        a.sll_protocol = ETH_P_NHRP.to_be();
        // Network byte order in memory: 0x20 then 0x01.
        // SAFETY: sockaddr_ll is plain old data of 20 bytes.
        let bytes: [u8; 20] = unsafe { std::mem::transmute(a) };
        assert_eq!(bytes[2..4], [0x20, 0x01]);
        assert_eq!(u16::from_ne_bytes([bytes[0], bytes[1]]), AF_PACKET);
    }

    /// The socket works where no GRE exists: nothing to read, and a send to a
    /// link that does not exist says which.
    #[test]
    fn nhrp_socket_without_gre() {
        in_netns("pktnhrp", || {
            let socket = PacketSocket::open(ETH_P_NHRP).unwrap();
            assert_eq!(socket.protocol(), ETH_P_NHRP);
            let mut buf = [0u8; 64];
            assert_eq!(socket.recv(&mut buf).unwrap(), None);
            let err = socket.send(999_999, ETH_P_NHRP, &[0; 20]).unwrap_err();
            assert_eq!(super::super::raw_os_error(&err), Some(libc::ENXIO), "{err}");
            assert!(
                err.to_string()
                    .starts_with("sending 20 bytes of protocol 0x2001 out of link 999999: "),
                "{err}"
            );
            let err = socket.send(u32::MAX, ETH_P_NHRP, &[0; 20]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            PacketSocket::send_only().unwrap();
        });
    }

    /// Protocol 0x2001 over a veth pair (packet sockets skip what loops
    /// back through `lo`): the receiver gets the bytes after the link-layer
    /// header and the index of the link they came in on.
    #[test]
    fn nhrp_crosses_a_veth_pair() {
        let lab = integration::Lab::new("pktveth").unwrap();
        let a = lab.netns("a").unwrap();
        let b = lab.netns("b").unwrap();
        let (la, lb) = lab.veth(&a, &b).unwrap();
        let (ia, ib) = (la.ifindex().unwrap(), lb.ifindex().unwrap());
        let receiver = b
            .run_in(|| PacketSocket::open(ETH_P_NHRP).unwrap())
            .unwrap();
        let sender = a.run_in(|| PacketSocket::send_only().unwrap()).unwrap();
        let packet: Vec<u8> = (0..40u8).collect();
        sender.send(ia, ETH_P_NHRP, &packet).unwrap();
        let mut buf = [0u8; 2048];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let got = loop {
            if let Some(r) = receiver.recv(&mut buf).unwrap() {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "nothing received");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(got.ifindex, ib);
        // Sent to MAC 00:..:00 (no sll_addr): another host's on Ethernet.
        assert_eq!(got.pkttype, libc::PACKET_OTHERHOST);
        assert_eq!(&buf[..got.len], &packet[..]);
        // Cut to fit: the length says so.
        sender.send(ia, ETH_P_NHRP, &packet).unwrap();
        let mut small = [0u8; 8];
        let got = loop {
            if let Some(r) = receiver.recv(&mut small).unwrap() {
                break r;
            }
            assert!(std::time::Instant::now() < deadline, "nothing received");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert!(got.truncated(small.len()), "{got:?}");
        assert_eq!(got.len, 40);
        // The send-only socket queued nothing.
        assert_eq!(sender.recv(&mut buf).unwrap(), None);
    }
}

//! Multi-queue TUN devices: one queue per datapath worker.
//!
//! [`Tun::create`] opens `/dev/net/tun` once per queue with
//! `IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE` and the same name, so the kernel
//! spreads the flows it routes into the device over the queues (by flow
//! hash). Each queue is a non-blocking, close-on-exec descriptor carrying
//! bare IP packets (no packet-information header). The device is not
//! persistent: it disappears, with its addresses and routes, when the last
//! queue is closed.

use std::{
    ffi::CStr,
    fmt, io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
};

use super::{context, os_error};

/// The kernel's limit on interface names, including the terminating NUL.
pub const IFNAMSIZ: usize = libc::IFNAMSIZ;

/// The kernel's limit on the queues of one TUN device (`MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// `struct ifreq` as TUNSETIFF reads and writes it: the name, then the flags
/// (a short at the start of the union), padded to the size of the union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TUN device and its queues.
pub struct Tun {
    name: String,
    ifindex: u32,
    queues: Vec<TunQueue>,
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .finish()
    }
}

impl Tun {
    /// Creates the TUN device `name` (in the network namespace of the
    /// calling thread) with `queues` queues (1..=256). `name` must fit
    /// IFNAMSIZ (at most 15 bytes) and contain no NUL; a kernel pattern like
    /// `gwtun%d` is allowed and [`name`](Self::name) tells the name given.
    /// Opening a name that exists as a TUN device attaches to it (when its
    /// flags match); a name used by another kind of device is an error.
    pub fn create(name: &str, queues: usize) -> io::Result<Tun> {
        let what = || format!("creating TUN device {name:?} with {queues} queues");
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: the name must be 1 to {} bytes without NUL",
                    what(),
                    IFNAMSIZ - 1
                ),
            ));
        }
        if queues == 0 || queues > MAX_QUEUES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: 1 to {MAX_QUEUES} queues", what()),
            ));
        }
        let mut opened = Vec::with_capacity(queues);
        let mut actual = name.to_owned();
        for q in 0..queues {
            let queue =
                open_queue(&actual).map_err(|e| context(e, format!("{}: queue {q}", what())))?;
            if q == 0 {
                actual = queue.1;
            }
            opened.push(TunQueue { fd: queue.0 });
        }
        let cname = std::ffi::CString::new(actual.as_str())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(os_error(format!(
                "looking up the index of TUN device {actual}"
            )));
        }
        Ok(Tun {
            name: actual,
            ifindex,
            queues: opened,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's interface index (in its namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queues, one per worker.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// The queues, to hand one to each worker thread. The device lives as
    /// long as any of them is open.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }
}

/// Opens one queue of TUN device `name`; returns it and the name the kernel
/// gave the device.
fn open_queue(name: &str) -> io::Result<(OwnedFd, String)> {
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_error("opening /dev/net/tun"));
    }
    // SAFETY: `fd` was just returned by open() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: [0; IFNAMSIZ],
        #[allow(clippy::cast_possible_truncation)] // 0x1101 fits a short
        flags: (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as libc::c_short,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src.cast_signed();
    }
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; `req` has its
    // layout and size (40 bytes) and lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
    if rc < 0 {
        return Err(os_error("TUNSETIFF"));
    }
    req.name[IFNAMSIZ - 1] = 0;
    // SAFETY: the name is NUL-terminated (just forced).
    let given = unsafe { CStr::from_ptr(req.name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((fd, given))
}

/// One queue of a TUN device: reads and writes whole IP packets.
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
}

impl TunQueue {
    /// Reads one packet into `buf` and returns its length (a packet larger
    /// than `buf` is cut). `WouldBlock` when none is waiting (plain OS
    /// error: nothing is allocated). EINTR is retried.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: reads at most buf.len() bytes into `buf`.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Writes one packet (an IPv4 or IPv6 packet, starting at its IP
    /// header) into the kernel, as if the device had received it. EINTR is
    /// retried; `WouldBlock` passes through.
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: writes packet.len() bytes from `packet`.
            let n = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    packet.as_ptr().cast::<libc::c_void>(),
                    packet.len(),
                )
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        net::{Ipv4Addr, UdpSocket},
        time::{Duration, Instant},
    };

    use super::*;
    use crate::sys::{
        netlink::Netlink,
        poll::poll_readable,
        raw_os_error,
        tests::{in_netns, in_netns_with},
    };

    const HUB: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
    const SPOKE: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);

    /// Reads one IPv4 packet from whichever queue has one (bounded wait);
    /// skips IPv6 (router solicitations and the like once the link is up).
    fn read_any(queues: &[TunQueue], buf: &mut [u8]) -> (usize, usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let fds: Vec<_> = queues.iter().map(AsFd::as_fd).collect();
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no packet on any queue");
            let ready = poll_readable(&fds, Some(left)).unwrap();
            for q in ready.iter() {
                match queues[q].read(buf) {
                    Ok(n) if n > 0 && buf[0] >> 4 == 4 => return (q, n),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }

    fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        #[allow(clippy::cast_possible_truncation)]
        !(sum as u16)
    }

    /// An IPv4 packet with a 20-byte header.
    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap();
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        let sum = checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn setup(tun: &Tun) -> Netlink {
        let mut nl = Netlink::open().unwrap();
        let idx = nl.link_index(tun.name()).unwrap();
        assert_eq!(idx, tun.ifindex());
        nl.set_mtu(idx, 1400).unwrap();
        nl.add_address(idx, HUB, 32, Some(SPOKE)).unwrap();
        nl.set_link_up(idx).unwrap();
        nl
    }

    #[test]
    fn udp_through_a_two_queue_tun_and_back() {
        in_netns_with("tunudp", |ns| {
            let tun = Tun::create("gwtun0", 2).unwrap();
            assert_eq!(tun.name(), "gwtun0");
            assert_eq!(tun.queues().len(), 2);
            let _nl = setup(&tun);
            let shown = String::from_utf8(
                ns.ip(["-o", "addr", "show", "dev", "gwtun0"])
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert!(
                shown.contains("inet 10.1.1.1 peer 10.1.1.100/32"),
                "{shown}"
            );
            let link = String::from_utf8(
                ns.ip(["-o", "link", "show", "dev", "gwtun0"])
                    .unwrap()
                    .stdout,
            )
            .unwrap();
            assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");

            let sock = UdpSocket::bind((HUB, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let port = sock.local_addr().unwrap().port();
            sock.send_to(b"hello spoke", (SPOKE, 4500)).unwrap();

            let mut buf = [0u8; 2048];
            let (_q, n) = read_any(tun.queues(), &mut buf);
            let pkt = &buf[..n];
            assert_eq!(pkt[0] >> 4, 4, "IPv4, no packet-information header");
            assert_eq!(pkt[9], 17, "UDP");
            assert_eq!(&pkt[12..16], &HUB.octets());
            assert_eq!(&pkt[16..20], &SPOKE.octets());
            assert_eq!(u16::from_be_bytes([pkt[20], pkt[21]]), port);
            assert_eq!(u16::from_be_bytes([pkt[22], pkt[23]]), 4500);
            assert_eq!(&pkt[28..], b"hello spoke");

            // The answer, written into each queue in turn: both deliver.
            for (i, q) in tun.queues().iter().enumerate() {
                let body = format!("hello hub {i}");
                let mut udp = Vec::new();
                udp.extend_from_slice(&4500u16.to_be_bytes());
                udp.extend_from_slice(&port.to_be_bytes());
                udp.extend_from_slice(&u16::try_from(8 + body.len()).unwrap().to_be_bytes());
                udp.extend_from_slice(&[0, 0]); // no UDP checksum (IPv4)
                udp.extend_from_slice(body.as_bytes());
                let reply = ipv4(SPOKE, HUB, 17, &udp);
                assert_eq!(q.write(&reply).unwrap(), reply.len());
                let mut got = [0u8; 64];
                let (len, from) = sock.recv_from(&mut got).unwrap();
                assert_eq!(&got[..len], body.as_bytes());
                assert_eq!(from, (SPOKE, 4500).into());
            }
        });
    }

    #[test]
    fn ping_is_answered_through_the_tun() {
        in_netns_with("tunping", |ns| {
            let tun = Tun::create("gwtun0", 2).unwrap();
            let _nl = setup(&tun);
            let ping = ns
                .spawn(std::process::Command::new("ping").args(["-c1", "-W3", "10.1.1.100"]))
                .unwrap();
            let mut buf = [0u8; 2048];
            let (_q, n) = read_any(tun.queues(), &mut buf);
            let req = &buf[..n];
            assert_eq!(req[9], 1, "ICMP");
            assert_eq!(req[20], 8, "echo request");
            // Echo reply: same identifier, sequence and data.
            let mut icmp = req[20..].to_vec();
            icmp[0] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            let sum = checksum(&icmp);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            let reply = ipv4(SPOKE, HUB, 1, &icmp);
            tun.queues()[1].write(&reply).unwrap();
            let status = ping.wait_timeout(Duration::from_secs(10)).unwrap();
            assert!(status.success(), "ping: {}", ping.stdout_text());
        });
    }

    #[test]
    fn the_device_vanishes_with_its_last_queue() {
        in_netns("tungone", || {
            let tun = Tun::create("gwtun0", 3).unwrap();
            let mut nl = Netlink::open().unwrap();
            assert_eq!(nl.link_index("gwtun0").unwrap(), tun.ifindex());
            let mut queues = tun.into_queues();
            queues.truncate(1);
            // One queue left: still there.
            assert!(nl.link_index("gwtun0").is_ok());
            drop(queues);
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match nl.link_index("gwtun0") {
                    Err(e) => {
                        assert_eq!(raw_os_error(&e), Some(libc::ENODEV), "{e}");
                        assert!(e.to_string().contains("gwtun0"), "{e}");
                        break;
                    }
                    Ok(_) => assert!(Instant::now() < deadline, "gwtun0 still exists"),
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }

    #[test]
    fn names_are_checked_and_patterns_resolved() {
        in_netns("tunname", || {
            let err = Tun::create("a-name-too-long-for-linux", 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("1 to 15 bytes"), "{err}");
            assert!(Tun::create("", 1).is_err());
            assert!(Tun::create("gw0", 0).is_err());
            assert!(Tun::create("gw0", MAX_QUEUES + 1).is_err());
            // 15 bytes fit.
            let long = Tun::create("gw345678901234x", 1).unwrap();
            assert_eq!(long.name().len(), 15);
            let pattern = Tun::create("gwp%d", 2).unwrap();
            assert_eq!(pattern.name(), "gwp0");
            assert_eq!(pattern.queues().len(), 2);
        });
    }

    #[test]
    fn queues_are_non_blocking_and_close_on_exec() {
        in_netns("tunflags", || {
            let tun = Tun::create("gwtun0", 2).unwrap();
            for q in tun.queues() {
                // SAFETY: fcntl on a live descriptor.
                let fl = unsafe { libc::fcntl(q.as_raw_fd(), libc::F_GETFL) };
                let fd = unsafe { libc::fcntl(q.as_raw_fd(), libc::F_GETFD) };
                assert!(fl & libc::O_NONBLOCK != 0);
                assert!(fd & libc::FD_CLOEXEC != 0);
                let mut buf = [0u8; 64];
                assert_eq!(
                    q.read(&mut buf).unwrap_err().kind(),
                    io::ErrorKind::WouldBlock
                );
            }
        });
    }
}

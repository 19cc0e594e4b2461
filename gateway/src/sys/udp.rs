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

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

use super::{context, os_error, poll::poll_writable};

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

/// Where one received datagram sits.
#[derive(Clone, Copy, Debug, Default)]
struct Segment {
    slot: u32,
    offset: u32,
    len: u32,
}

/// Up to N receive buffers, filled with one `recvmmsg` call.
///
/// After [`recv`](Self::recv) returned `n`, datagrams `0..n` are valid:
/// [`buf`](Self::buf) / [`buf_mut`](Self::buf_mut) (in-place decryption),
/// [`len`](Self::len), [`source`](Self::source). Usually each buffer holds
/// one datagram; with [`enable_gro`] on the socket one buffer may hold
/// several of one flow, and they are listed one by one, so `n` may exceed
/// [`capacity`](Self::capacity). A datagram larger than its buffer is cut
/// and flagged by [`truncated`](Self::truncated); the datapath should drop
/// it. Accessors given an index past the last datagram return empty values.
pub struct RecvBatch {
    buf_size: usize,
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_in]>,
    iovecs: Box<[libc::iovec]>,
    controls: Box<[Control]>,
    hdrs: Box<[libc::mmsghdr]>,
    segs: Box<[Segment]>,
    received: usize,
}

// SAFETY: the raw pointers inside `iovecs` and `hdrs` only ever point into
// this batch's own heap buffers, and are rewritten before every system call;
// they are never shared, so moving the batch to another thread is sound.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// A batch of `count` buffers of `buf_size` bytes each (1..=1024
    /// buffers of at most 4 GiB; all memory is allocated here, once).
    pub fn new(count: usize, buf_size: usize) -> io::Result<RecvBatch> {
        check_batch_shape("receive batch", count, buf_size)?;
        Ok(RecvBatch {
            buf_size,
            bufs: vec![0u8; count * buf_size].into_boxed_slice(),
            addrs: vec![zeroed_sockaddr(); count].into_boxed_slice(),
            iovecs: vec![empty_iovec(); count].into_boxed_slice(),
            controls: vec![Control([0; 32]); count].into_boxed_slice(),
            hdrs: (0..count).map(|_| empty_mmsghdr()).collect(),
            segs: vec![Segment::default(); count * MAX_SEGMENTS].into_boxed_slice(),
            received: 0,
        })
    }

    /// How many buffers one call can fill.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// How many datagrams the last [`recv`](Self::recv) received.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Whether the last receive got no datagram.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Receives with one `recvmmsg(MSG_DONTWAIT)` and returns how many
    /// datagrams arrived (at least one). When nothing is waiting the error
    /// is `WouldBlock` (a plain OS error, nothing allocated): poll and call
    /// again. EINTR is retried.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        self.received = 0;
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.hdrs.len() {
            self.iovecs[i] = libc::iovec {
                // SAFETY: i * buf_size + buf_size <= bufs.len().
                iov_base: unsafe { base.add(i * self.buf_size) }.cast::<libc::c_void>(),
                iov_len: self.buf_size,
            };
            let hdr = &mut self.hdrs[i];
            hdr.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast::<libc::c_void>();
            hdr.msg_hdr.msg_namelen = SOCKADDR_IN_LEN;
            hdr.msg_hdr.msg_iov = &raw mut self.iovecs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = (&raw mut self.controls[i]).cast::<libc::c_void>();
            hdr.msg_hdr.msg_controllen = std::mem::size_of::<Control>();
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let vlen = u32::try_from(self.hdrs.len()).unwrap_or(u32::MAX);
        let n = loop {
            // SAFETY: `hdrs` has `vlen` entries whose pointers were just set
            // to live buffers of this batch; no timeout pointer.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    vlen,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if let Ok(n) = usize::try_from(n) {
                break n.min(self.hdrs.len());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Err(err),
                _ => return Err(context(err, "receiving UDP datagrams (recvmmsg)")),
            }
        };
        let mut count = 0;
        for slot in 0..n {
            let hdr = &self.hdrs[slot];
            let len = (hdr.msg_len as usize).min(self.buf_size);
            let step = gro_segment_size(&hdr.msg_hdr)
                .filter(|&g| g > 0 && g < len)
                .unwrap_or(len.max(1));
            let mut offset = 0;
            // More segments than room (never with the kernel's GRO limit of
            // 64 per buffer) are dropped.
            while let Some(seg) = self.segs.get_mut(count) {
                let this = step.min(len - offset);
                // Buffers are at most 4 GiB (checked at construction).
                #[allow(clippy::cast_possible_truncation)]
                {
                    *seg = Segment {
                        slot: slot as u32,
                        offset: offset as u32,
                        len: this as u32,
                    };
                }
                count += 1;
                offset += this;
                if offset >= len {
                    break;
                }
            }
        }
        self.received = count;
        Ok(count)
    }

    fn segment(&self, i: usize) -> Option<Segment> {
        if i < self.received {
            self.segs.get(i).copied()
        } else {
            None
        }
    }

    /// The length of datagram `i`.
    pub fn len(&self, i: usize) -> usize {
        self.segment(i).map_or(0, |s| s.len as usize)
    }

    /// Whether datagram `i` was larger than its buffer (and so was cut).
    pub fn truncated(&self, i: usize) -> bool {
        self.segment(i)
            .is_some_and(|s| self.hdrs[s.slot as usize].msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
    }

    /// Where datagram `i` came from (0.0.0.0:0 for an index out of range).
    pub fn source(&self, i: usize) -> SocketAddrV4 {
        self.segment(i).map_or_else(
            || SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            |s| from_sockaddr(&self.addrs[s.slot as usize]),
        )
    }

    /// Datagram `i`.
    pub fn buf(&self, i: usize) -> &[u8] {
        match self.segment(i) {
            Some(s) => {
                let start = s.slot as usize * self.buf_size + s.offset as usize;
                &self.bufs[start..start + s.len as usize]
            }
            None => &[],
        }
    }

    /// Datagram `i`, writable (for decryption in place).
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        match self.segment(i) {
            Some(s) => {
                let start = s.slot as usize * self.buf_size + s.offset as usize;
                &mut self.bufs[start..start + s.len as usize]
            }
            None => &mut [],
        }
    }
}

/// The `UDP_GRO` segment size in a received message's control data.
fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    if hdr.msg_control.is_null() || hdr.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled msg_control/msg_controllen with well-formed
    // control messages inside our Control buffer; the CMSG_* helpers stay
    // within msg_controllen, and the int is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// What a [`SendBatch`] has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Datagrams dropped because the kernel refused them (e.g. no route,
    /// message too long, port 0); see `last_error`.
    pub dropped_error: u64,
    /// Datagrams dropped because the socket stayed full (EAGAIN) for longer
    /// than the batch's wait limit.
    pub dropped_full: u64,
    /// The errno of the last refused datagram.
    pub last_error: Option<i32>,
    /// Sends that carried several datagrams with UDP GSO.
    pub gso_sends: u64,
    /// GSO sends the kernel refused, whose datagrams were sent again one by
    /// one (EIO, the kernel cannot do GSO on that path, also turns GSO off).
    pub gso_fallbacks: u64,
}

/// Up to N datagrams to send, each written in place into its own
/// preallocated buffer, then sent with `sendmmsg`.
///
/// Usage: `while let Some(buf) = batch.slot() { write a packet of len bytes
/// into buf; batch.commit(len, dest)?; }` then [`flush`](Self::flush).
///
/// With [`set_gso`](Self::set_gso), runs of consecutive datagrams to the
/// same destination with the same length (the last of a run may be
/// shorter) go as one UDP GSO send (`UDP_SEGMENT`, at most
/// [`MAX_SEGMENTS`] datagrams and 65000 bytes); the receiver sees the same
/// datagrams. A GSO send the kernel refuses is retried datagram by
/// datagram, so GSO never loses what plain sends would deliver.
///
/// Flush policy: datagrams the kernel refuses one by one (EMSGSIZE,
/// ENETUNREACH, EINVAL, EPERM from a firewall, ...) are dropped and counted
/// in [`SendStats::dropped_error`], and the rest of the batch still goes.
/// When the socket buffer is full (EAGAIN), flush waits for POLLOUT, at
/// most [`max_wait`](Self::set_max_wait) in total per flush (default 2 ms),
/// then drops what is left and counts it in [`SendStats::dropped_full`]: a
/// datapath that waits longer only moves the loss into the TUN queue, and a
/// bounded wait keeps the worker's receive side going. Only errors that say
/// the socket itself is unusable (EBADF, ENOTSOCK, EFAULT) are returned;
/// the batch is empty after every flush either way.
pub struct SendBatch {
    buf_size: usize,
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    /// Where each queued datagram starts inside its buffer.
    offsets: Box<[usize]>,
    dests: Box<[libc::sockaddr_in]>,
    iovecs: Box<[libc::iovec]>,
    controls: Box<[Control]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// How many datagrams the message `hdrs[g]` carries.
    group_len: Box<[usize]>,
    queued: usize,
    max_wait: Duration,
    gso: bool,
    stats: SendStats,
}

// SAFETY: as for RecvBatch: the raw pointers point into the batch's own heap
// buffers only and are rewritten before every system call.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .field("queued", &self.queued)
            .field("gso", &self.gso)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// The default bound on waiting for a full socket in one flush.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(2);

    /// A batch of `count` buffers of `buf_size` bytes each (1..=1024
    /// buffers of at most 4 GiB; all memory is allocated here, once). GSO
    /// is off.
    pub fn new(count: usize, buf_size: usize) -> io::Result<SendBatch> {
        check_batch_shape("send batch", count, buf_size)?;
        Ok(SendBatch {
            buf_size,
            bufs: vec![0u8; count * buf_size].into_boxed_slice(),
            lens: vec![0; count].into_boxed_slice(),
            offsets: vec![0; count].into_boxed_slice(),
            dests: vec![zeroed_sockaddr(); count].into_boxed_slice(),
            iovecs: vec![empty_iovec(); count].into_boxed_slice(),
            controls: vec![Control([0; 32]); count].into_boxed_slice(),
            hdrs: (0..count).map(|_| empty_mmsghdr()).collect(),
            group_len: vec![0; count].into_boxed_slice(),
            queued: 0,
            max_wait: Self::DEFAULT_MAX_WAIT,
            gso: false,
            stats: SendStats::default(),
        })
    }

    /// How many datagrams the batch holds.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// The size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// How many datagrams are queued.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether every slot is queued (flush before the next one).
    pub fn is_full(&self) -> bool {
        self.queued == self.capacity()
    }

    /// Sets the bound on waiting for a full socket in one
    /// [`flush`](Self::flush) (zero: drop at once on EAGAIN).
    pub fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait;
    }

    /// Turns UDP GSO on or off (see the type's documentation); turn it on
    /// when [`gso_supported`] says the kernel has it.
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Whether UDP GSO is on (a flush turns it off when the kernel cannot
    /// do it on the path taken).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Counters since the batch was made.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// The next free buffer, whole (`buf_size` bytes), to write a packet
    /// into; `None` when the batch is full. Its index is [`len`](Self::len).
    /// Nothing is queued until [`commit`](Self::commit).
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let start = self.queued * self.buf_size;
        Some(&mut self.bufs[start..start + self.buf_size])
    }

    /// Queues the first `len` bytes of the current [`slot`](Self::slot) for
    /// `dest`. Fails (queuing nothing) when the batch is full or `len` is
    /// larger than a buffer.
    pub fn commit(&mut self, len: usize, dest: SocketAddrV4) -> io::Result<()> {
        self.commit_at(0, len, dest)
    }

    /// Queues `len` bytes starting `offset` bytes into the current
    /// [`slot`](Self::slot): a packet encapsulated in place, whose headers
    /// went in front of where it was read.
    pub fn commit_at(&mut self, offset: usize, len: usize, dest: SocketAddrV4) -> io::Result<()> {
        if self.is_full() || offset.saturating_add(len) > self.buf_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "queuing a {len}-byte datagram to {dest}: {}",
                    if self.is_full() {
                        "the send batch is full"
                    } else {
                        "larger than a buffer"
                    }
                ),
            ));
        }
        self.lens[self.queued] = len;
        self.offsets[self.queued] = offset;
        self.dests[self.queued] = to_sockaddr(dest);
        self.queued += 1;
        Ok(())
    }

    /// Copies `data` into the next slot and queues it for `dest`.
    pub fn push(&mut self, data: &[u8], dest: SocketAddrV4) -> io::Result<()> {
        if let Some(buf) = self.slot()
            && let Some(dst) = buf.get_mut(..data.len())
        {
            dst.copy_from_slice(data);
        }
        self.commit(data.len(), dest)
    }

    /// Forgets everything queued.
    pub fn clear(&mut self) {
        self.queued = 0;
    }

    /// Sends everything queued with `sendmmsg(MSG_DONTWAIT)` (looping over
    /// partial sends) and returns how many datagrams the kernel accepted;
    /// see the type's documentation for what is dropped and when. The batch
    /// is empty afterwards.
    pub fn flush(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let queued = std::mem::take(&mut self.queued);
        if queued == 0 {
            return Ok(0);
        }
        let base = self.bufs.as_mut_ptr();
        for i in 0..queued {
            self.iovecs[i] = libc::iovec {
                // SAFETY: i * buf_size + offsets[i] + lens[i] <= bufs.len()
                // (commit_at checked offset + len <= buf_size).
                iov_base: unsafe { base.add(i * self.buf_size + self.offsets[i]) }
                    .cast::<libc::c_void>(),
                iov_len: self.lens[i],
            };
        }
        let fd = sock.as_raw_fd();
        let mut sent = 0;
        let mut deadline: Option<Instant> = None;
        // Datagrams before `first` are done (sent or dropped); those before
        // `plain_until` go one by one (after a refused GSO send).
        let mut first = 0;
        let mut plain_until = 0;
        'build: while first < queued {
            let groups = self.build_messages(first, queued, plain_until);
            let mut g = 0;
            while g < groups {
                let vlen = u32::try_from(groups - g).unwrap_or(u32::MAX);
                // SAFETY: entries g..groups of `hdrs` were just filled with
                // pointers to live buffers of this batch.
                let n = unsafe {
                    libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(g), vlen, libc::MSG_DONTWAIT)
                };
                if let Ok(n) = usize::try_from(n) {
                    if n == 0 {
                        // No progress without an error: count it as a
                        // refusal so that the loop always ends.
                        self.drop_refused(libc::EIO, self.group_len[g]);
                        first += self.group_len[g];
                        g += 1;
                        continue;
                    }
                    for k in g..(g + n).min(groups) {
                        sent += self.group_len[k];
                        first += self.group_len[k];
                        if self.group_len[k] > 1 {
                            self.stats.gso_sends += 1;
                        }
                    }
                    g += n;
                    continue;
                }
                let err = io::Error::last_os_error();
                let errno = err.raw_os_error().unwrap_or(libc::EIO);
                match errno {
                    libc::EINTR => {}
                    libc::EAGAIN => {
                        let now = Instant::now();
                        let at = *deadline.get_or_insert_with(|| now + self.max_wait);
                        let left = at.saturating_duration_since(now);
                        let writable = !left.is_zero()
                            && poll_writable(sock.as_fd(), left).inspect_err(|_| {
                                self.stats.sent += sent as u64;
                            })?;
                        if !writable {
                            self.stats.dropped_full += (queued - first) as u64;
                            break 'build;
                        }
                    }
                    libc::EBADF | libc::ENOTSOCK | libc::EFAULT => {
                        self.stats.sent += sent as u64;
                        return Err(context(err, "sending UDP datagrams (sendmmsg)"));
                    }
                    _ if self.group_len[g] > 1 => {
                        // A refused GSO send (larger than the path MTU, no
                        // checksum offload, an XFRM policy, ...): send its
                        // datagrams again one by one.
                        self.stats.gso_fallbacks += 1;
                        if errno == libc::EIO {
                            self.gso = false;
                        }
                        plain_until = first + self.group_len[g];
                        continue 'build;
                    }
                    _ => {
                        // sendmmsg fails only when its first message fails:
                        // drop that one and go on with the rest.
                        self.drop_refused(errno, 1);
                        first += 1;
                        g += 1;
                    }
                }
            }
        }
        self.stats.sent += sent as u64;
        Ok(sent)
    }

    /// Fills `hdrs` for datagrams `first..queued` (GSO runs merged unless
    /// before `plain_until`) and returns how many messages that made.
    fn build_messages(&mut self, first: usize, queued: usize, plain_until: usize) -> usize {
        let mut g = 0;
        let mut d = first;
        while d < queued {
            let len = self.lens[d];
            let mut count = 1;
            if self.gso && d >= plain_until && len > 0 {
                let mut bytes = len;
                while d + count < queued && count < MAX_SEGMENTS {
                    let next = d + count;
                    let next_len = self.lens[next];
                    if next_len == 0
                        || next_len > len
                        || bytes + next_len > GSO_MAX_BYTES
                        || !same_dest(&self.dests[d], &self.dests[next])
                    {
                        break;
                    }
                    count += 1;
                    bytes += next_len;
                    if next_len < len {
                        // A shorter datagram ends the run.
                        break;
                    }
                }
            }
            let hdr = &mut self.hdrs[g];
            hdr.msg_hdr.msg_name = (&raw mut self.dests[d]).cast::<libc::c_void>();
            hdr.msg_hdr.msg_namelen = SOCKADDR_IN_LEN;
            hdr.msg_hdr.msg_iov = &raw mut self.iovecs[d];
            hdr.msg_hdr.msg_iovlen = count;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
            if count > 1 {
                let control = &mut self.controls[g];
                hdr.msg_hdr.msg_control = (&raw mut *control).cast::<libc::c_void>();
                let segment_len = u16::try_from(len).unwrap_or(u16::MAX);
                // SAFETY: the Control buffer (32 bytes, 8-aligned) holds one
                // cmsghdr with a u16 (CMSG_SPACE(2) = 24 bytes); CMSG_FIRSTHDR
                // is non-null because msg_controllen is set first.
                unsafe {
                    hdr.msg_hdr.msg_controllen = libc::CMSG_SPACE(U16_LEN) as usize;
                    let cmsg = libc::CMSG_FIRSTHDR(&raw const hdr.msg_hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(U16_LEN) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment_len);
                }
            } else {
                hdr.msg_hdr.msg_control = std::ptr::null_mut();
                hdr.msg_hdr.msg_controllen = 0;
            }
            self.group_len[g] = count;
            g += 1;
            d += count;
        }
        g
    }

    fn drop_refused(&mut self, errno: i32, datagrams: usize) {
        self.stats.dropped_error += datagrams as u64;
        self.stats.last_error = Some(errno);
    }
}

fn same_dest(a: &libc::sockaddr_in, b: &libc::sockaddr_in) -> bool {
    a.sin_addr.s_addr == b.sin_addr.s_addr && a.sin_port == b.sin_port
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::AsFd;

    use super::*;
    use crate::sys::{poll::poll_readable, tests::in_netns};

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
    const TOTAL: u32 = 1000;

    fn local_addr(sock: &UdpSocket) -> SocketAddrV4 {
        match sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            std::net::SocketAddr::V6(a) => panic!("v6 {a}"),
        }
    }

    /// Payload of datagram `i`: its index and a length that varies.
    fn payload(i: u32, out: &mut [u8]) -> usize {
        let len = 8 + (i as usize * 7) % 1200;
        out[..4].copy_from_slice(&i.to_be_bytes());
        for (j, b) in out[4..len].iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            {
                *b = (i as usize + j) as u8;
            }
        }
        len
    }

    /// Payload of datagram `i` in runs of ten: nine of 1000 bytes, then one
    /// of 300 (a GSO run may end with a shorter datagram).
    fn run_payload(i: u32, out: &mut [u8]) -> usize {
        let len = if i % 10 == 9 { 300 } else { 1000 };
        out[..4].copy_from_slice(&i.to_be_bytes());
        for (j, b) in out[4..len].iter_mut().enumerate() {
            #[allow(clippy::cast_possible_truncation)]
            {
                *b = (i as usize * 3 + j) as u8;
            }
        }
        len
    }

    /// Sends `total` datagrams made by `make` from `a` to `b` through the
    /// batches, receiving as they come, and checks each one's bytes and
    /// source. Returns the time taken and the most datagrams one `recv`
    /// returned.
    fn transfer(
        a: &UdpSocket,
        b: &UdpSocket,
        send: &mut SendBatch,
        recv: &mut RecvBatch,
        total: u32,
        make: fn(u32, &mut [u8]) -> usize,
    ) -> (Duration, usize) {
        let (a_addr, b_addr) = (local_addr(a), local_addr(b));
        let mut next = 0u32;
        let mut expect = 0u32;
        let mut most = 0;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(20);
        let mut want = vec![0u8; 2048];
        while expect < total {
            assert!(Instant::now() < deadline, "stuck at {expect}/{total}");
            while next < total {
                let Some(buf) = send.slot() else { break };
                let len = make(next, buf);
                send.commit(len, b_addr).unwrap();
                next += 1;
            }
            if !send.is_empty() {
                let queued = send.len();
                assert_eq!(send.flush(a).unwrap(), queued, "{:?}", send.stats());
            }
            let ready = poll_readable(&[b.as_fd()], Some(Duration::from_secs(5))).unwrap();
            assert!(ready.is_ready(0), "nothing arrived");
            loop {
                let n = match recv.recv(b) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                };
                assert!(n >= 1);
                most = most.max(n);
                for i in 0..n {
                    let len = make(expect, &mut want);
                    assert_eq!(recv.source(i), a_addr);
                    assert!(!recv.truncated(i));
                    assert_eq!(recv.len(i), len, "datagram {expect}");
                    assert_eq!(recv.buf(i), &want[..len], "datagram {expect}");
                    // Writable in place.
                    recv.buf_mut(i)[0] ^= 0xff;
                    expect += 1;
                }
                assert_eq!(recv.len(n), 0, "past the last datagram");
            }
        }
        let stats = send.stats();
        assert_eq!(stats.dropped_error + stats.dropped_full, 0, "{stats:?}");
        (start.elapsed(), most)
    }

    #[test]
    fn batches_move_1000_datagrams_between_reuseport_sockets() {
        in_netns("udpbatch", || {
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4 << 20).unwrap();
            let b = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4 << 20).unwrap();
            // The forced buffer went past the default rmem_max.
            let granted = get_int_option(&b, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap();
            assert!(granted >= 4 << 20, "SO_RCVBUF {granted}");

            let mut send = SendBatch::new(64, 1500).unwrap();
            let mut recv = RecvBatch::new(32, 1500).unwrap();
            assert!(matches!(
                recv.recv(&b).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            ));
            let (elapsed, _) = transfer(&a, &b, &mut send, &mut recv, TOTAL, payload);
            assert_eq!(send.stats().sent, u64::from(TOTAL));
            assert_eq!(send.stats().gso_sends, 0);
            eprintln!(
                "1000 datagrams in {elapsed:?} ({:.0} datagrams/s, information only)",
                f64::from(TOTAL) / elapsed.as_secs_f64()
            );
        });
    }

    #[test]
    fn gso_sends_and_gro_receives_carry_the_same_datagrams() {
        in_netns("udpgso", || {
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4 << 20).unwrap();
            assert!(gso_supported(&a));
            let plain = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4 << 20).unwrap();
            let gro = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4 << 20).unwrap();
            enable_gro(&gro).unwrap();
            for (b, buf_size, name) in [(&plain, 1500, "plain"), (&gro, 65535, "GRO")] {
                let mut send = SendBatch::new(64, 1500).unwrap();
                send.set_gso(true);
                let mut recv = RecvBatch::new(8, buf_size).unwrap();
                let (elapsed, most) = transfer(&a, b, &mut send, &mut recv, TOTAL, run_payload);
                let stats = send.stats();
                assert_eq!(stats.sent, u64::from(TOTAL));
                // Runs of ten, cut at batch boundaries.
                assert!(stats.gso_sends >= 90, "{stats:?}");
                assert_eq!(stats.gso_fallbacks, 0, "{stats:?}");
                if std::ptr::eq(b, &raw const gro) {
                    // One buffer held several datagrams.
                    assert!(most > recv.capacity(), "at most {most} per receive");
                }
                eprintln!(
                    "GSO to a {name} receiver: 1000 datagrams in {elapsed:?} \
                     ({:.0} datagrams/s, information only)",
                    f64::from(TOTAL) / elapsed.as_secs_f64()
                );
            }
        });
    }

    /// 2000-byte datagrams.
    fn big(i: u32, out: &mut [u8]) -> usize {
        out[..2000].fill(0x5a);
        out[..4].copy_from_slice(&i.to_be_bytes());
        2000
    }

    #[test]
    fn a_refused_gso_send_falls_back_to_plain_sends() {
        in_netns("udpgsofb", || {
            // A 1500-byte MTU: 2000-byte segments cannot go as GSO (EINVAL)
            // but plain sends are fragmented and arrive.
            let mut nl = crate::sys::netlink::Netlink::open().unwrap();
            let lo = nl.link_index("lo").unwrap();
            nl.set_mtu(lo, 1500).unwrap();
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 1 << 20).unwrap();
            let b = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 1 << 20).unwrap();
            let mut send = SendBatch::new(16, 2048).unwrap();
            send.set_gso(true);
            let mut recv = RecvBatch::new(16, 2048).unwrap();
            transfer(&a, &b, &mut send, &mut recv, 40, big);
            let stats = send.stats();
            assert_eq!(stats.sent, 40);
            assert!(stats.gso_fallbacks >= 1, "{stats:?}");
            assert_eq!(stats.gso_sends, 0, "{stats:?}");
            assert!(send.gso(), "EINVAL does not turn GSO off");
        });
    }

    /// Moves `total` 1400-byte datagrams from `a` to `b` (content not
    /// checked) and returns datagrams per second.
    fn blast(a: &UdpSocket, b: &UdpSocket, gso: bool, recv_buf: usize, total: u64) -> f64 {
        let dest = local_addr(b);
        let mut send = SendBatch::new(64, 1500).unwrap();
        send.set_gso(gso);
        send.set_max_wait(Duration::from_millis(50));
        let mut recv = RecvBatch::new(64, recv_buf).unwrap();
        let mut got = 0u64;
        let mut queued = 0u64;
        let start = Instant::now();
        let deadline = start + Duration::from_mins(1);
        while got < total && Instant::now() < deadline {
            while queued < total {
                let Some(buf) = send.slot() else { break };
                buf[..8].copy_from_slice(&queued.to_be_bytes());
                send.commit(1400, dest).unwrap();
                queued += 1;
            }
            send.flush(a).unwrap();
            let mut idle = 0;
            loop {
                match recv.recv(b) {
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        idle += 1;
                        if idle > 1 || queued < total {
                            break;
                        }
                        poll_readable(&[b.as_fd()], Some(Duration::from_millis(100))).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let stats = send.stats();
        let lost = total - got;
        #[allow(clippy::cast_precision_loss)] // at most 200000
        let rate = got as f64 / start.elapsed().as_secs_f64();
        eprintln!(
            "gso={gso} recv_buf={recv_buf}: {got}/{total} datagrams of 1400 bytes, \
             {rate:.0}/s = {:.2} Gbit/s payload (lost {lost}, {stats:?})",
            rate * 1400.0 * 8.0 / 1e9
        );
        rate
    }

    #[test]
    #[ignore = "information only: cargo test -p gateway --lib udp_throughput -- --ignored --nocapture"]
    fn udp_throughput() {
        in_netns("udprate", || {
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 16 << 20).unwrap();
            let plain = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 16 << 20).unwrap();
            let gro = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 16 << 20).unwrap();
            enable_gro(&gro).unwrap();
            blast(&a, &plain, false, 1500, 200_000);
            blast(&a, &plain, true, 1500, 200_000);
            blast(&a, &gro, true, 65535, 200_000);
        });
    }

    #[test]
    fn reuseport_sockets_share_a_port_and_others_do_not() {
        in_netns("udpreuse", || {
            let first = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 0).unwrap();
            let port = local_addr(&first).port();
            let second = bind_reuseport(SocketAddrV4::new(LOCALHOST, port), 1 << 20).unwrap();
            assert_eq!(local_addr(&second).port(), port);
            // A socket without SO_REUSEPORT cannot join them.
            let err = UdpSocket::bind((LOCALHOST, port)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

            // Peers with different source ports are spread by the kernel,
            // each to exactly one of the two sockets.
            let mut got = [0usize; 2];
            for _ in 0..32 {
                let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
                peer.send_to(b"hi", (LOCALHOST, port)).unwrap();
            }
            let mut batch = RecvBatch::new(64, 64).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while got[0] + got[1] < 32 && Instant::now() < deadline {
                poll_readable(
                    &[first.as_fd(), second.as_fd()],
                    Some(Duration::from_millis(100)),
                )
                .unwrap();
                for (k, sock) in [&first, &second].into_iter().enumerate() {
                    if let Ok(n) = batch.recv(sock) {
                        got[k] += n;
                    }
                }
            }
            assert_eq!(got[0] + got[1], 32, "{got:?}");
        });
    }

    #[test]
    fn refused_datagrams_are_dropped_and_counted_not_retried() {
        in_netns("udpdrop", || {
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 0).unwrap();
            let b = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 0).unwrap();
            let b_addr = local_addr(&b);
            let mut send = SendBatch::new(4, 64).unwrap();
            send.push(b"one", b_addr).unwrap();
            // Port 0 is refused by the kernel (EINVAL).
            send.push(b"bad", SocketAddrV4::new(LOCALHOST, 0)).unwrap();
            send.push(b"two", b_addr).unwrap();
            assert_eq!(send.flush(&a).unwrap(), 2);
            assert!(send.is_empty());
            let stats = send.stats();
            assert_eq!(stats.sent, 2);
            assert_eq!(stats.dropped_error, 1);
            assert_eq!(stats.last_error, Some(libc::EINVAL));

            poll_readable(&[b.as_fd()], Some(Duration::from_secs(5))).unwrap();
            let mut recv = RecvBatch::new(4, 2).unwrap();
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while seen.len() < 2 && Instant::now() < deadline {
                match recv.recv(&b) {
                    Ok(n) => {
                        for i in 0..n {
                            // 2-byte buffers: cut, and flagged.
                            assert!(recv.truncated(i));
                            seen.push(recv.buf(i).to_vec());
                        }
                    }
                    Err(_) => {
                        poll_readable(&[b.as_fd()], Some(Duration::from_millis(100))).unwrap();
                    }
                }
            }
            assert_eq!(seen, vec![b"on".to_vec(), b"tw".to_vec()]);
        });
    }

    #[test]
    fn flushing_with_zero_wait_never_spins_and_accounts_for_every_datagram() {
        in_netns("udpfull", || {
            // Loopback frees the sender's buffer at once, so EAGAIN is rare
            // here; what is checked is that a flush always returns and that
            // every datagram is either sent or counted as dropped.
            let a = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4096).unwrap();
            let b = bind_reuseport(SocketAddrV4::new(LOCALHOST, 0), 4096).unwrap();
            let mut send = SendBatch::new(256, 1400).unwrap();
            send.set_max_wait(Duration::ZERO);
            let start = Instant::now();
            for _ in 0..8 {
                while let Some(buf) = send.slot() {
                    buf[..4].copy_from_slice(b"fill");
                    send.commit(1400, local_addr(&b)).unwrap();
                }
                send.flush(&a).unwrap();
            }
            assert!(start.elapsed() < Duration::from_secs(5));
            let stats = send.stats();
            assert_eq!(
                stats.sent + stats.dropped_full + stats.dropped_error,
                8 * 256
            );
        });
    }

    #[test]
    fn batch_shapes_are_checked() {
        assert!(RecvBatch::new(0, 1500).is_err());
        assert!(SendBatch::new(8, 0).is_err());
        let mut send = SendBatch::new(1, 4).unwrap();
        let dest = SocketAddrV4::new(LOCALHOST, 9);
        assert!(send.commit(5, dest).is_err(), "longer than a buffer");
        send.commit(4, dest).unwrap();
        assert!(send.slot().is_none());
        let err = send.push(b"x", dest).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
    }

    #[test]
    fn sockaddr_round_trip() {
        let a = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4500);
        assert_eq!(from_sockaddr(&to_sockaddr(a)), a);
    }
}

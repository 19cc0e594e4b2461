//! Sending: up to N datagrams written in place, sent with one `sendmmsg`,
//! runs to one peer as UDP GSO sends.

use std::{
    io,
    net::{SocketAddrV4, UdpSocket},
    os::fd::{AsFd, AsRawFd},
    time::{Duration, Instant},
};

use super::{
    Control, GSO_MAX_BYTES, MAX_SEGMENTS, SOCKADDR_IN_LEN, U16_LEN, UDP_SEGMENT, check_batch_shape,
    empty_iovec, empty_mmsghdr, to_sockaddr, zeroed_sockaddr,
};
use crate::sys::{context, poll::poll_writable};

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

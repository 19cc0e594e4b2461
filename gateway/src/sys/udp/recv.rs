//! Receiving: up to N datagrams with one `recvmmsg`, split again when UDP
//! GRO coalesced them.

use std::{
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
};

use super::{
    Control, MAX_SEGMENTS, SOCKADDR_IN_LEN, UDP_GRO, check_batch_shape, empty_iovec, empty_mmsghdr,
    from_sockaddr, zeroed_sockaddr,
};
use crate::sys::context;

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

//! Waiting for file descriptors: an eventfd [`Waker`] and [`poll_readable`].
//!
//! A datapath worker sleeps in [`poll_readable`] on its TUN queue, its UDP
//! socket and its waker; the control plane calls [`Waker::wake`] to make it
//! look at new SAs or routes, or to stop it.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    time::{Duration, Instant},
};

/// The most file descriptors one [`poll_readable`] call takes (the width of
/// [`ReadySet`]).
pub const MAX_POLL_FDS: usize = 64;

/// An eventfd in non-blocking mode: [`wake`](Self::wake) makes it readable,
/// [`drain`](Self::drain) makes it quiet again. Shared between threads by
/// reference (`&Waker` is enough for both).
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new eventfd (counter 0, non-blocking, close-on-exec).
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(super::os_error("creating an eventfd"));
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the eventfd readable. Never blocks: if the counter is already
    /// at its maximum (the eventfd is readable anyway), nothing happens.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64.
            let n = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    (&raw const one).cast::<libc::c_void>(),
                    std::mem::size_of::<u64>(),
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(()),
                _ => return Err(super::context(err, "waking an eventfd")),
            }
        }
    }

    /// Resets the counter; returns how many wakes it had counted (0 when it
    /// was not readable).
    pub fn drain(&self) -> io::Result<u64> {
        let mut value: u64 = 0;
        loop {
            // SAFETY: reads 8 bytes into a live u64.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&raw mut value).cast::<libc::c_void>(),
                    std::mem::size_of::<u64>(),
                )
            };
            if n >= 0 {
                return Ok(value);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(super::context(err, "draining an eventfd")),
            }
        }
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Which of the descriptors passed to [`poll_readable`] are ready: bit `i`
/// stands for `fds[i]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadySet(u64);

impl ReadySet {
    /// Whether `fds[i]` is ready (false for `i` out of range).
    pub fn is_ready(self, i: usize) -> bool {
        i < MAX_POLL_FDS && self.0 & (1 << i) != 0
    }

    /// Whether nothing is ready (the timeout expired).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many descriptors are ready.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The indices of the ready descriptors, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }

    /// The raw bitset.
    pub fn bits(self) -> u64 {
        self.0
    }
}

/// Waits until at least one of `fds` is readable, or `timeout` passes
/// (`None`: no limit; `Some(Duration::ZERO)`: just look). An fd in error or
/// hang-up state counts as readable, so that its reader sees the error.
/// Interrupted waits (EINTR) are resumed with the time that is left. At most
/// [`MAX_POLL_FDS`] descriptors; allocates nothing.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<ReadySet> {
    if fds.len() > MAX_POLL_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "polling {} descriptors: at most {MAX_POLL_FDS} at once",
                fds.len()
            ),
        ));
    }
    let mut pollfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_POLL_FDS];
    for (slot, fd) in pollfds.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = libc::POLLIN;
    }
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    loop {
        // The time left, or None for "wait forever".
        let left = match deadline {
            None | Some(None) => None,
            Some(Some(at)) => Some(at.saturating_duration_since(Instant::now())),
        };
        let ts = left.map(|d| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(d.subsec_nanos().cast_signed()),
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: `pollfds` has at least `fds.len()` entries; `ts_ptr` is null
        // or points to a live timespec; no signal mask is passed.
        let rc = unsafe {
            libc::ppoll(
                pollfds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                ts_ptr,
                std::ptr::null(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(super::context(err, "polling for readable descriptors"));
        }
        let mut ready = 0u64;
        for (i, p) in pollfds.iter().take(fds.len()).enumerate() {
            if p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                ready |= 1 << i;
            }
        }
        return Ok(ReadySet(ready));
    }
}

/// Waits until `fd` is writable or `timeout` passes; true when writable.
/// EINTR is retried with the time that is left.
pub fn poll_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now().checked_add(timeout);
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        let left = deadline.map_or(timeout, |at| at.saturating_duration_since(Instant::now()));
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(left.subsec_nanos().cast_signed()),
        };
        // SAFETY: one live pollfd and a live timespec; no signal mask.
        let rc = unsafe { libc::ppoll(&raw mut p, 1, &raw const ts, std::ptr::null()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(super::context(err, "polling for a writable descriptor"));
        }
        return Ok(rc > 0 && p.revents & libc::POLLOUT != 0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{sync::Arc, thread};

    use super::*;

    #[test]
    fn waker_wakes_a_poll_and_drains() {
        let waker = Arc::new(Waker::new().unwrap());
        // Not readable yet.
        let ready = poll_readable(&[waker.as_fd()], Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty());

        let other = Arc::clone(&waker);
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            other.wake().unwrap();
        });
        let start = Instant::now();
        let ready = poll_readable(&[waker.as_fd()], Some(Duration::from_secs(5))).unwrap();
        t.join().unwrap();
        assert!(ready.is_ready(0), "woken, not timed out");
        eprintln!("woken after {:?}", start.elapsed());

        waker.wake().unwrap();
        assert_eq!(waker.drain().unwrap(), 2);
        assert_eq!(waker.drain().unwrap(), 0);
        let ready = poll_readable(&[waker.as_fd()], Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty());
    }

    #[test]
    fn poll_reports_which_fds_are_ready_and_times_out() {
        let a = Waker::new().unwrap();
        let b = Waker::new().unwrap();
        let c = Waker::new().unwrap();
        b.wake().unwrap();
        c.wake().unwrap();
        let ready =
            poll_readable(&[a.as_fd(), b.as_fd(), c.as_fd()], Some(Duration::ZERO)).unwrap();
        assert!(!ready.is_ready(0));
        assert!(ready.is_ready(1));
        assert!(ready.is_ready(2));
        assert!(!ready.is_ready(64));
        assert_eq!(ready.len(), 2);
        assert_eq!(ready.iter().collect::<Vec<_>>(), vec![1, 2]);

        let start = Instant::now();
        let ready = poll_readable(&[a.as_fd()], Some(Duration::from_millis(30))).unwrap();
        assert!(ready.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn too_many_fds_is_an_error() {
        let w = Waker::new().unwrap();
        let fds = vec![w.as_fd(); MAX_POLL_FDS + 1];
        let err = poll_readable(&fds, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("65 descriptors"), "{err}");
    }

    #[test]
    fn an_eventfd_is_writable() {
        let w = Waker::new().unwrap();
        assert!(poll_writable(w.as_fd(), Duration::from_millis(100)).unwrap());
    }
}

//! The operating-system layer: multi-queue TUN devices ([`tun`]), batched
//! UDP sockets ([`udp`]), waiting on descriptors ([`poll`]), rtnetlink for
//! links, addresses and routes ([`netlink`]), XFRM netlink for ESP SAs and
//! policies ([`xfrm`]), the TCP MSS clamp in nftables ([`nft`]) and an
//! AF_PACKET socket for NHRP on GRE links ([`packet`]).
//!
//! Why a layer of its own rather than part of `datapath`: the datapaths are
//! its main users, but not its only ones. IKE marks its sockets to bypass
//! the IPsec policies and to take ESP-in-UDP (`xfrm`), and BGP reads the
//! kernel's routing table (`network` statements are advertised while the
//! kernel has the prefix) and installs routes whose next hop is on the LAN
//! (`netlink`). Routing those through the `Datapath` trait would make the
//! trait about the host's routing table rather than about tunnels, and give
//! the recording fake a job it cannot do; so the OS calls sit here, below
//! every protocol, and import nothing from them.
//!
//! Everything here is synchronous and thin: the userspace datapath's workers
//! run on their own threads, one per queue, and never enter an async runtime. The hot-path
//! calls ([`tun::TunQueue::read`], [`udp::RecvBatch::recv`],
//! [`udp::SendBatch::flush`], [`poll::poll_readable`]) allocate nothing.
//!
//! Errors are `std::io::Error`s whose message says what was being done, e.g.
//! "adding route 10.1.1.100/32 dev gwtun0: File exists (os error 17)",
//! followed by "; kernel says: ..." when netlink sent an explanation; the
//! kind is the kind of the underlying OS error, and [`raw_os_error`] finds its
//! errno through the added context.

pub mod netlink;
pub mod nft;
pub mod packet;
pub mod poll;
pub mod tun;
pub mod udp;
pub mod xfrm;

use std::{error::Error, fmt, io};

/// An OS error and what was being done when it happened.
#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
    /// More from whoever refused (the kernel's extended-ack text).
    detail: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)?;
        if let Some(detail) = &self.detail {
            write!(f, "; kernel says: {detail}")?;
        }
        Ok(())
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Wraps `err` with what was being done; the kind stays the same.
pub(crate) fn context(err: io::Error, what: impl Into<String>) -> io::Error {
    context_detail(err, what, None)
}

/// [`context`] with the refusing side's own explanation appended.
pub(crate) fn context_detail(
    err: io::Error,
    what: impl Into<String>,
    detail: Option<String>,
) -> io::Error {
    io::Error::new(
        err.kind(),
        Context {
            what: what.into(),
            source: err,
            detail,
        },
    )
}

/// The last OS error (errno), wrapped with what was being done.
pub(crate) fn os_error(what: impl Into<String>) -> io::Error {
    context(io::Error::last_os_error(), what)
}

/// The errno behind `err`, also when it was wrapped by this module with
/// context (where [`io::Error::raw_os_error`] gives `None`).
pub fn raw_os_error(err: &io::Error) -> Option<i32> {
    if let Some(code) = err.raw_os_error() {
        return Some(code);
    }
    let mut inner: &(dyn Error + 'static) = err.get_ref()?;
    loop {
        if let Some(io) = inner.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        inner = inner.source()?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Runs `f` on a thread inside a fresh network namespace of a new lab
    /// (removed afterwards), so that nothing touches the host's links or
    /// routes. Needs root.
    pub(crate) fn in_netns<T: Send>(tag: &str, f: impl FnOnce() -> T + Send) -> T {
        in_netns_with(tag, |_| f())
    }

    /// [`in_netns`], with the namespace handed to `f` (for `ip -n ...`).
    pub(crate) fn in_netns_with<T: Send>(
        tag: &str,
        f: impl FnOnce(&integration::Netns) -> T + Send,
    ) -> T {
        let lab = integration::Lab::new(tag).unwrap();
        let ns = lab.netns("dp").unwrap();
        let inside = ns.clone();
        ns.run_in(move || f(&inside)).unwrap()
    }

    /// Set in the VM tier, whose kernel has esp4, ip_gre and AES-GCM: a missing
    /// feature then fails the test instead of skipping it.
    pub(crate) const REQUIRE_ENV: &str = "GATEWAY_REQUIRE_KERNEL_DATAPATH";

    /// Reports a test skipped for want of a kernel feature (or fails it when
    /// [`REQUIRE_ENV`] is set).
    pub(crate) fn skip(test: &str, feature: &str, err: &io::Error) {
        let message = format!("SKIPPED {test}: the kernel lacks {feature} ({err})");
        assert!(std::env::var_os(REQUIRE_ENV).is_none(), "{message}");
        eprintln!("{message}");
    }

    #[test]
    fn handles_move_to_worker_threads() {
        fn send<T: Send>() {}
        fn sync<T: Sync>() {}
        send::<tun::Tun>();
        send::<tun::TunQueue>();
        sync::<tun::TunQueue>();
        send::<udp::RecvBatch>();
        send::<udp::SendBatch>();
        send::<poll::Waker>();
        sync::<poll::Waker>();
        send::<netlink::Netlink>();
        send::<xfrm::Xfrm>();
        send::<packet::PacketSocket>();
        sync::<packet::PacketSocket>();
    }

    #[test]
    fn context_keeps_kind_and_errno() {
        let err = context(
            io::Error::from_raw_os_error(libc::EEXIST),
            "adding route 10.1.1.100/32 dev gwtun0",
        );
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(raw_os_error(&err), Some(libc::EEXIST));
        assert!(
            err.to_string()
                .starts_with("adding route 10.1.1.100/32 dev gwtun0: File exists"),
            "{err}"
        );
        let twice = context(err, "outer");
        assert_eq!(raw_os_error(&twice), Some(libc::EEXIST));
        assert_eq!(
            raw_os_error(&io::Error::other("no errno")),
            None,
            "plain errors have none"
        );
    }
}

//! A small, blocking rtnetlink client: links up/down and MTU, GRE links
//! (the kernel datapath's virtual-access interfaces), link counters, IPv4
//! addresses, IPv4 routes in the main table (per link for the tunnels, and
//! the whole table for a routing daemon: dump, gateway and blackhole
//! routes, removal of our own only).
//!
//! One request at a time, each acknowledged by the kernel (or answered with
//! NLMSG_DONE for dumps) before the call returns; sequence numbers are
//! checked, and answers to an earlier request that timed out are skipped.
//! Kernel errors become `io::Error`s that name the operation and carry the
//! kernel's extended-ack message when it sends one, e.g. "adding route
//! 10.1.1.100/32 dev gwtun0: File exists (os error 17)", or "adding address
//! 10.1.1.1 peer 10.1.1.100/32 dev gwtun0: File exists (os error 17); kernel
//! says: ipv4: Address already assigned". The socket has a
//! receive timeout ([`Netlink::TIMEOUT`]) so that no call can hang.
//!
//! Messages are built and parsed with `netlink-packet-route`; the socket is
//! `netlink-sys`'s blocking one. The netlink header, ACKs, errors and
//! extended acks are handled in `transport`.
//!
//! Routes this module installs carry the protocol [`RTPROT_GATEWAY`] (66,
//! shown by `ip route` as `proto 66`), so that an operator and the
//! gateway itself can tell them from the kernel's and other daemons'.
//!
//! One file per concern: `link` (links, GRE links, counters), `address`,
//! `route` (per-link routes and the main table), and `transport`, the
//! request and answer exchange that xfrm netlink (`super::xfrm`) shares.

use std::{
    fmt,
    io::{self, ErrorKind},
    os::fd::AsRawFd,
    time::Duration,
};

use netlink_packet_core::{NetlinkDeserializable, NetlinkSerializable};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;

mod address;
mod link;
mod route;
mod transport;

pub use link::LinkStats;
pub use route::{
    KernelRoute, KernelRouteKind, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RTPROT_BOOT, RTPROT_GATEWAY,
    RTPROT_KERNEL, RTPROT_STATIC, RouteEntry,
};
#[cfg(test)]
pub(super) use transport::request_packet;
pub(super) use transport::{HEADER_LEN, KernelError, Transport, open_socket, parse_header};

/// A blocking NETLINK_ROUTE socket in the network namespace of the thread
/// that opened it (it stays there, whichever thread uses it later).
pub struct Netlink {
    transport: Transport,
    /// Set while an error message is made after a local failure (e.g. a
    /// timeout): no link-name lookups then, so that they cannot wait too.
    no_lookups: bool,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.transport.socket.as_raw_fd())
            .field("seq", &self.transport.seq)
            .finish_non_exhaustive()
    }
}

/// What came back for one request.
enum Answer {
    /// An ACK or the end of a dump, with the messages before it.
    Done(Vec<RouteNetlinkMessage>),
    /// A dump that the kernel says was interrupted by a change: retry.
    Interrupted,
}

impl Netlink {
    /// How long one request waits for the kernel's answer.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Opens a NETLINK_ROUTE socket, bound to a port the kernel picks, with
    /// extended acks asked for.
    pub fn open() -> io::Result<Netlink> {
        let socket = open_socket(NETLINK_ROUTE, "opening a NETLINK_ROUTE socket")?;
        Ok(Netlink {
            transport: Transport::new(socket),
            no_lookups: false,
        })
    }

    /// "gwtun0", or "ifindex 7" when the name cannot be had (for messages).
    fn dev_name(&mut self, ifindex: u32) -> String {
        if self.no_lookups {
            return format!("ifindex {ifindex}");
        }
        self.link_name(ifindex)
            .unwrap_or_else(|_| format!("ifindex {ifindex}"))
    }

    /// "link gwtun0", or "link 7" (for messages).
    fn dev_label(&mut self, ifindex: u32) -> String {
        if self.no_lookups {
            return format!("link {ifindex}");
        }
        match self.link_name(ifindex) {
            Ok(name) => format!("link {name}"),
            Err(_) => format!("link {ifindex}"),
        }
    }

    /// One request whose error message is cheap to make.
    fn request(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
        what: &dyn Fn() -> String,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.request_with(msg, flags, |_| what())
    }

    /// One request; `what` makes the error message, and may ask the kernel
    /// for a link's name (only on failure, after the request is over).
    fn request_with(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce(&mut Netlink) -> String,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        match self.exchange(msg, flags) {
            Ok(Ok(Answer::Done(answers))) => Ok(answers),
            Ok(Ok(Answer::Interrupted)) => {
                let what = what(self);
                Err(io::Error::new(
                    ErrorKind::Interrupted,
                    format!("{what}: interrupted by changes"),
                ))
            }
            Ok(Err(kernel)) => {
                let what = what(self);
                Err(kernel.into_io(what))
            }
            Err(local) => {
                self.no_lookups = true;
                let what = what(self);
                self.no_lookups = false;
                Err(super::context(local, what))
            }
        }
    }

    /// Sends `msg` and collects the answer. The outer error is a local one
    /// (socket, timeout, undecodable answer); the inner one is the kernel's.
    fn exchange(
        &mut self,
        msg: &RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Result<Answer, KernelError>> {
        let mut payload = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut payload);
        let raw = match self.transport.exchange(
            msg.message_type(),
            flags,
            &payload,
            "sending a netlink request",
        )? {
            Ok(raw) => raw,
            Err(kernel) => return Ok(Err(kernel)),
        };
        if raw.interrupted {
            return Ok(Ok(Answer::Interrupted));
        }
        let mut collected = Vec::with_capacity(raw.messages.len());
        for (header, payload) in &raw.messages {
            let parsed = RouteNetlinkMessage::deserialize(header, payload).map_err(|e| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "decoding a netlink answer of type {}: {e}",
                        header.message_type
                    ),
                )
            })?;
            collected.push(parsed);
        }
        Ok(Ok(Answer::Done(collected)))
    }
}

fn check_prefix_len(prefix_len: u8, what: impl FnOnce() -> String) -> io::Result<()> {
    if prefix_len > 32 {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: an IPv4 prefix length is at most 32", what()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

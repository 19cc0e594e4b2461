#![allow(clippy::unwrap_used)]

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

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
        // Full buffers drop, they do not block: a functional bound.
        eprintln!("8 full batches flushed in {:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_secs(30));
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

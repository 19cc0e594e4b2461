//! The real classifier in the real kernel: a router namespace with two veth
//! "virtual-access" links to two peers, the kernel forwarding between them,
//! the monitor reporting what bpf_fib_lookup says leaves through the other
//! link. (ip_gre is not needed: tc, the FIB helper and the ring buffer are
//! the same on veth; only the L3 offset differs, and it is read per link.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};

use integration::{Lab, Link, Netns};
use tokio::{sync::mpsc, time::Instant};

use super::{HairpinMonitor, HairpinReport};
use crate::iface::{DatapathEvent, Hairpin, VaId};

const PEER_A: Ipv4Addr = Ipv4Addr::new(10, 61, 1, 2);
const ROUTER_A: Ipv4Addr = Ipv4Addr::new(10, 61, 1, 1);
const PEER_B: Ipv4Addr = Ipv4Addr::new(10, 61, 2, 2);
const ROUTER_B: Ipv4Addr = Ipv4Addr::new(10, 61, 2, 1);
const VA_A: VaId = VaId::virtual_access(1);
const VA_B: VaId = VaId::virtual_access(2);
const INTERVAL: Duration = Duration::from_millis(600);
/// How long to watch for events that should not come (or for extras after
/// the expected one): a short window, which a slow machine only shortens
/// in effect, never turns into a failure.
const SETTLE: Duration = Duration::from_millis(300);
/// Bound for an event that should come (it takes milliseconds).
const ARRIVE: Duration = Duration::from_secs(10);
const PAYLOAD: usize = 100;

/// router (ra, rb) <-> a (pa), b (pb); the peers route everything via the
/// router, which forwards.
struct Topo {
    _lab: Lab,
    router: Netns,
    a: Netns,
    b: Netns,
    ra: Link,
    rb: Link,
}

fn topo(tag: &str) -> Option<Topo> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: tc programs and network namespaces need root");
        return None;
    }
    let lab = Lab::new(tag).unwrap();
    let router = lab.netns("router").unwrap();
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    let (ra, pa) = lab.veth(&router, &a).unwrap();
    let (rb, pb) = lab.veth(&router, &b).unwrap();
    ra.add_addr("10.61.1.1/24").unwrap();
    pa.add_addr("10.61.1.2/24").unwrap();
    rb.add_addr("10.61.2.1/24").unwrap();
    pb.add_addr("10.61.2.2/24").unwrap();
    a.ip(["route", "add", "default", "via", "10.61.1.1"])
        .unwrap();
    b.ip(["route", "add", "default", "via", "10.61.2.1"])
        .unwrap();
    router.sysctl("net.ipv4.ip_forward", "1").unwrap();
    Some(Topo {
        _lab: lab,
        router,
        a,
        b,
        ra,
        rb,
    })
}

/// The peers send from and to this port, where the other peer listens: no
/// ICMP port unreachable comes back (it would be a hairpin of its own).
const PORT: u16 = 9;

/// A UDP socket inside `ns`, bound to `addr`:[`PORT`].
fn socket_in(ns: &Netns, addr: Ipv4Addr) -> UdpSocket {
    ns.run_in(move || UdpSocket::bind((addr, PORT)).unwrap())
        .unwrap()
}

fn send(socket: &UdpSocket, to: Ipv4Addr, count: usize) {
    for _ in 0..count {
        socket.send_to(&[0x5a; PAYLOAD], (to, PORT)).unwrap();
    }
}

/// Every hairpin event that arrives within `wait`.
/// Waits for the first event (up to `ARRIVE`: a functional bound, not a
/// speed claim), then collects what else comes within `SETTLE`.
async fn collect_some(rx: &mut mpsc::Receiver<DatapathEvent>) -> Vec<Hairpin> {
    let started = Instant::now();
    let Ok(Some(first)) = tokio::time::timeout(ARRIVE, rx.recv()).await else {
        return Vec::new();
    };
    eprintln!("first hairpin event after {:?}", started.elapsed());
    let mut out = match first {
        DatapathEvent::Hairpin(h) => vec![h],
        other => panic!("unexpected event {other:?}"),
    };
    out.extend(collect(rx, SETTLE).await);
    out
}

async fn collect(rx: &mut mpsc::Receiver<DatapathEvent>, wait: Duration) -> Vec<Hairpin> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match event {
            DatapathEvent::Hairpin(h) => out.push(h),
            other => panic!("unexpected event {other:?}"),
        }
    }
    out
}

/// Runs `f` with a tokio runtime on a thread inside the router namespace.
fn in_router<F>(t: &Topo, f: impl FnOnce() -> F + Send)
where
    F: Future<Output = ()>,
{
    t.router
        .run_in(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f());
        })
        .unwrap();
}

fn assert_hairpin(h: &Hairpin, from: VaId, to: VaId, src: Ipv4Addr, dst: Ipv4Addr) {
    assert_eq!((h.from, h.to, h.src, h.dst), (from, to, src, dst), "{h:?}");
    // The head is the IPv4 packet: 20 + 8 + 100 bytes, cut at 68.
    assert_eq!(h.head().len(), 68, "{h:?}");
    let head = h.head();
    assert_eq!(head[0], 0x45, "IPv4 header first: {head:02x?}");
    assert_eq!(head[9], 17, "UDP");
    assert_eq!(head[12..16], src.octets());
    assert_eq!(head[16..20], dst.octets());
    assert_eq!(&head[28..], &[0x5a; 40][..], "payload after the UDP header");
}

#[test]
fn forwarded_between_two_virtual_access_links_is_reported_once_per_interval() {
    let Some(t) = topo("tchair") else {
        return;
    };
    let ra = t.ra.ifindex().unwrap();
    let rb = t.rb.ifindex().unwrap();
    let from_a = socket_in(&t.a, PEER_A);
    let from_b = socket_in(&t.b, PEER_B);
    in_router(&t, || async {
        let mut monitor = HairpinMonitor::load(INTERVAL).expect("load the tc program");
        monitor.attach(ra, VA_A, 7).unwrap();
        monitor.attach(rb, VA_B, 7).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        monitor.start(tx).unwrap();

        // To the router itself (either of its addresses): delivered
        // locally, not a hairpin.
        send(&from_a, ROUTER_A, 3);
        send(&from_a, ROUTER_B, 3);
        let events = collect(&mut rx, SETTLE).await;
        assert!(events.is_empty(), "traffic to the router: {events:?}");

        // A -> B through the router: one event however many packets.
        send(&from_a, PEER_B, 5);
        let events = collect_some(&mut rx).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_hairpin(&events[0], VA_A, VA_B, PEER_A, PEER_B);

        // The other direction is another pair.
        send(&from_b, PEER_A, 2);
        let events = collect_some(&mut rx).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_hairpin(&events[0], VA_B, VA_A, PEER_B, PEER_A);

        // Once the interval has passed, A -> B is reported again, once.
        tokio::time::sleep(INTERVAL).await;
        send(&from_a, PEER_B, 4);
        let events = collect_some(&mut rx).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_hairpin(&events[0], VA_A, VA_B, PEER_A, PEER_B);

        let report: HairpinReport = monitor.report().unwrap();
        assert_eq!(report.events, 3, "{report:?}");
        assert_eq!(report.delivered, 3, "{report:?}");
        assert_eq!(report.lost_ring_full, 0, "{report:?}");
        assert_eq!(report.rate_limited, 4 + 1 + 3, "{report:?}");
        assert_eq!(report.links.len(), 2, "{report:?}");
        assert_eq!(report.interval_ms, 600);

        // Detached: A's link is no longer watched, nothing more.
        monitor.detach(ra).unwrap();
        tokio::time::sleep(INTERVAL).await;
        send(&from_a, PEER_B, 2);
        let events = collect(&mut rx, SETTLE).await;
        assert!(events.is_empty(), "after detach: {events:?}");
        assert_eq!(monitor.report().unwrap().events, 3);
    });
}

#[test]
fn links_with_different_network_ids_are_not_a_hairpin() {
    let Some(t) = topo("tchairnid") else {
        return;
    };
    let ra = t.ra.ifindex().unwrap();
    let rb = t.rb.ifindex().unwrap();
    let from_a = socket_in(&t.a, PEER_A);
    let _sink_b = socket_in(&t.b, PEER_B);
    in_router(&t, || async {
        let mut monitor = HairpinMonitor::load(INTERVAL).expect("load the tc program");
        monitor.attach(ra, VA_A, 7).unwrap();
        monitor.attach(rb, VA_B, 8).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        monitor.start(tx).unwrap();

        send(&from_a, PEER_B, 3);
        let events = collect(&mut rx, SETTLE).await;
        assert!(events.is_empty(), "network ids 7 and 8: {events:?}");
        let report = monitor.report().unwrap();
        assert_eq!((report.events, report.rate_limited), (0, 0), "{report:?}");

        // The same traffic once both are in network 7 is reported: the
        // silence above was the network id, not a broken setup.
        monitor.detach(rb).unwrap();
        monitor.attach(rb, VA_B, 7).unwrap();
        send(&from_a, PEER_B, 3);
        let events = collect_some(&mut rx).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_hairpin(&events[0], VA_A, VA_B, PEER_A, PEER_B);
    });
}

#[test]
fn attaching_twice_is_refused_and_unknown_detach_is_fine() {
    let Some(t) = topo("tchairtwice") else {
        return;
    };
    let ra = t.ra.ifindex().unwrap();
    let _ = &t.b;
    in_router(&t, || async {
        let mut monitor = HairpinMonitor::load(INTERVAL).expect("load the tc program");
        monitor.attach(ra, VA_A, 1).unwrap();
        let err = monitor.attach(ra, VaId::virtual_access(9), 1).unwrap_err();
        assert!(err.to_string().contains("already watched"), "{err}");
        monitor.detach(4242).unwrap();
        assert!(
            monitor.attach(4242, VaId::virtual_access(3), 1).is_err(),
            "no such ifindex"
        );
        assert_eq!(monitor.report().unwrap().links.len(), 1);
    });
}

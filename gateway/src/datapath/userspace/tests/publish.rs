//! Publishing changes one by one: after any sequence of operations every
//! replica (and every worker's inbound SAs) holds what a rebuild from the
//! master copy would, with no entry left stale, and a change records only
//! the entries it touches.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{GCM, Spoke, icmp_echo};
use crate::{
    datapath::userspace::{
        counters::GlobalStats,
        process::Processor,
        tables::{Master, Replica, Tables, Va},
    },
    iface::{Route, SaLifetime, VaId},
    ipsec::Mode,
    net::Ipv4Prefix,
};

fn same_va(got: &Va, want: &Va) -> bool {
    let same_out = match (&got.out, &want.out) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    same_out
        && got.spec == want.spec
        && got.dest == want.dest
        && Arc::ptr_eq(&got.stats, &want.stats)
}

/// `got` holds what `want` (a rebuild) does, and its routes point at its
/// own current interfaces.
fn assert_tables(got: &Tables, want: &Tables, what: &str) {
    let mut ids: Vec<VaId> = got.vas.keys().copied().collect();
    let mut want_ids: Vec<VaId> = want.vas.keys().copied().collect();
    ids.sort();
    want_ids.sort();
    assert_eq!(ids, want_ids, "{what}: interfaces");
    for (id, va) in &want.vas {
        assert!(same_va(&got.vas[id], va), "{what}: {id} is stale");
    }
    let routes = |t: &Tables| {
        let mut r: Vec<(Ipv4Prefix, VaId)> = t.fib.iter().map(|(p, v)| (p, v.spec.id)).collect();
        r.sort();
        r
    };
    assert_eq!(routes(got), routes(want), "{what}: routes");
    for (prefix, va) in got.fib.iter() {
        assert!(
            Arc::ptr_eq(va, &got.vas[&va.spec.id]),
            "{what}: {prefix} leads to an old copy of {}",
            va.spec.id
        );
    }
    assert_eq!(got.local, want.local, "{what}: local addresses");
}

/// A worker: its replica and processor, checked against the master copy.
struct Worker {
    replica: Replica,
    processor: Processor,
}

impl Worker {
    fn new(m: &mut Master) -> Self {
        Worker {
            replica: m.follow(),
            processor: Processor::new(Arc::new(GlobalStats::default()), None),
        }
    }

    fn check(&mut self, m: &Master, what: &str) {
        self.processor.sync(&mut self.replica);
        assert_tables(self.replica.tables(), &m.rebuilt(), what);
        let mut spis: Vec<u32> = self.processor.inbound_specs().map(|(s, _)| s).collect();
        let mut want: Vec<u32> = m.inbound().keys().copied().collect();
        spis.sort_unstable();
        want.sort_unstable();
        assert_eq!(spis, want, "{what}: inbound SAs");
        for (spi, spec) in self.processor.inbound_specs() {
            assert!(
                Arc::ptr_eq(spec, &m.inbound()[&spi]),
                "{what}: SPI {spi:#x} has an old peer"
            );
        }
    }
}

/// A deterministic xorshift (`next(n)` is in `0..n`), and SPIs.
struct Rng(u64, u32);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn spi(&mut self) -> u32 {
        self.1 += 1;
        self.1
    }
}

/// One random operation `op` on spoke `s`'s interface (or on `prefix` via
/// it); refusals (an interface that exists, or does not) are part of it.
fn random_op(m: &mut Master, rng: &mut Rng, op: u64, s: &Spoke, prefix: Ipv4Prefix, t0: Instant) {
    let route = Route {
        prefix,
        va: s.va,
        next_hop: None,
    };
    match op {
        0 | 1 => {
            let mut spec = s.install_spec(Some(1));
            // Some share the config's address, some have their own.
            if rng.next(2) == 0 {
                spec.unnumbered = Ipv4Addr::new(10, 9, 9, u8::try_from(s.va.raw()).unwrap());
            }
            let _ = m.create_va(&spec);
        }
        2 => {
            let _ = m.remove_va(s.va);
        }
        3 | 4 => {
            let mut pair = s.sa_pair();
            pair.spi_in = rng.spi();
            pair.spi_out = pair.spi_in;
            pair.defer_outbound = rng.next(2) == 0;
            pair.lifetime = SaLifetime {
                hard_seconds: Some(rng.next(30) + 5),
                ..SaLifetime::default()
            };
            let at = t0 + Duration::from_secs(rng.next(20));
            let _ = m.install_sa_starting_at(&pair, 1, at);
        }
        5 => {
            let mut spis: Vec<u32> = m
                .inbound()
                .iter()
                .filter(|(_, spec)| spec.va == s.va)
                .map(|(spi, _)| *spi)
                .collect();
            spis.sort_unstable();
            if !spis.is_empty() {
                let spi = spis[usize::try_from(rng.next(spis.len() as u64)).unwrap()];
                if rng.next(2) == 0 {
                    m.retire_sa(s.va, spi).unwrap();
                } else {
                    m.remove_sa(s.va, spi).unwrap();
                }
            }
        }
        6 => {
            let port = 4500 + u16::try_from(rng.next(3)).unwrap();
            let _ = m.update_peer(s.va, SocketAddrV4::new(*s.outer.ip(), port));
        }
        7 => {
            let _ = m.add_route(&route);
        }
        8 => {
            let _ = m.remove_route(&route);
        }
        _ => {
            let _ = m.expire(t0 + Duration::from_secs(rng.next(40)));
        }
    }
}

/// Random operations on a few interfaces sharing a few prefixes (so that
/// routes move between interfaces), SAs with short lifetimes, publishes
/// at random points, and a worker that joins late.
#[test]
fn replicas_match_a_rebuild_after_any_sequence_of_operations() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15, 0x1000);
    let spokes: Vec<Spoke> = (1..=6)
        .map(|n| Spoke::new(n, Mode::Transport, GCM, None))
        .collect();
    let prefixes: Vec<Ipv4Prefix> = [
        "10.1.1.101/32",
        "10.1.1.102/32",
        "192.168.1.0/24",
        "192.168.2.0/24",
        "192.168.0.0/16",
        "0.0.0.0/0",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    let t0 = Instant::now();
    let mut m = Master::default();
    m.set_local(&[Ipv4Addr::new(10, 1, 1, 1)]);
    let mut workers = vec![Worker::new(&mut m)];
    let mut published = 0;
    for step in 0..4000 {
        let s = &spokes[usize::try_from(rng.next(6)).unwrap()];
        let prefix = prefixes[usize::try_from(rng.next(6)).unwrap()];
        let op = rng.next(10);
        random_op(&mut m, &mut rng, op, s, prefix, t0);
        let what = format!("step {step} (op {op}, {})", s.va);
        // The master's own tables are current at once.
        assert_tables(m.tables(), &m.rebuilt(), &format!("{what}, master"));
        if rng.next(3) == 0 {
            m.publish();
            published += 1;
            for w in &mut workers {
                w.check(&m, &what);
            }
        }
        if step == 1500 {
            workers.push(Worker::new(&mut m));
        }
    }
    m.publish();
    for w in &mut workers {
        w.check(&m, "at the end");
    }
    assert!(published > 1000);
}

/// What one change records, with 50 spokes in: only its own entries.
#[test]
fn a_change_records_only_the_entries_it_touches() {
    let mut m = Master::default();
    let spokes: Vec<Spoke> = (1..=50)
        .map(|n| Spoke::new(n, Mode::Transport, GCM, None))
        .collect();
    for s in &spokes {
        s.install(&mut m);
    }
    let mut w = Worker::new(&mut m);
    w.check(&m, "50 spokes");
    let s = Spoke::new(51, Mode::Transport, GCM, None);
    // The interface (its unnumbered address is shared: no new local one).
    m.create_va(&s.install_spec(Some(1))).unwrap();
    assert_eq!(m.pending(), 1);
    m.publish();
    // The inbound SA and the interface's view with its outbound SA.
    m.install_sa(&s.sa_pair()).unwrap();
    assert_eq!(m.pending(), 2);
    m.publish();
    for prefix in [Ipv4Prefix::new(s.inner, 32).unwrap(), s.lan] {
        m.add_route(&Route {
            prefix,
            va: s.va,
            next_hop: None,
        })
        .unwrap();
        assert_eq!(m.pending(), 1);
        m.publish();
    }
    // A rekey: the new inbound SA, the view, and its two routes.
    let next = s.rekeyed(1);
    m.install_sa(&next.sa_pair()).unwrap();
    assert_eq!(m.pending(), 4);
    // Removing the old pair changes no view: the new one sends.
    m.publish();
    m.remove_sa(s.va, s.spi_in).unwrap();
    assert_eq!(m.pending(), 1);
    m.publish();
    w.check(&m, "51 spokes");
    // Removing the interface: its SA, routes and itself.
    m.remove_va(s.va).unwrap();
    assert_eq!(m.pending(), 4);
    m.publish();
    w.check(&m, "50 spokes again");
}

/// Removing an interface leaves nothing of it in any table, and a prefix
/// another interface took over stays with that one.
#[test]
fn a_removed_interface_leaves_nothing_behind() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let s2 = Spoke::new(2, Mode::Transport, GCM, None);
    let mut m = Master::default();
    s1.install(&mut m);
    let mut own = s2.install_spec(Some(1));
    own.unnumbered = Ipv4Addr::new(10, 2, 2, 1);
    m.create_va(&own).unwrap();
    m.install_sa(&s2.sa_pair()).unwrap();
    // s2 takes over s1's LAN.
    let moved = Route {
        prefix: s1.lan,
        va: s2.va,
        next_hop: None,
    };
    let replaced = m.add_route(&moved).unwrap();
    assert_eq!(replaced.map(|r| r.va), Some(s1.va));
    let mut w = Worker::new(&mut m);
    w.check(&m, "both");
    let gone = m.remove_va(s1.va).unwrap();
    assert_eq!(
        gone.iter().map(|r| r.prefix).collect::<Vec<_>>(),
        [Ipv4Prefix::new(s1.inner, 32).unwrap()]
    );
    assert!(m.is_routed(s1.lan));
    m.publish();
    w.check(&m, "s1 removed");
    let t = w.replica.tables();
    assert!(!t.vas.contains_key(&s1.va));
    assert!(t.fib.lookup(s1.inner).is_none());
    assert_eq!(
        t.fib
            .lookup(Ipv4Addr::new(192, 168, 1, 7))
            .unwrap()
            .1
            .spec
            .id,
        s2.va
    );
    // s1's address went with it; s2's own stays.
    assert!(!t.local.contains(&Ipv4Addr::new(10, 1, 1, 1)) && t.local.contains(&own.unnumbered));
    assert!(w.processor.inbound_specs().all(|(spi, _)| spi == s2.spi_in));
    m.remove_va(s2.va).unwrap();
    m.publish();
    w.check(&m, "none");
    let t = w.replica.tables();
    assert!(t.vas.is_empty() && t.fib.is_empty() && t.local.is_empty());
    assert_eq!(w.processor.inbound_specs().count(), 0);
}

/// What the FIB leads to follows its interface's SAs: after a rekey (at
/// once, or deferred until the old pair is retired), a removal and a peer
/// move, packets from the TUN device leave on the right SA to the right
/// endpoint.
#[test]
fn routes_lead_to_the_interfaces_current_sa_and_endpoint() {
    let s1 = Spoke::new(1, Mode::Transport, GCM, None);
    let mut m = Master::default();
    s1.install(&mut m);
    let mut w = Worker::new(&mut m);
    let packet = icmp_echo(
        Ipv4Addr::new(192, 168, 0, 10),
        Ipv4Addr::new(192, 168, 1, 10),
        8,
    );
    let sends = |w: &mut Worker, m: &mut Master| -> (u32, SocketAddrV4) {
        m.publish();
        w.processor.sync(&mut w.replica);
        let to = w.processor.route(w.replica.tables(), &packet).unwrap();
        (to.out.as_ref().unwrap().sa.spi(), to.dest)
    };
    assert_eq!(sends(&mut w, &mut m), (s1.spi_out, s1.outer));
    let b = s1.rekeyed(1);
    m.install_sa(&b.sa_pair()).unwrap();
    assert_eq!(sends(&mut w, &mut m), (b.spi_out, s1.outer));
    // A responder's rekey waits for the old pair to be retired.
    let c = s1.rekeyed(2);
    let mut deferred = c.sa_pair();
    deferred.defer_outbound = true;
    m.install_sa(&deferred).unwrap();
    assert_eq!(sends(&mut w, &mut m), (b.spi_out, s1.outer));
    m.retire_sa(s1.va, s1.spi_in).unwrap();
    assert_eq!(sends(&mut w, &mut m), (b.spi_out, s1.outer), "b still live");
    m.retire_sa(s1.va, b.spi_in).unwrap();
    assert_eq!(sends(&mut w, &mut m), (c.spi_out, s1.outer));
    let moved = SocketAddrV4::new(*s1.outer.ip(), 31_000);
    m.update_peer(s1.va, moved).unwrap();
    assert_eq!(sends(&mut w, &mut m), (c.spi_out, moved));
    m.remove_sa(s1.va, c.spi_in).unwrap();
    // The newest pair left: b, retired, still the newest.
    assert_eq!(sends(&mut w, &mut m), (b.spi_out, moved));
    w.check(&m, "after all");
}

/// Helpers for these tests only.
impl Spoke {
    fn install_spec(&self, template: Option<u16>) -> crate::iface::VirtualAccessSpec {
        crate::iface::VirtualAccessSpec {
            id: self.va,
            name: self.va.to_string(),
            template,
            unnumbered: Ipv4Addr::new(10, 1, 1, 1),
            mtu: 1400,
            tcp_adjust_mss: Some(1360),
            nhrp_network_id: Some(2),
            peer_inner: Some(self.inner),
            local_outer: SocketAddrV4::new(super::HUB, 4500),
            remote_outer: self.outer,
        }
    }
}

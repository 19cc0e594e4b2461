//! Where a spoke's bytes go on the hub: N spokes' state built in memory,
//! per component, counted by a global allocator that tracks live heap
//! bytes (what the component holds, without the allocator's own overhead,
//! which the RSS figures of `cargo xtask bench-ike-scale` include).
//!
//! - IKE: the engine after N full dials (IKE SA with its CHILD SA, keys,
//!   the cached last response for retransmissions, identities);
//! - pool: N leases in the real pool (its file and journal in a temporary
//!   directory).
//!
//! `SPOKE_MEMORY_N` (default 4000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    sync::atomic::{AtomicIsize, Ordering},
    time::Instant,
};

use gateway::{
    config::{self, Identity},
    ike::{
        engine::Engine,
        exchange::{Initiator, InitiatorConfig, Step},
        policy::{Policy, Rekey},
        proposal::{EspProposal, IkeProposal},
        sa::{Action, AddressPools},
    },
    ipsec::{Mode, SystemRng},
    pool::Pools,
};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to `System` with the caller's layout; the counter
// only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size.cast_signed() - layout.size().cast_signed(),
            Ordering::Relaxed,
        );
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const HUB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(172, 25, 1, 1), 500);

const CONFIG: &str = r#"
[hub]
local_address = "172.25.1.1"
uplink = "eth0"
[ikev2.profile.Flex]
match_identity_remote = ["any"]
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "K"
pool = "P"
virtual_template = 1
[ikev2.keyring.K.peer.All]
address = "0.0.0.0/0"
pre_shared_key_local = "k"
pre_shared_key_remote = "k"
[pool.P]
first = "10.64.0.1"
last = "10.64.255.254"
[virtual_template.1]
unnumbered = "10.1.1.1"
"#;

/// One address per call; the pool's own cost is measured apart.
struct Counter(u32);
impl AddressPools for Counter {
    fn acquire(&mut self, _: &str, _: &str) -> Result<Ipv4Addr, String> {
        self.0 += 1;
        Ok(Ipv4Addr::from(0x0a40_0000 + self.0))
    }
    fn release(&mut self, _: &str, _: Ipv4Addr) {}
}

fn dial(engine: &mut Engine, pools: &mut Counter, i: u32, mode: Mode, now: Instant) {
    let spoke = SocketAddrV4::new(Ipv4Addr::from(0xc612_0001 + i), 500);
    let config = InitiatorConfig {
        local: spoke,
        remote: HUB,
        identity: Identity::Fqdn(format!("spoke-{i}.bench")),
        remote_identity: None,
        psk_local: b"k".to_vec(),
        psk_remote: b"k".to_vec(),
        ike: vec![IkeProposal::parse("aes256-sha256-x25519").unwrap()],
        esp: vec![EspProposal::parse("aes256gcm16").unwrap()],
        request_address: true,
        mode,
        ts_remote: vec![],
        fragment_len: None,
        force_encapsulation: false,
        route_set: vec![],
        tunnel_id: 1,
        profile: "Flex".into(),
        virtual_template: None,
        rekey: Rekey::default(),
    };
    let mut initiator = Initiator::new(config, Box::new(SystemRng));
    let mut request = initiator.start().unwrap();
    loop {
        let actions = engine.handle(now, HUB, spoke, &request, pools).unwrap();
        let response = actions
            .into_iter()
            .find_map(|a| match a {
                Action::Send { packet, .. } => Some(packet),
                _ => None,
            })
            .unwrap();
        match initiator.handle(&response).unwrap() {
            Step::Send(next) => request = next,
            Step::SendAll(_) => unreachable!("no fragmentation configured"),
            Step::Established(_) => return,
        }
    }
}

fn per(bytes: isize, n: u32) -> f64 {
    bytes as f64 / f64::from(n)
}

fn main() {
    let n: u32 = std::env::var("SPOKE_MEMORY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let config = config::parse(CONFIG, "bench.toml").unwrap();
    println!("spoke_memory: {n} spokes, live heap bytes per spoke by component");

    let mut engine = Engine::new(Policy::from_config(&config).unwrap(), Box::new(SystemRng));
    let mut counter = Counter(0);
    let now = Instant::now();
    let before = live();
    for i in 0..n {
        dial(&mut engine, &mut counter, i, Mode::Transport, now);
    }
    let ike = live() - before;
    println!(
        "  IKE engine (IKE SA + CHILD SA, GRE transport)  {:>8.0} B/spoke",
        per(ike, n)
    );

    let dir = tempfile::tempdir().unwrap();
    let pools: BTreeMap<String, config::Pool> = config.pool.clone();
    let before = live();
    let mut pool = Pools::open(dir.path(), &pools).unwrap();
    for i in 0..n {
        pool.acquire("P", &format!("fqdn:spoke-{i}.bench"), 1)
            .unwrap();
    }
    let leases = live() - before;
    println!(
        "  pool lease (active, by identity)             {:>8.0} B/spoke",
        per(leases, n)
    );
    drop(pool);
    drop(engine);
}

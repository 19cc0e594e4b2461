//! BGP scale: the time for N dynamic neighbors to reach Established at a
//! hub speaker and exchange one prefix each with it (the issue's "N = 100,
//! 1000"). Not criterion: one run is seconds of wall time over real
//! loopback TCP, repeated a few times, min and median printed.
//!
//! The hub is the real [`Speaker`] (listener, a task per session, RIB,
//! batched flushes) configured as in the seed: a listen range, route
//! reflector clients, `network 192.168.0.0/24` and `aggregate-address
//! 192.168.0.0/16 summary-only`. The clients are minimal hand-written BGP
//! speakers (OPEN, KEEPALIVE, one UPDATE, then read), each from its own
//! 127.A.x.y, in the same process and the same tokio runtime as the hub:
//! the RSS figures include them.
//!
//! Modes (`BGP_SCALE_MODE`, default `summary,reflect`):
//! - `summary`: client i announces a /28 inside 192.168.0.0/16, as spokes
//!   announce their LANs under the hub's summary; the hub suppresses them
//!   and sends every client the aggregate only. Done when all N are
//!   Established, the hub has all N prefixes and every client has the
//!   aggregate.
//! - `reflect`: client i announces 10.(100 + i / 256).(i % 256).0/24,
//!   outside the aggregate, so the hub reflects it to the N - 1 others
//!   (N^2 routes in all). Done as above and when every client has all the
//!   others' prefixes too.
//!
//! `BGP_SCALE_N` (default `100,1000`), `BGP_SCALE_RUNS` (default 3),
//! `BGP_SCALE_TIMEOUT` (seconds per run, default 120).
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use gateway::{
    bgp::{
        speaker::{Speaker, SpeakerConfig},
        types::{Capability, Message, Open, Origin, PathAttributes, Update},
        wire::{decode, encode_to_vec, frame_len},
    },
    config,
    net::Ipv4Prefix,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

const ASN: u32 = 65001;
const AGGREGATE: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::new(192, 168, 0, 0),
    len: 16,
};
const NETWORK: Ipv4Prefix = Ipv4Prefix {
    addr: Ipv4Addr::new(192, 168, 0, 0),
    len: 24,
};
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the hub's counters are read while waiting: short against the
/// figures measured (tens of milliseconds at N = 100).
const POLL: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Summary,
    Reflect,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Summary => "summary",
            Mode::Reflect => "reflect",
        }
    }

    /// The prefix client `i` announces.
    fn prefix(self, i: usize) -> Ipv4Prefix {
        let i = u32::try_from(i).unwrap();
        match self {
            // /28s from 192.168.1.0 on: 255 * 16 of them, none in the
            // hub's own 192.168.0.0/24.
            Mode::Summary => Ipv4Prefix::new(Ipv4Addr::from(0xc0a8_0100 + (i << 4)), 28).unwrap(),
            Mode::Reflect => Ipv4Prefix::new(Ipv4Addr::from(0x0a64_0000 + (i << 8)), 24).unwrap(),
        }
    }

    fn max_n(self) -> usize {
        match self {
            Mode::Summary => 255 * 16,
            Mode::Reflect => 155 * 256,
        }
    }

    /// How many prefixes a client holds when it is done: the aggregate,
    /// and in `reflect` every other client's prefix.
    fn wanted_by_client(self, n: usize) -> usize {
        match self {
            Mode::Summary => 1,
            Mode::Reflect => n,
        }
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

/// Room for a socket per client and per hub session, and some to spare.
fn raise_nofile(n: usize) {
    let wanted = libc::rlim_t::try_from(2 * n + 512).unwrap();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= wanted {
        return;
    }
    assert!(
        limit.rlim_max >= wanted,
        "RLIMIT_NOFILE hard limit {} is below the {wanted} descriptors N = {n} needs",
        limit.rlim_max
    );
    limit.rlim_cur = wanted;
    // SAFETY: setrlimit reads the struct it is given.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// VmHWM (peak) and VmRSS of this process, KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets VmHWM to the current RSS (Linux 4.0+), so each run's peak is its
/// own; false when the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The hub's `[bgp]`: parsed with unicast addresses (the config check
/// refuses loopback ones), the listen range then moved onto 127.a.0.0/16.
fn hub_bgp(a: u8, n: usize) -> config::Bgp {
    let text = format!(
        r#"
[hub]
local_address = "172.25.1.1"
uplink = "eth0"
[bgp]
asn = {ASN}
networks = ["{NETWORK}"]
aggregates = [{{ prefix = "{AGGREGATE}", summary_only = true }}]
listen_limit = {n}
[[bgp.listen_range]]
prefix = "10.1.0.0/16"
peer_group = "Spokes"
[bgp.peer_group.Spokes]
remote_as = {ASN}
route_reflector_client = true
# Next hop self must be unicast, not 127.x (RFC 4271 section 6.3).
update_source = "10.1.1.1"
"#
    );
    let mut bgp = config::parse(&text, "bgp_scale").unwrap().bgp.unwrap();
    bgp.listen_range[0].prefix = Ipv4Prefix::new(Ipv4Addr::new(127, a, 0, 0), 16).unwrap();
    bgp
}

/// Client `i`'s source address: 127.a.x.y with y in 1..=254 and x from 1
/// (127.a.0.1 is the hub).
fn client_addr(a: u8, i: usize) -> Ipv4Addr {
    let x = u8::try_from(1 + i / 254).unwrap();
    let y = u8::try_from(1 + i % 254).unwrap();
    Ipv4Addr::new(127, a, x, y)
}

fn send(stream: &mut Vec<u8>, message: &Message) {
    stream.extend_from_slice(&encode_to_vec(message).unwrap());
}

/// Client `i`'s UPDATE: `prefix` with a next hop of its own.
fn announcement(i: usize, prefix: Ipv4Prefix) -> Message {
    let index = u32::try_from(i).unwrap();
    Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(PathAttributes {
            origin: Origin::Igp,
            as_path: vec![],
            // A unicast next hop, as a spoke's tunnel address would be.
            next_hop: Ipv4Addr::from(0x0a02_0001 + index),
            med: None,
            local_pref: Some(100),
            atomic_aggregate: false,
            aggregator: None,
            communities: vec![],
            originator_id: None,
            cluster_list: vec![],
            other: vec![],
        }),
        nlri: vec![prefix],
    })
}

/// One dynamic neighbor: OPEN, KEEPALIVE on the hub's OPEN, its UPDATE
/// once Established, then reads (keeping the table the hub sends) until
/// the hub closes. Counts itself in `done` when it holds `wanted`
/// prefixes including the aggregate.
async fn client(
    i: usize,
    source: Ipv4Addr,
    hub: SocketAddrV4,
    prefix: Ipv4Prefix,
    wanted: usize,
    done: Arc<AtomicUsize>,
) -> Result<usize, String> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| format!("client {i} ({source}): {what}: {e}");
    let socket = TcpSocket::new_v4().map_err(|e| fail("socket", &e))?;
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
        .map_err(|e| fail("bind", &e))?;
    let mut stream: TcpStream =
        tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(SocketAddr::V4(hub)))
            .await
            .map_err(|e| fail("connect", &e))?
            .map_err(|e| fail("connect", &e))?;
    stream.set_nodelay(true).map_err(|e| fail("nodelay", &e))?;
    let mut out = Vec::new();
    send(
        &mut out,
        &Message::Open(Open {
            my_as: u16::try_from(ASN).unwrap(),
            hold_time: 180,
            router_id: source,
            capabilities: vec![
                Capability::Multiprotocol { afi: 1, safi: 1 },
                Capability::FourOctetAs(ASN),
            ],
        }),
    );
    stream
        .write_all(&out)
        .await
        .map_err(|e| fail("write", &e))?;
    let update = announcement(i, prefix);
    let mut table: HashSet<Ipv4Prefix> = HashSet::new();
    let mut established = false;
    let mut counted = false;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let got = stream
            .read(&mut chunk)
            .await
            .map_err(|e| fail("read", &e))?;
        if got == 0 {
            return if counted {
                Ok(table.len())
            } else {
                Err(fail(
                    "hub closed early",
                    &format!("{} prefixes", table.len()),
                ))
            };
        }
        buf.extend_from_slice(&chunk[..got]);
        out.clear();
        while let Some(len) = frame_len(&buf).map_err(|e| fail("framing", &e))? {
            let message = decode(&buf[..len]).map_err(|e| fail("decode", &e))?;
            buf.drain(..len);
            match message {
                Message::Open(_) => send(&mut out, &Message::Keepalive),
                Message::Keepalive if !established => {
                    established = true;
                    send(&mut out, &update);
                }
                Message::Update(u) => {
                    for p in &u.withdrawn {
                        table.remove(p);
                    }
                    table.extend(u.nlri);
                }
                // The hub's Cease at shutdown.
                Message::Notification(_) if counted => return Ok(table.len()),
                Message::Notification(n) => return Err(fail("NOTIFICATION", &format!("{n:?}"))),
                _ => {}
            }
        }
        if !counted && table.len() >= wanted && table.contains(&AGGREGATE) {
            counted = true;
            done.fetch_add(1, Ordering::Relaxed);
        }
        if !out.is_empty() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| fail("write", &e))?;
        }
    }
}

struct Figures {
    elapsed: Duration,
    /// KiB over the RSS before the hub started.
    peak_delta: u64,
    rss_delta: u64,
}

async fn run_once(a: u8, n: usize, mode: Mode, timeout: Duration) -> Figures {
    // What the previous run freed goes back to the system first, or this
    // run would reuse it unseen and look smaller.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let peak_reset = reset_peak();
    let (_, rss_before) = memory();
    let hub_addr = Ipv4Addr::new(127, a, 0, 1);
    let config = SpeakerConfig {
        bgp: hub_bgp(a, n),
        router_id: hub_addr,
        listen: SocketAddrV4::new(hub_addr, 0),
        peer_port: 0,
        scan_kernel_table: false,
    };
    let (hub, hub_tasks) = Speaker::start(config, None).unwrap();
    hub.set_routes_present([NETWORK]);
    let bound = hub.local_addr();
    let done = Arc::new(AtomicUsize::new(0));
    let wanted = mode.wanted_by_client(n);

    let start = Instant::now();
    let clients: Vec<JoinHandle<Result<usize, String>>> = (0..n)
        .map(|i| {
            tokio::spawn(client(
                i,
                client_addr(a, i),
                bound,
                mode.prefix(i),
                wanted,
                done.clone(),
            ))
        })
        .collect();
    // The hub's table: the clients' prefixes, its network and aggregate.
    let hub_prefixes = n + 2;
    let mut polls = 0u64;
    loop {
        let clients_done = done.load(Ordering::Relaxed);
        if clients_done == n && hub.established_count() == n && hub.prefix_count() == hub_prefixes {
            break;
        }
        // A client that ended has failed; looked for now and then only, a
        // pass over N handles every poll would weigh on the figures.
        polls += 1;
        let failed = polls.is_multiple_of(100) && clients.iter().any(JoinHandle::is_finished);
        if failed || start.elapsed() > timeout {
            let failed: Vec<String> = first_errors(clients).await;
            panic!(
                "N = {n} {}: not converged after {:?}: {} of {n} Established at the hub, \
                 {} of {hub_prefixes} prefixes, {clients_done} of {n} clients done; \
                 first client errors: {failed:?}",
                mode.name(),
                start.elapsed(),
                hub.established_count(),
                hub.prefix_count(),
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = start.elapsed();
    let (peak, rss_after) = memory();

    hub.shutdown(hub_tasks).await;
    for (i, c) in clients.into_iter().enumerate() {
        let held = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .unwrap_or_else(|_| panic!("client {i} did not end after the hub's Cease"))
            .unwrap()
            .unwrap();
        if mode == Mode::Summary {
            // Summary only: the more-specifics stay at the hub.
            assert_eq!(held, 1, "client {i} holds more than the aggregate");
        }
    }
    Figures {
        elapsed,
        peak_delta: if peak_reset {
            peak.saturating_sub(rss_before)
        } else {
            0
        },
        rss_delta: rss_after.saturating_sub(rss_before),
    }
}

/// The errors of the clients that ended (at most five), aborting the rest.
async fn first_errors(clients: Vec<JoinHandle<Result<usize, String>>>) -> Vec<String> {
    let mut errors = Vec::new();
    for c in clients {
        if c.is_finished() && errors.len() < 5 {
            match c.await {
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(e.to_string()),
                Ok(Ok(_)) => {}
            }
        } else {
            c.abort();
        }
    }
    errors
}

fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = kib as f64 / 1024.0;
    format!("{m:.1} MiB")
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); the settings come
    // from the environment.
    let ns: Vec<usize> = env_list("BGP_SCALE_N", "100,1000")
        .iter()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("BGP_SCALE_N: {s}?")))
        .collect();
    let modes: Vec<Mode> = env_list("BGP_SCALE_MODE", "summary,reflect")
        .iter()
        .map(|s| match s.as_str() {
            "summary" => Mode::Summary,
            "reflect" => Mode::Reflect,
            _ => panic!("BGP_SCALE_MODE: {s}? (summary, reflect)"),
        })
        .collect();
    let runs = usize::try_from(env_number("BGP_SCALE_RUNS", 3).max(1)).unwrap();
    let timeout = Duration::from_secs(env_number("BGP_SCALE_TIMEOUT", 120));
    // A loopback /16 of this process's own: parallel runs do not meet.
    let a = u8::try_from(2 + std::process::id() % 250).unwrap();
    let max_n = ns.iter().copied().max().unwrap_or(0);
    assert!(
        ns.iter().all(|&n| n > 0 && n <= 10_000),
        "N between 1 and 10000 (listen_limit's range)"
    );
    assert!(
        max_n <= 254 * 254,
        "no more than 254 * 254 client addresses"
    );
    raise_nofile(max_n);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "bgp_scale: hub on 127.{a}.0.1, clients in the same process and runtime \
         ({} worker threads); RSS includes them",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    let mut rows = Vec::new();
    for &mode in &modes {
        for &n in &ns {
            assert!(n <= mode.max_n(), "N = {n} too large for {}", mode.name());
            let mut figures = Vec::new();
            for run in 1..=runs {
                let f = runtime.block_on(run_once(a, n, mode, timeout));
                println!(
                    "{} N = {n} run {run}: {:.3} s, {:.0} sessions/s, RSS peak +{}, after +{}",
                    mode.name(),
                    f.elapsed.as_secs_f64(),
                    sessions_per_sec(n, f.elapsed),
                    mib(f.peak_delta),
                    mib(f.rss_delta),
                );
                figures.push(f);
            }
            figures.sort_by_key(|f| f.elapsed);
            rows.push((mode, n, figures));
        }
    }
    print_table(&rows);
}

/// Markdown, as BENCHMARKS.md has it.
fn print_table(rows: &[(Mode, usize, Vec<Figures>)]) {
    println!();
    println!("| Mode | N | Min | Median | Sessions/s (median) | RSS peak delta (median run) |");
    println!("|---|---|---|---|---|---|");
    for (mode, n, figures) in rows {
        let median = &figures[figures.len() / 2];
        println!(
            "| {} | {n} | {:.3} s | {:.3} s | {:.0} | {} |",
            mode.name(),
            figures[0].elapsed.as_secs_f64(),
            median.elapsed.as_secs_f64(),
            sessions_per_sec(*n, median.elapsed),
            mib(median.peak_delta),
        );
    }
}

fn sessions_per_sec(n: usize, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / elapsed.as_secs_f64()
}

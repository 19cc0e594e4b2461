//! IKE handshakes per second through the real IKE task
//! (`ike::task::run`: its sockets, engine and crypto workers) over
//! loopback UDP, with the crypto workers and without (0: the engine
//! computes every handshake on the task, as before the workers), the whole
//! process pinned to 1 or 2 cores (`sched_setaffinity`). Not criterion:
//! each run is seconds of wall time; the median and the best are printed.
//!
//! Two loads:
//! - `full`: complete dials (IKE_SA_INIT, then IKE_AUTH with a CFG_REQUEST
//!   for an address and a CHILD_SA), each a new identity, by
//!   `exchange::Initiator` from client threads in the same process. The
//!   initiators' crypto costs as much as the hub's and shares its cores:
//!   the figure is what this box does with both ends on it. Beside it, the
//!   hub's own CPU time per handshake (its threads', from /proc), and the
//!   part of it on the task, which no worker can take.
//! - `init`: IKE_SA_INIT requests alone, one precomputed request sent with
//!   a new SPI each time, so that the clients cost next to nothing: how
//!   fast the hub does the expensive half (Diffie-Hellman, SKEYSEED) with
//!   the cores to itself.
//!
//! `IKE_TASK_MODE` (default `full,init`), `IKE_TASK_CORES` (`1,2`),
//! `IKE_TASK_SECONDS` per run (2), `IKE_TASK_RUNS` (3), `IKE_TASK_WINDOW`
//! (requests in flight per client thread, 32), `IKE_TASK_PROPOSAL`
//! (`aes256gcm16-prfsha256-ecp256`). The hub is 127.77.8.1, the clients
//! 127.77.8.10 and up, all on UDP 500: needs root. Address leases go to a
//! state directory in /dev/shm (a synced journal line each; on a disk that
//! is the hub's own bottleneck, not what this measures).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use gateway::{
    config::{self, Identity},
    ike::{
        engine::Engine,
        exchange::{Initiator, InitiatorConfig, Step},
        policy::{Policy, Rekey},
        proposal::{EspProposal, IkeProposal},
        sa::ChildSaParams,
        task::{self, IkeShared, IkeSockets, PeerActivity, SessionLayer},
        wire::TrafficSelector,
    },
    ipsec::{Mode, SystemRng},
    pool::Pools,
};

const HUB: Ipv4Addr = Ipv4Addr::new(127, 77, 8, 1);
const CLIENT_THREADS: usize = 2;
/// A request unanswered this long is sent again (a dial) or given up (an
/// IKE_SA_INIT alone).
const RESEND: Duration = Duration::from_secs(1);

const HUB_CONFIG: &str = r#"
[hub]
local_address = "127.77.8.1"
uplink = "lo"
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
first = "10.2.0.1"
last = "10.2.255.254"
[virtual_template.1]
unnumbered = "10.1.1.1"
"#;

/// The hub without a datapath: sessions are IKE's alone.
struct NoSessions;

impl SessionLayer for NoSessions {
    fn child_up(&mut self, _: &ChildSaParams) -> Result<(), String> {
        Ok(())
    }
    fn child_down(&mut self, _: u32) {}
    fn child_retired(&mut self, _: u32) {}
    fn session_down(&mut self, _: u32) {}
    fn peer_activity(&mut self) -> PeerActivity {
        PeerActivity::default()
    }
    fn ike_rekeyed(&mut self, _: u32, _: u64) {}
    fn peer_moved(&mut self, _: u32, _: SocketAddrV4) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    Full,
    Init,
}

struct Settings {
    seconds: Duration,
    window: usize,
    proposal: IkeProposal,
}

/// One run's figures.
struct Figures {
    per_sec: f64,
    /// Cores the process had on average: its CPU time over the wall time
    /// (the rest went to whatever else runs on the machine, or idled).
    cores_used: f64,
    /// CPU per handshake: the hub's task thread, its workers, the clients.
    task_us: f64,
    workers_us: f64,
    clients_us: f64,
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    env(name, default)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Pins the calling thread, and so every thread it starts, to CPUs
/// `0..cores`.
fn pin(cores: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it,
    // and sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..cores {
            libc::CPU_SET(cpu, &mut set);
        }
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set);
        assert_eq!(
            r,
            0,
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// CPU seconds of this process's threads, by name.
fn thread_cpu() -> HashMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = f64::from(u32::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap());
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = entry.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        // Fields after the command's closing parenthesis: utime and stime
        // are the 12th and 13th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let cpu: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        *out.entry(name.trim().to_owned()).or_default() += cpu / ticks;
    }
    out
}

/// CPU seconds of the calling thread.
fn own_cpu() -> f64 {
    // SAFETY: clock_gettime writes the timespec it is given.
    let t = unsafe {
        let mut t: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t);
        t
    };
    Duration::new(t.tv_sec.try_into().unwrap(), t.tv_nsec.try_into().unwrap()).as_secs_f64()
}

/// CPU seconds of the whole process so far.
fn process_cpu() -> f64 {
    // SAFETY: getrusage writes the rusage it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut u);
        u
    };
    let tv = |t: libc::timeval| {
        Duration::new(t.tv_sec.try_into().unwrap(), 0)
            + Duration::from_micros(t.tv_usec.try_into().unwrap())
    };
    (tv(u.ru_utime) + tv(u.ru_stime)).as_secs_f64()
}

fn cpu_of(cpu: &HashMap<String, f64>, prefix: &str) -> f64 {
    cpu.iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, s)| s)
        .sum()
}

fn initiator(settings: &Settings, local: SocketAddrV4, identity: String) -> Initiator {
    let config = InitiatorConfig {
        local,
        remote: SocketAddrV4::new(HUB, 500),
        identity: Identity::Fqdn(identity),
        remote_identity: None,
        psk_local: b"k".to_vec(),
        psk_remote: b"k".to_vec(),
        ike: vec![settings.proposal.clone()],
        esp: vec![EspProposal::parse("aes256gcm16").unwrap()],
        request_address: true,
        mode: Mode::Tunnel,
        fragment_len: None,
        force_encapsulation: false,
        route_set: vec![],
        tunnel_id: 1,
        profile: "Flex".into(),
        virtual_template: None,
        rekey: Rekey::default(),
        ts_remote: vec![TrafficSelector::ipv4(
            0,
            0..=65535,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
        )],
    };
    Initiator::new(config, Box::new(SystemRng))
}

fn client_socket(id: usize) -> (UdpSocket, SocketAddrV4) {
    let local = SocketAddrV4::new(
        Ipv4Addr::new(127, 77, 8, u8::try_from(10 + id).unwrap()),
        500,
    );
    let socket = UdpSocket::bind(local).expect("binding UDP 500 (root?)");
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    (socket, local)
}

fn spi_of(datagram: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(datagram.get(..8)?.try_into().ok()?))
}

/// Dials until `until`, `window` at a time; counts the established.
fn full_client(id: usize, settings: &Settings, until: Instant, done: &AtomicU64) {
    struct Dial {
        initiator: Initiator,
        last: Vec<u8>,
        sent: Instant,
    }
    let (socket, local) = client_socket(id);
    let hub = SocketAddrV4::new(HUB, 500);
    let mut dials: HashMap<u64, Dial> = HashMap::new();
    let mut n = 0;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < until {
        while dials.len() < settings.window {
            n += 1;
            let mut initiator = initiator(settings, local, format!("spoke{id}-{n}.bench"));
            let request = initiator.start().unwrap();
            socket.send_to(&request, hub).unwrap();
            let dial = Dial {
                initiator,
                last: request,
                sent: Instant::now(),
            };
            dials.insert(dial.initiator.spi_i(), dial);
        }
        let Ok(len) = socket.recv(&mut buf) else {
            let now = Instant::now();
            for dial in dials.values_mut().filter(|d| now - d.sent > RESEND) {
                socket.send_to(&dial.last, hub).unwrap();
                dial.sent = now;
            }
            continue;
        };
        let Some(spi) = spi_of(&buf[..len]) else {
            continue;
        };
        let Some(dial) = dials.get_mut(&spi) else {
            continue;
        };
        match dial.initiator.handle(&buf[..len]) {
            Ok(Step::Send(next)) => {
                socket.send_to(&next, hub).unwrap();
                (dial.last, dial.sent) = (next, Instant::now());
            }
            Ok(Step::Established(_)) => {
                done.fetch_add(1, Ordering::Relaxed);
                dials.remove(&spi);
            }
            Ok(Step::SendAll(_)) => unreachable!("no fragmentation configured"),
            Err(e) => panic!("dial refused: {e}"),
        }
    }
}

/// Sends one IKE_SA_INIT request with a new SPI each time until `until`,
/// `window` unanswered at a time; counts the answers.
fn init_client(id: usize, settings: &Settings, until: Instant, done: &AtomicU64) {
    let (socket, local) = client_socket(id);
    let hub = SocketAddrV4::new(HUB, 500);
    let mut template = initiator(settings, local, format!("spoke{id}.bench"))
        .start()
        .unwrap();
    let mut waiting: HashMap<u64, Instant> = HashMap::new();
    let mut next_spi = (id as u64) << 48;
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < until {
        let now = Instant::now();
        waiting.retain(|_, sent| now - *sent < RESEND);
        while waiting.len() < settings.window {
            next_spi += 1;
            template[..8].copy_from_slice(&next_spi.to_be_bytes());
            socket.send_to(&template, hub).unwrap();
            waiting.insert(next_spi, Instant::now());
        }
        if let Ok(len) = socket.recv(&mut buf)
            && let Some(spi) = spi_of(&buf[..len])
            && waiting.remove(&spi).is_some()
        {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run_once(load: Load, cores: usize, workers: usize, settings: &Settings) -> Figures {
    pin(cores);
    let config = config::parse(HUB_CONFIG, "ike_task.toml").unwrap();
    let state = tempfile::tempdir_in("/dev/shm").unwrap();
    let shared = Arc::new(IkeShared::<NoSessions> {
        engine: Mutex::new(Engine::new(
            Policy::from_config(&config).unwrap(),
            Box::new(SystemRng),
        )),
        pools: Mutex::new(Pools::open(state.path(), &config.pool).unwrap()),
        xdp: Arc::default(),
        sessions: None,
        initiators: Mutex::default(),
        watchers: Mutex::default(),
    });
    // The task on a thread of its own, as in the daemon's runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hub-ike")
        .enable_all()
        .build()
        .unwrap();
    let sockets = runtime
        .block_on(IkeSockets::bind(HUB))
        .expect("binding UDP 500 and 4500 (root?)");
    let hub = runtime.spawn(task::run(shared, Arc::new(sockets), workers));
    let done = AtomicU64::new(0);
    let clients_cpu = Mutex::new(0.0);
    let start = Instant::now();
    let cpu_before = process_cpu();
    let until = start + settings.seconds;
    thread::scope(|s| {
        for id in 0..CLIENT_THREADS {
            let (done, clients_cpu) = (&done, &clients_cpu);
            thread::Builder::new()
                .name(format!("client{id}"))
                .spawn_scoped(s, move || {
                    match load {
                        Load::Full => full_client(id, settings, until, done),
                        Load::Init => init_client(id, settings, until, done),
                    }
                    *clients_cpu.lock().unwrap() += own_cpu();
                })
                .unwrap();
        }
    });
    let elapsed = start.elapsed();
    let cpu = thread_cpu();
    let cores_used = (process_cpu() - cpu_before) / elapsed.as_secs_f64();
    hub.abort();
    runtime.shutdown_timeout(Duration::from_secs(5));
    pin(thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let n = f64::from(u32::try_from(done.load(Ordering::Relaxed).max(1)).unwrap());
    Figures {
        per_sec: n / elapsed.as_secs_f64(),
        cores_used,
        task_us: cpu_of(&cpu, "hub-ike") / n * 1e6,
        workers_us: cpu_of(&cpu, "ike-crypto") / n * 1e6,
        clients_us: *clients_cpu.lock().unwrap() / n * 1e6,
    }
}

fn main() {
    let loads: Vec<Load> = env_list("IKE_TASK_MODE", "full,init")
        .iter()
        .map(|m| match m.as_str() {
            "full" => Load::Full,
            "init" => Load::Init,
            _ => panic!("IKE_TASK_MODE: {m}? (full, init)"),
        })
        .collect();
    let all = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cores: Vec<usize> = env_list("IKE_TASK_CORES", "1,2")
        .iter()
        .map(|c| c.parse().unwrap())
        .filter(|&c| c >= 1 && c <= all)
        .collect();
    let settings = Settings {
        seconds: Duration::from_secs_f64(env("IKE_TASK_SECONDS", "2").parse().unwrap()),
        window: env("IKE_TASK_WINDOW", "32").parse().unwrap(),
        proposal: IkeProposal::parse(&env("IKE_TASK_PROPOSAL", "aes256gcm16-prfsha256-ecp256"))
            .unwrap(),
    };
    let runs: usize = env("IKE_TASK_RUNS", "3").parse().unwrap();
    println!(
        "ike_task: the IKE task on 127.77.8.1, {CLIENT_THREADS} client threads with {} requests \
         in flight each, {:?}, {} s a run",
        settings.window,
        settings.proposal,
        settings.seconds.as_secs_f64()
    );
    let configs: Vec<(Load, usize, usize)> = loads
        .iter()
        .flat_map(|&load| {
            cores
                .iter()
                .flat_map(move |&c| [(load, c, 0), (load, c, c)])
        })
        .collect();
    // Runs interleaved, so that the machine's other work spreads over the
    // configurations alike.
    let mut figures: Vec<Vec<Figures>> = configs.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs.max(1) {
        for (i, &(load, c, workers)) in configs.iter().enumerate() {
            figures[i].push(run_once(load, c, workers, &settings));
        }
    }
    println!(
        "\nper row, the median run's CPU: the cores the process had (its CPU time over the \
         wall time), and per handshake the hub's task thread + its workers, and the clients"
    );
    println!(
        "{:<5} {:>5} {:>7} {:>9} {:>9} {:>9} {:>21} {:>10}",
        "load",
        "cores",
        "workers",
        "median/s",
        "best/s",
        "cores had",
        "hub us: task+workers",
        "clients us"
    );
    for ((load, cores, workers), mut figures) in configs.into_iter().zip(figures) {
        figures.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
        let median = &figures[figures.len() / 2];
        println!(
            "{:<5} {:>5} {:>7} {:>9.0} {:>9.0} {:>9.2} {:>12.1} + {:>6.1} {:>10.1}",
            if load == Load::Full { "full" } else { "init" },
            cores,
            workers,
            median.per_sec,
            figures.last().unwrap().per_sec,
            median.cores_used,
            median.task_us,
            median.workers_us,
            median.clients_us,
        );
    }
}

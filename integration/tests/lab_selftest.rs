//! Self-test of the netns lab. Needs root; without it each test prints
//! "skipped: needs root (netns)" and returns.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use integration::{Lab, Netns, packets, skip_unless_root, wait_until};

const SHORT: Duration = Duration::from_secs(5);

/// A `sleep` argument unique to this test process (so parallel runs of this
/// suite cannot mistake each other's processes): "1001.<pid>".
fn secs(n: u32) -> String {
    format!("{n}.{}", std::process::id())
}

fn listed_namespaces() -> HashSet<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Whether `pid` is a live (non-zombie) process whose command line has `marker`.
fn process_alive_with(pid: u32, marker: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !matches!(state, Some('Z' | 'X')) && String::from_utf8_lossy(&cmdline).contains(marker)
}

fn have_ping() -> bool {
    Command::new("ping")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Two namespaces joined by a veth pair, 172.25.<subnet>.1 and .2.
fn pair(lab: &Lab, subnet: u8) -> (Netns, Netns) {
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    let (la, lb) = lab.veth(&a, &b).unwrap();
    la.add_addr(&format!("172.25.{subnet}.1/24")).unwrap();
    lb.add_addr(&format!("172.25.{subnet}.2/24")).unwrap();
    (a, b)
}

#[test]
fn veth_pair_pings() {
    skip_unless_root!();
    let lab = Lab::new("ping").unwrap();
    let (a, b) = pair(&lab, 1);

    let names = lab.veth_names();
    assert_eq!(names.len(), 2);
    assert!(names.iter().all(|n| n.len() < 16), "{names:?}");

    if have_ping() {
        let out = a.exec(["ping", "-c1", "-W2", "172.25.1.2"]).unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 received"));
        b.exec(["ping", "-c1", "-W2", "172.25.1.1"]).unwrap();
    } else {
        eprintln!("skipped the ping part: ping is not installed (apt-get install iputils-ping)");
    }

    // A failing command names itself, its status and its stderr.
    let err = a.exec(["sh", "-c", "echo broken >&2; exit 4"]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("ip netns exec {}", a.name())),
        "{msg}"
    );
    assert!(
        msg.contains("exit status: 4") && msg.contains("broken"),
        "{msg}"
    );

    // Links: index, MAC, MTU; sysctls are per namespace.
    let (l1, _l2) = lab.veth(&a, &b).unwrap();
    assert!(l1.ifindex().unwrap() > 1);
    assert_ne!(l1.mac().unwrap(), [0; 6]);
    l1.set_mtu(1400).unwrap();
    let shown = a.ip(["link", "show", "dev", l1.name()]).unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("mtu 1400"));
    a.sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(a.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(b.sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
}

#[test]
fn run_in_udp_crosses_the_veth() {
    skip_unless_root!();
    let lab = Lab::new("udp").unwrap();
    let (a, b) = pair(&lab, 2);

    let dst = SocketAddrV4::new(Ipv4Addr::new(172, 25, 2, 2), packets::NATT_PORT);
    let src = SocketAddrV4::new(Ipv4Addr::new(172, 25, 2, 1), 40_000);
    // Bound inside b via run_in; received here on the test's own thread.
    let rx = b
        .run_in(|| std::net::UdpSocket::bind(dst))
        .unwrap()
        .unwrap();

    let ike = packets::non_esp_marker(&packets::ike_sa_init_like(0x1122_3344_5566_7788));
    packets::send_udp(&a, src, dst, &ike).unwrap();
    let (got, from) = packets::recv_udp(&rx, SHORT).unwrap();
    assert_eq!(got, ike);
    assert_eq!(from, src.into());

    packets::send_udp(&a, src, dst, &packets::natt_keepalive()).unwrap();
    assert_eq!(packets::recv_udp(&rx, SHORT).unwrap().0, [0xff]);

    // The socket really lives in b: nothing listens there in the host or in a.
    let in_a = packets::bind_udp(
        &a,
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, packets::NATT_PORT),
    )
    .unwrap();
    assert!(packets::recv_udp(&in_a, Duration::from_millis(200)).is_err());

    // ESP over a raw socket, received by a raw socket in b (IP header included).
    let esp_rx = packets::RawIpSocket::open_in(&b, packets::IPPROTO_ESP).unwrap();
    let esp = packets::esp(0xc0ff_ee01, 1, 64);
    packets::send_raw_ip(&a, *dst.ip(), packets::IPPROTO_ESP, &esp).unwrap();
    let deadline = Instant::now() + SHORT;
    let packet = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = esp_rx
            .recv_timeout(left)
            .unwrap()
            .expect("no ESP packet arrived in b");
        if packets::ipv4_payload(&p) == Some(&esp[..]) {
            break p;
        }
    };
    assert_eq!(packet[9], packets::IPPROTO_ESP);
    assert_eq!(&packet[12..16], &[172, 25, 2, 1]);

    // A panic inside run_in reaches the caller.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        a.run_in(|| panic!("inside the namespace")).unwrap();
    }));
    assert!(caught.is_err());
}

#[test]
fn drop_kills_processes_and_removes_namespaces() {
    skip_unless_root!();
    let lab = Lab::new("drop").unwrap();
    let (a, b) = pair(&lab, 3);
    let sleeper = a.spawn(Command::new("sleep").arg(secs(1001))).unwrap();
    let pid = sleeper.pid();
    // A process the lab does not track (a daemon that left its group).
    let daemon = b
        .spawn(Command::new("sh").args([
            "-c",
            &format!("setsid sleep {} & echo started; wait", secs(1002)),
        ]))
        .unwrap();
    daemon.wait_for_output("started", SHORT).unwrap();
    let echo = a
        .spawn(Command::new("sh").args(["-c", "echo out-text; echo err-text >&2"]))
        .unwrap();
    echo.wait_timeout(SHORT).unwrap();
    assert_eq!(echo.stdout_text(), "out-text\n");
    assert_eq!(echo.stderr_text(), "err-text\n");
    assert!(echo.stdout_path().starts_with(lab.temp_dir()));
    assert!(process_alive_with(pid, &secs(1001)));

    let names = lab.netns_names();
    let temp = lab.temp_dir().to_path_buf();
    assert!(listed_namespaces().is_superset(&names.iter().cloned().collect()));

    // The lab goes first while the Procs are still held: the lab stops them.
    // A functional bound (dropping does not hang), not a speed claim: the
    // time is printed.
    let start = Instant::now();
    drop(lab);
    let took = start.elapsed();
    eprintln!("the lab dropped in {:.2}s", took.as_secs_f64());
    assert!(
        took < Duration::from_mins(1),
        "dropping the lab took {took:?}"
    );
    assert!(
        !process_alive_with(pid, &secs(1001)),
        "sleep survived the lab"
    );
    assert!(!sleeper.is_running());
    let listed = listed_namespaces();
    for n in &names {
        assert!(!listed.contains(n), "{n} still listed");
        assert!(!Path::new("/run/netns").join(n).exists());
    }
    assert!(!temp.exists());
    assert!(
        wait_until(SHORT, Duration::from_millis(20), || !any_process_with(
            &secs(1002)
        )),
        "the setsid'd sleep survived the lab"
    );
    drop((sleeper, daemon, echo));
}

fn any_process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| process_alive_with(pid, &format!("sleep\0{marker}")))
}

#[test]
fn proc_drop_stops_the_process_group() {
    skip_unless_root!();
    let lab = Lab::new("proc").unwrap();
    let a = lab.netns("a").unwrap();
    // A shell that ignores SIGTERM: needs the SIGKILL after the grace period.
    let stubborn = a
        .spawn(Command::new("sh").args([
            "-c",
            &format!("trap '' TERM; sleep {} & echo ready; wait", secs(1003)),
        ]))
        .unwrap();
    stubborn.wait_for_output("ready", SHORT).unwrap();
    let pid = stubborn.pid();
    let start = Instant::now();
    drop(stubborn);
    let took = start.elapsed();
    eprintln!(
        "a process that ignores SIGTERM stopped in {:.2}s",
        took.as_secs_f64()
    );
    // At least most of the grace period (3 s) before the SIGKILL: the
    // process was given its chance. The upper bound is functional (the drop
    // ends), wide for a loaded machine.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert!(!process_alive_with(pid, "trap"));
    assert!(wait_until(SHORT, Duration::from_millis(20), || {
        !any_process_with(&secs(1003))
    }));

    // signal / wait_timeout
    let p = a.spawn(Command::new("sleep").arg(secs(1004))).unwrap();
    assert!(p.wait_timeout(Duration::from_millis(100)).is_err());
    p.signal(libc::SIGTERM).unwrap();
    let status = p.wait_timeout(SHORT).unwrap();
    assert!(!status.success());
    assert!(
        p.signal(libc::SIGTERM).is_err(),
        "signalling a reaped process must fail"
    );
}

#[test]
fn lab_dropped_during_a_panic_cleans_up() {
    skip_unless_root!();
    let seen: Mutex<Option<(Vec<String>, u32)>> = Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new("panic").unwrap();
        let (a, _b) = pair(&lab, 4);
        let p = a.spawn(Command::new("sleep").arg(secs(1005))).unwrap();
        *seen.lock().unwrap() = Some((lab.netns_names(), p.pid()));
        panic!("deliberate panic with a live lab");
    }));
    assert!(result.is_err());
    let (names, pid) = seen.into_inner().unwrap().unwrap();
    assert!(!process_alive_with(pid, &secs(1005)));
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|n| !listed.contains(n)),
        "{names:?} in {listed:?}"
    );
}

#[test]
fn concurrent_labs_get_distinct_names() {
    skip_unless_root!();
    let run = |i: u8| {
        move || {
            let lab = Lab::new("conc").unwrap();
            let (a, b) = pair(&lab, 10 + i);
            a.exec(["true"]).unwrap();
            b.exec(["true"]).unwrap();
            let mut names = lab.netns_names();
            names.extend(lab.veth_names());
            names
        }
    };
    let t1 = std::thread::spawn(run(1));
    let t2 = std::thread::spawn(run(2));
    let n1 = t1.join().unwrap();
    let n2 = t2.join().unwrap();
    assert_eq!(n1.len(), 4);
    let s1: HashSet<_> = n1.iter().collect();
    let s2: HashSet<_> = n2.iter().collect();
    assert!(s1.is_disjoint(&s2), "{n1:?} vs {n2:?}");
    let listed = listed_namespaces();
    assert!(n1.iter().chain(&n2).all(|n| !listed.contains(n)));
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    skip_unless_root!();
    // A pid that surely has exited: our own finished child.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let dead = child.id();
    let stale = format!("gw-stale-{dead}-0-0-hub");
    let foreign = format!("gwstale-{dead}-0-0-hub");
    for n in [&stale, &foreign] {
        let ok = Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    // Something left running inside it, as after a SIGKILLed test. A
    // parallel test's Lab::new may remove the namespace between `ip netns
    // exec` opening it and entering it: the `sleep` then runs in a detached
    // namespace no cleanup can find. Only a `sleep` confirmed inside the
    // namespace (same inode) makes the scenario; otherwise set it up again.
    let mut orphan = None;
    for _ in 0..5 {
        if !Path::new("/run/netns").join(&stale).exists() {
            let ok = Command::new("ip")
                .args(["netns", "add", &stale])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let netns_inode = std::fs::metadata(Path::new("/run/netns").join(&stale)).map(|m| m.ino());
        let mut child = Command::new("ip")
            .args(["netns", "exec", &stale, "sleep", &secs(1006)])
            .spawn()
            .unwrap();
        let pid = child.id();
        let inside = wait_until(SHORT, Duration::from_millis(20), || {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            matches!((&ns, &netns_inode), (Some(ns), Ok(ino)) if ns.to_string_lossy() == format!("net:[{ino}]"))
                && cmdline.starts_with(b"sleep")
        });
        if inside {
            orphan = Some(child);
            break;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut orphan = orphan.expect("could not start a process inside the stale namespace");

    let stale_dir = std::env::temp_dir().join(format!("gw-lab-stale-{dead}-Xy12ab"));
    std::fs::create_dir_all(stale_dir.join("sub")).unwrap();

    let _lab = Lab::new("stale").unwrap();
    assert!(!stale_dir.exists(), "stale temp dir not removed");
    let listed = listed_namespaces();
    assert!(!listed.contains(&stale), "{stale} not removed");
    assert!(
        listed.contains(&foreign),
        "a name that is not ours was removed"
    );
    let deadline = Instant::now() + SHORT;
    while orphan.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = orphan.try_wait().unwrap();
    let _ = orphan.kill();
    let _ = orphan.wait();
    let _ = Command::new("ip").args(["netns", "del", &foreign]).status();
    assert!(
        status.is_some(),
        "the process in the stale namespace was not killed"
    );
}

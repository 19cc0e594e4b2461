#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::leases::PoolLeases;
use gateway_report::pool::{LeaseReport, PoolReport};

use super::show::render_pools;
use super::{JOURNAL_FILE, LEASE_FILE, LeaseState, PoolError, Pools};
use crate::config;

const T0: u64 = 1_767_225_600; // 2026-01-01 00:00:00 UTC

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pools(list: &[(&str, &str, &str)]) -> BTreeMap<String, config::Pool> {
    list.iter()
        .map(|(name, first, last)| {
            (
                (*name).to_owned(),
                config::Pool {
                    first: ip(first),
                    last: ip(last),
                },
            )
        })
        .collect()
}

fn flex() -> BTreeMap<String, config::Pool> {
    pools(&[("FlexSpokes", "10.1.1.100", "10.1.1.254")])
}

fn tiny() -> BTreeMap<String, config::Pool> {
    pools(&[("P", "10.0.0.1", "10.0.0.3")])
}

fn report_of(pools: &Pools, name: &str) -> PoolReport {
    pools
        .report()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name}"))
}

fn lease(report: &PoolReport, address: &str) -> LeaseReport {
    report
        .leases
        .iter()
        .find(|l| l.address == ip(address))
        .cloned()
        .unwrap_or_else(|| panic!("no lease of {address}"))
}

/// Runs `f` with tracing output captured; returns the log text.
fn logs(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn same_identity_gets_the_same_address_active_and_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    let a = p.acquire("FlexSpokes", "fqdn:spoke1", T0).unwrap();
    assert_eq!(a, ip("10.1.1.100"));

    // Asks again while active (a reconnect before the old session died).
    assert_eq!(p.acquire("FlexSpokes", "fqdn:spoke1", T0 + 1).unwrap(), a);
    let l = lease(&report_of(&p, "FlexSpokes"), "10.1.1.100");
    assert_eq!((l.state.as_str(), l.since), ("active", T0));

    // The old session goes: the new one still holds the address.
    p.release("FlexSpokes", a, T0 + 2).unwrap();
    assert_eq!(
        lease(&report_of(&p, "FlexSpokes"), "10.1.1.100").state,
        "active"
    );
    // The new session goes: idle, still bound.
    p.release("FlexSpokes", a, T0 + 3).unwrap();
    let l = lease(&report_of(&p, "FlexSpokes"), "10.1.1.100");
    assert_eq!(
        (l.state.as_str(), l.since, l.identity.as_str()),
        ("idle", T0 + 3, "fqdn:spoke1")
    );

    // Another spoke comes and goes; spoke1 comes back to its idle lease.
    assert_eq!(
        p.acquire("FlexSpokes", "fqdn:spoke2", T0 + 4).unwrap(),
        ip("10.1.1.101")
    );
    assert_eq!(p.acquire("FlexSpokes", "fqdn:spoke1", T0 + 5).unwrap(), a);
    let l = lease(&report_of(&p, "FlexSpokes"), "10.1.1.100");
    assert_eq!((l.state.as_str(), l.since), ("active", T0 + 5));
}

#[test]
fn different_identities_get_different_addresses_lowest_never_leased_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    let got: Vec<Ipv4Addr> = (0..5)
        .map(|i| {
            p.acquire("FlexSpokes", &format!("fqdn:spoke{i}"), T0)
                .unwrap()
        })
        .collect();
    assert_eq!(
        got,
        [
            "10.1.1.100",
            "10.1.1.101",
            "10.1.1.102",
            "10.1.1.103",
            "10.1.1.104"
        ]
        .map(ip)
    );
    // An idle lease stays with its identity: a new spoke gets the lowest
    // address never leased, not the idle one.
    p.release("FlexSpokes", ip("10.1.1.100"), T0 + 1).unwrap();
    p.release("FlexSpokes", ip("10.1.1.102"), T0 + 1).unwrap();
    assert_eq!(
        p.acquire("FlexSpokes", "fqdn:new", T0 + 2).unwrap(),
        ip("10.1.1.105")
    );

    let r = report_of(&p, "FlexSpokes");
    assert_eq!((r.size, r.in_use, r.idle, r.free), (155, 4, 2, 149));
}

#[test]
fn exhausted_when_every_address_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    for i in 0..3 {
        p.acquire("P", &format!("s{i}"), T0).unwrap();
    }
    let e = p.acquire("P", "s3", T0).unwrap_err();
    assert!(
        matches!(&e, PoolError::Exhausted { pool } if pool == "P"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "pool \"P\" is exhausted: every address is in use"
    );
    // Spokes already holding an address still get it.
    assert_eq!(p.acquire("P", "s1", T0).unwrap(), ip("10.0.0.2"));
}

#[test]
fn reclaims_the_idle_lease_released_longest_ago() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    for i in 0..3 {
        p.acquire("P", &format!("s{i}"), T0).unwrap();
    }
    // Released in the order .3, .1 (.2 stays active).
    p.release("P", ip("10.0.0.3"), T0 + 10).unwrap();
    p.release("P", ip("10.0.0.1"), T0 + 20).unwrap();

    let log = logs(|| {
        assert_eq!(p.acquire("P", "new1", T0 + 30).unwrap(), ip("10.0.0.3"));
    });
    for word in ["P", "s2", "10.0.0.3", "new1", "reclaimed"] {
        assert!(log.contains(word), "{word} not in {log}");
    }
    // s2 lost its binding; coming back it takes the next oldest idle lease.
    assert_eq!(p.acquire("P", "s2", T0 + 40).unwrap(), ip("10.0.0.1"));
    let e = p.acquire("P", "s0", T0 + 50).unwrap_err();
    assert!(matches!(e, PoolError::Exhausted { .. }));
    let r = report_of(&p, "P");
    let owners: Vec<&str> = r.leases.iter().map(|l| l.identity.as_str()).collect();
    assert_eq!(owners, ["s2", "s1", "new1"]);
}

#[test]
fn unknown_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    let e = p.acquire("Nope", "s1", T0).unwrap_err();
    assert!(matches!(&e, PoolError::UnknownPool { pool } if pool == "Nope"));
    assert!(matches!(
        p.release("Nope", ip("10.0.0.1"), T0),
        Err(PoolError::UnknownPool { .. })
    ));
    // Releasing an address nobody holds is harmless.
    p.release("P", ip("10.0.0.2"), T0).unwrap();
}

#[test]
fn a_hub_restart_hands_out_the_same_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    for i in 0..4 {
        p.acquire("FlexSpokes", &format!("fqdn:spoke{i}"), T0 + i)
            .unwrap();
    }
    p.release("FlexSpokes", ip("10.1.1.101"), T0 + 100).unwrap();
    let before = report_of(&p, "FlexSpokes");
    drop(p);

    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    let after = report_of(&p, "FlexSpokes");
    // Same bindings; no session survived, so every lease is idle, the ones
    // that were active as of the last change.
    let bindings = |r: &PoolReport| {
        r.leases
            .iter()
            .map(|l| (l.address, l.identity.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bindings(&after), bindings(&before));
    assert!(after.leases.iter().all(|l| l.state == "idle"));
    assert_eq!(lease(&after, "10.1.1.101").since, T0 + 100);
    assert_eq!(lease(&after, "10.1.1.100").since, T0 + 100);
    assert_eq!((after.in_use, after.idle, after.free), (0, 4, 151));

    // Spokes come back in another order and get their own addresses; a new
    // one gets the lowest never leased.
    for i in (0..4).rev() {
        let a = p
            .acquire("FlexSpokes", &format!("fqdn:spoke{i}"), T0 + 200)
            .unwrap();
        assert_eq!(
            a,
            Ipv4Addr::from(u32::from(ip("10.1.1.100")) + u32::try_from(i).unwrap())
        );
    }
    assert_eq!(
        p.acquire("FlexSpokes", "fqdn:new", T0 + 200).unwrap(),
        ip("10.1.1.104")
    );
}

#[test]
fn released_lease_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    p.release("P", ip("10.0.0.1"), T0 + 7).unwrap();
    drop(p);
    let text = std::fs::read_to_string(dir.path().join(LEASE_FILE)).unwrap();
    assert!(
        text.contains(
            r#"{"address":"10.0.0.1","identity":"s1","state":"idle","since":1767225607}"#
        ),
        "{text}"
    );
    let p = Pools::open(dir.path(), &tiny()).unwrap();
    let l = lease(&report_of(&p, "P"), "10.0.0.1");
    assert_eq!((l.state.as_str(), l.since), ("idle", T0 + 7));
}

#[test]
fn lease_file_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(
        dir.path(),
        &pools(&[
            ("A", "10.0.0.1", "10.0.0.9"),
            ("B \"quoted\"", "10.0.1.1", "10.0.1.9"),
        ]),
    )
    .unwrap();
    p.acquire("A", "fqdn:a1", T0).unwrap();
    p.acquire("A", "fqdn:a2", T0 + 1).unwrap();
    p.release("A", ip("10.0.0.1"), T0 + 2).unwrap();
    let path = p.path().to_owned();
    drop(p);
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text,
        concat!(
            "{\n",
            "  \"version\": 2,\n",
            "  \"saved_at\": 1767225602,\n",
            "  \"journal_seq\": 3,\n",
            "  \"pools\": {\n",
            "    \"A\": [\n",
            "      {\"address\":\"10.0.0.1\",\"identity\":\"fqdn:a1\",\"state\":\"idle\",\"since\":1767225602},\n",
            "      {\"address\":\"10.0.0.2\",\"identity\":\"fqdn:a2\",\"state\":\"active\",\"since\":1767225601}\n",
            "    ],\n",
            "    \"B \\\"quoted\\\"\": []\n",
            "  }\n",
            "}\n",
        )
    );
    serde_json::from_str::<serde_json::Value>(&text).unwrap();
}

#[test]
fn identities_with_any_characters_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let odd = [
        "der-asn1-dn:CN=\"spoke\", O=Example\\Branch",
        "fqdn:h\u{e9}l\u{e8}ne\n\t\u{1}\u{7f}",
    ];
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    for identity in odd {
        p.acquire("P", identity, T0).unwrap();
    }
    drop(p);
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    let r = report_of(&p, "P");
    assert_eq!(
        r.leases
            .iter()
            .map(|l| l.identity.as_str())
            .collect::<Vec<_>>(),
        odd
    );
    assert_eq!(p.acquire("P", odd[1], T0).unwrap(), ip("10.0.0.2"));
}

#[test]
fn lease_outside_a_shrunk_range_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    for i in 0..3 {
        p.acquire("FlexSpokes", &format!("fqdn:spoke{i}"), T0)
            .unwrap();
    }
    drop(p);

    // 10.1.1.100 and .101 fall outside the new range.
    let shrunk = pools(&[("FlexSpokes", "10.1.1.102", "10.1.1.254")]);
    let mut reopened = None;
    let log = logs(|| reopened = Some(Pools::open(dir.path(), &shrunk).unwrap()));
    let mut p = reopened.unwrap();
    for word in [
        "FlexSpokes",
        "fqdn:spoke0",
        "10.1.1.100",
        "fqdn:spoke1",
        "10.1.1.101",
        "outside",
    ] {
        assert!(log.contains(word), "{word} not in {log}");
    }
    assert!(!log.contains("fqdn:spoke2"), "{log}");
    let r = report_of(&p, "FlexSpokes");
    assert_eq!(r.leases.len(), 1);
    assert_eq!(lease(&r, "10.1.1.102").identity, "fqdn:spoke2");
    // The dropped spokes get new addresses; spoke2 keeps its own.
    assert_eq!(
        p.acquire("FlexSpokes", "fqdn:spoke0", T0).unwrap(),
        ip("10.1.1.103")
    );
    assert_eq!(
        p.acquire("FlexSpokes", "fqdn:spoke2", T0).unwrap(),
        ip("10.1.1.102")
    );
}

#[test]
fn lowered_first_address_fills_the_gap_from_the_bottom() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &pools(&[("P", "10.0.0.10", "10.0.0.20")])).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    drop(p);
    let mut p = Pools::open(dir.path(), &pools(&[("P", "10.0.0.5", "10.0.0.20")])).unwrap();
    let r = report_of(&p, "P");
    assert_eq!((r.size, r.idle, r.free), (16, 1, 15));
    assert_eq!(p.acquire("P", "s2", T0).unwrap(), ip("10.0.0.5"));
    assert_eq!(p.acquire("P", "s1", T0).unwrap(), ip("10.0.0.10"));
}

#[test]
fn removed_pool_leases_are_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let two = pools(&[("A", "10.0.0.1", "10.0.0.9"), ("B", "10.0.1.1", "10.0.1.9")]);
    let mut p = Pools::open(dir.path(), &two).unwrap();
    p.acquire("A", "sa", T0).unwrap();
    p.acquire("B", "sb", T0).unwrap();
    drop(p);

    let only_a = pools(&[("A", "10.0.0.1", "10.0.0.9")]);
    let mut reopened = None;
    let log = logs(|| reopened = Some(Pools::open(dir.path(), &only_a).unwrap()));
    let mut p = reopened.unwrap();
    for word in ["B", "sb", "10.0.1.1", "no longer configured"] {
        assert!(log.contains(word), "{word} not in {log}");
    }
    assert_eq!(p.report().len(), 1);
    assert_eq!(lease(&report_of(&p, "A"), "10.0.0.1").identity, "sa");
    // The lease file no longer has B once the journal is folded in (a
    // clean stop).
    p.acquire("A", "sa", T0 + 1).unwrap();
    let path = p.path().to_owned();
    drop(p);
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains("sb"), "{text}");
}

#[test]
fn corrupt_lease_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LEASE_FILE);
    for (content, why) in [
        ("{\"version\": 1, \"pools\": {\"P\": [", "EOF"),
        ("", "EOF"),
        ("garbage", "expected value"),
        ("{\"pools\": {}}", "missing field `version`"),
        (
            r#"{"version": 1, "pools": {"P": [{"address": "10.0.0.1", "identity": "s1", "state": "gone", "since": 0}]}}"#,
            "unknown variant `gone`",
        ),
        (
            r#"{"version": 1, "pools": {"P": [{"address": "10.0.0.1", "identity": "s1", "state": "idle", "since": 0},
                                               {"address": "10.0.0.1", "identity": "s2", "state": "idle", "since": 0}]}}"#,
            "10.0.0.1 is leased to both \"s1\" and \"s2\"",
        ),
        (
            r#"{"version": 1, "pools": {"P": [{"address": "10.0.0.1", "identity": "s1", "state": "idle", "since": 0},
                                               {"address": "10.0.0.2", "identity": "s1", "state": "idle", "since": 0}]}}"#,
            "\"s1\" holds both 10.0.0.1 and 10.0.0.2",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let e = Pools::open(dir.path(), &tiny()).unwrap_err();
        assert!(matches!(e, PoolError::Corrupt { .. }), "{content}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: the lease file is corrupt", path.display())),
            "{msg}"
        );
        assert!(msg.contains(why), "{why} not in {msg}");
        assert!(msg.contains("Move it aside"), "{msg}");
        assert!(
            msg.contains(&format!("mv {0} {0}.bad", path.display())),
            "{msg}"
        );
        // Never rewritten.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
}

#[test]
fn unknown_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LEASE_FILE);
    std::fs::write(&path, r#"{"version": 3, "leases": "something new"}"#).unwrap();
    let e = Pools::open(dir.path(), &tiny()).unwrap_err();
    assert!(matches!(e, PoolError::Version { found: 3, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("version 3 is not supported (this gateway reads versions 1 to 2)"),
        "{msg}"
    );
}

#[test]
fn atomic_write_leaves_no_temporary_files() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state/gateway");
    let mut p = Pools::open(&dir, &tiny()).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        dir_names(&dir),
        Vec::<String>::new(),
        "opening writes nothing"
    );

    for i in 0..3 {
        p.acquire("P", &format!("s{i}"), T0).unwrap();
        p.release("P", ip("10.0.0.1"), T0 + 1).unwrap();
    }
    // Changes go to the journal; a clean stop folds it into the lease file.
    assert_eq!(dir_names(&dir), [JOURNAL_FILE]);
    assert_eq!(mode(&dir.join(JOURNAL_FILE)), 0o600);
    drop(p);
    assert_eq!(dir_names(&dir), [LEASE_FILE]);
    assert_eq!(mode(&dir.join(LEASE_FILE)), 0o600);

    // A temporary file left by a crash is cleaned up on open.
    std::fs::write(dir.join(format!(".{LEASE_FILE}.tmp")), "half written").unwrap();
    let _p = Pools::open(&dir, &tiny()).unwrap();
    assert_eq!(dir_names(&dir), [LEASE_FILE]);
}

#[test]
fn a_change_that_cannot_be_recorded_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &tiny()).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    p.release("P", ip("10.0.0.1"), T0 + 1).unwrap();
    p.acquire("P", "s2", T0 + 2).unwrap();
    p.acquire("P", "s3", T0 + 2).unwrap();
    p.release("P", ip("10.0.0.2"), T0 + 3).unwrap();
    let before = p.report();

    // A non-empty directory where the journal goes: appending fails (even
    // for root, unlike permissions).
    let path = dir.path().join(JOURNAL_FILE);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("x"), "").unwrap();

    // Fresh, returning and reclaimed grants are all undone.
    for identity in ["s1", "s4"] {
        let e = p.acquire("P", identity, T0 + 4).unwrap_err();
        assert!(matches!(e, PoolError::Persist { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        assert_eq!(p.report(), before);
    }
    // A release that cannot be recorded still takes effect in memory (the
    // session is gone either way) and reports the error.
    let e = p.release("P", ip("10.0.0.3"), T0 + 4).unwrap_err();
    assert!(matches!(e, PoolError::Persist { .. }), "{e:?}");
    assert_eq!(lease(&report_of(&p, "P"), "10.0.0.3").state, "idle");
    assert!(matches!(
        p.acquire("P", "s5", T0 + 5),
        Err(PoolError::Persist { .. })
    ));
    assert_eq!(dir_names(dir.path()), [JOURNAL_FILE]);

    std::fs::remove_dir_all(&path).unwrap();
    assert_eq!(p.acquire("P", "s4", T0 + 6).unwrap(), ip("10.0.0.1"));
}

#[test]
fn several_pools_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let two = pools(&[("A", "10.0.0.1", "10.0.0.2"), ("B", "10.0.1.1", "10.0.1.2")]);
    let mut p = Pools::open(dir.path(), &two).unwrap();
    // The same identity may hold an address in each pool.
    assert_eq!(p.acquire("A", "s1", T0).unwrap(), ip("10.0.0.1"));
    assert_eq!(p.acquire("B", "s1", T0).unwrap(), ip("10.0.1.1"));
    assert_eq!(p.acquire("A", "s2", T0).unwrap(), ip("10.0.0.2"));
    assert!(matches!(p.acquire("A", "s3", T0), Err(PoolError::Exhausted { pool }) if pool == "A"));
    assert_eq!(p.acquire("B", "s3", T0).unwrap(), ip("10.0.1.2"));
    p.release("A", ip("10.0.0.1"), T0 + 1).unwrap();
    let r = p.report();
    assert_eq!(
        r.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["A", "B"]
    );
    assert_eq!((r[0].in_use, r[0].idle, r[0].free), (1, 1, 0));
    assert_eq!((r[1].in_use, r[1].idle, r[1].free), (2, 0, 0));
    drop(p);
    let p = Pools::open(dir.path(), &two).unwrap();
    assert_eq!(lease(&report_of(&p, "B"), "10.0.1.1").identity, "s1");
    assert_eq!(lease(&report_of(&p, "A"), "10.0.0.1").identity, "s1");
}

/// A /16 with 5,000 spokes: connect, disconnect, reconnect in another
/// order, then newcomers once the pool is nearly bound. Drives the in-memory
/// bookkeeping directly (every call is O(log n)); persisting each change is
/// O(leases) and is exercised at 5,000 leases below.
#[test]
fn a_slash_16_with_5000_identities() {
    let first = ip("10.64.0.0");
    let last = ip("10.64.255.255");
    let mut p = PoolLeases::new(first, last);
    let n = 5_000u32;
    for i in 0..n {
        let (a, _) = p
            .acquire(&format!("fqdn:spoke{i}.example.com"), T0)
            .unwrap();
        assert_eq!(a, Ipv4Addr::from(u32::from(first) + i));
    }
    for i in 0..n {
        p.release(Ipv4Addr::from(u32::from(first) + i), T0 + u64::from(i));
    }
    for i in (0..n).rev() {
        let (a, _) = p
            .acquire(&format!("fqdn:spoke{i}.example.com"), T0 + 10_000)
            .unwrap();
        assert_eq!(a, Ipv4Addr::from(u32::from(first) + i));
    }
    assert_eq!((p.in_use(), p.idle(), p.free()), (5_000, 0, 65_536 - 5_000));
    // Fill the rest, free the first 5,000: newcomers reclaim oldest first.
    for i in n..65_536 {
        p.acquire(&format!("fqdn:spoke{i}.example.com"), T0)
            .unwrap();
    }
    for i in 0..n {
        p.release(
            Ipv4Addr::from(u32::from(first) + i),
            T0 + 20_000 + u64::from(n - i),
        );
    }
    let (a, _) = p.acquire("fqdn:late.example.com", T0 + 30_000).unwrap();
    assert_eq!(a, Ipv4Addr::from(u32::from(first) + n - 1));
    assert_eq!(
        (p.in_use(), p.idle(), p.free()),
        (65_536 - u64::from(n) + 1, u64::from(n) - 1, 0)
    );
}

/// The same /16 through `Pools` with 5,000 leases on disk: the hub restarts
/// and spokes come back, each change written. (Writing 5,000 acquires one
/// by one is 5,000 fsyncs, minutes in a debug build; the file is made from
/// the bookkeeping instead.)
#[test]
fn a_slash_16_with_5000_identities_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let big = pools(&[("Big", "10.64.0.0", "10.64.255.255")]);
    let first = ip("10.64.0.0");
    let nth = |i: u32| Ipv4Addr::from(u32::from(first) + i);
    let mut leases = PoolLeases::new(first, ip("10.64.255.255"));
    for i in 0..5_000 {
        leases
            .acquire(&format!("fqdn:spoke{i}.example.com"), T0)
            .unwrap();
    }
    for i in (0..5_000).step_by(2) {
        leases.release(nth(i), T0 + u64::from(i));
    }
    let bytes = super::store::encode(T0 + 5_000, 0, [("Big", &leases)].into_iter());
    std::fs::write(dir.path().join(LEASE_FILE), bytes).unwrap();

    let mut p = Pools::open(dir.path(), &big).unwrap();
    let r = report_of(&p, "Big");
    assert_eq!(
        (r.size, r.in_use, r.idle, r.free),
        (65_536, 0, 5_000, 60_536)
    );
    for i in (0..5_000).step_by(250) {
        let a = p
            .acquire("Big", &format!("fqdn:spoke{i}.example.com"), T0 + 6_000)
            .unwrap();
        assert_eq!(a, nth(i));
    }
    assert_eq!(
        p.acquire("Big", "fqdn:new.example.com", T0 + 6_000)
            .unwrap(),
        nth(5_000)
    );
    p.release("Big", nth(250), T0 + 7_000).unwrap();
    drop(p);

    let p = Pools::open(dir.path(), &big).unwrap();
    let r = report_of(&p, "Big");
    assert_eq!((r.in_use, r.idle, r.free), (0, 5_001, 60_535));
    assert_eq!(r.leases.len(), 5_001);
    assert_eq!(lease(&r, "10.64.0.250").since, T0 + 7_000);
    assert_eq!(lease(&r, "10.64.19.136").identity, "fqdn:new.example.com");
}

#[test]
fn render_pools_in_the_ios_layout() {
    let report = vec![
        PoolReport {
            name: "FlexSpokes".into(),
            first: ip("10.1.1.100"),
            last: ip("10.1.1.254"),
            size: 155,
            in_use: 2,
            idle: 1,
            free: 152,
            leases: vec![
                LeaseReport {
                    address: ip("10.1.1.100"),
                    identity: "fqdn:spoke1.cisco.com".into(),
                    state: "active".into(),
                    since: T0,
                },
                LeaseReport {
                    address: ip("10.1.1.101"),
                    identity: "fqdn:spoke2.cisco.com".into(),
                    state: "idle".into(),
                    since: T0 - 3_600,
                },
                LeaseReport {
                    address: ip("10.1.1.102"),
                    identity: "fqdn:spoke3.cisco.com".into(),
                    state: "active".into(),
                    since: T0 + 300,
                },
            ],
        },
        PoolReport {
            name: "Lab".into(),
            first: ip("10.9.0.1"),
            last: ip("10.9.0.4"),
            size: 4,
            in_use: 0,
            idle: 0,
            free: 4,
            leases: vec![],
        },
    ];
    let expected = " Pool                     Begin           End             Free  In use
 FlexSpokes               10.1.1.100      10.1.1.254       153       2
 Lab                      10.9.0.1        10.9.0.4           4       0

Pool FlexSpokes
 Inuse addresses:
  10.1.1.100       since 2026-01-01 00:00:00 UTC  fqdn:spoke1.cisco.com
  10.1.1.102       since 2026-01-01 00:05:00 UTC  fqdn:spoke3.cisco.com
 Idle addresses (kept for their identity, reclaimed oldest first):
  10.1.1.101       since 2025-12-31 23:00:00 UTC  fqdn:spoke2.cisco.com
";
    assert_eq!(render_pools(&report), expected);
    assert_eq!(render_pools(&[]), "No address pools configured\n");
}

#[test]
fn lease_states_read_as_in_the_lease_file() {
    for state in [LeaseState::Active, LeaseState::Idle] {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
}

#[test]
fn report_round_trips_through_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &flex()).unwrap();
    p.acquire("FlexSpokes", "fqdn:spoke1", T0).unwrap();
    let report = p.report();
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains(r#""state":"active""#), "{json}");
    assert_eq!(
        serde_json::from_str::<Vec<PoolReport>>(&json).unwrap(),
        report
    );
}

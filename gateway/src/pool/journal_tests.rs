//! The lease journal: O(1) per change, and no acknowledged lease lost
//! whatever the moment of a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{JOURNAL_FILE, LEASE_FILE, PoolError, Pools};
use crate::config;

const T0: u64 = 1_767_225_600;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pool(first: &str, last: &str) -> BTreeMap<String, config::Pool> {
    BTreeMap::from([(
        "P".to_owned(),
        config::Pool {
            first: ip(first),
            last: ip(last),
        },
    )])
}

/// (address, identity, state) of every lease of pool P.
fn leases(p: &Pools) -> Vec<(Ipv4Addr, String, String)> {
    p.report()
        .into_iter()
        .flat_map(|r| r.leases)
        .map(|l| (l.address, l.identity, l.state))
        .collect()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// A crash (no clean stop: the journal is not folded in) keeps every
/// change that was acknowledged; the next open folds the journal in.
#[test]
fn a_crash_keeps_every_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &pool("10.0.0.1", "10.0.0.3")).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    p.acquire("P", "s2", T0 + 1).unwrap();
    p.release("P", ip("10.0.0.1"), T0 + 2).unwrap();
    let before = leases(&p);
    std::mem::forget(p);
    assert_eq!(lines(&dir.path().join(JOURNAL_FILE)), 3);
    assert!(!dir.path().join(LEASE_FILE).exists());

    let p = Pools::open(dir.path(), &pool("10.0.0.1", "10.0.0.3")).unwrap();
    // Active leases come back idle (no session survives a restart).
    let idle: Vec<_> = before
        .into_iter()
        .map(|(a, id, _)| (a, id, "idle".to_owned()))
        .collect();
    assert_eq!(leases(&p), idle);
    assert!(!dir.path().join(JOURNAL_FILE).exists(), "folded in on open");
}

/// A line cut short by a crash was never acknowledged: skipped, logged.
#[test]
fn a_line_cut_short_by_a_crash_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pools::open(dir.path(), &pool("10.0.0.1", "10.0.0.3")).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    std::mem::forget(p);
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL_FILE))
        .unwrap();
    journal
        .write_all(br#"{"seq":2,"at":1767225601,"pool":"P","lea"#)
        .unwrap();
    drop(journal);
    let p = Pools::open(dir.path(), &pool("10.0.0.1", "10.0.0.3")).unwrap();
    assert_eq!(
        leases(&p),
        [(ip("10.0.0.1"), "s1".to_owned(), "idle".to_owned())]
    );
}

/// A crash after the lease file was rewritten and before the journal was
/// removed leaves old lines: their sequence numbers say the file has them,
/// and replaying them would give a reclaimed address back to its old
/// identity.
#[test]
fn lines_the_lease_file_includes_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = pool("10.0.0.1", "10.0.0.3");
    let mut p = Pools::open(dir.path(), &tiny).unwrap();
    p.acquire("P", "s1", T0).unwrap();
    p.release("P", ip("10.0.0.1"), T0 + 1).unwrap();
    std::mem::forget(p);
    let old_journal = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();

    let mut p = Pools::open(dir.path(), &tiny).unwrap();
    p.acquire("P", "s2", T0 + 2).unwrap();
    p.acquire("P", "s3", T0 + 3).unwrap();
    assert_eq!(p.acquire("P", "s4", T0 + 4).unwrap(), ip("10.0.0.1"));
    drop(p);
    std::fs::write(dir.path().join(JOURNAL_FILE), old_journal).unwrap();

    let p = Pools::open(dir.path(), &tiny).unwrap();
    assert_eq!(
        leases(&p)[0],
        (ip("10.0.0.1"), "s4".to_owned(), "idle".to_owned())
    );
}

#[test]
fn a_corrupt_journal_line_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    std::fs::write(
        &path,
        concat!(
            r#"{"seq":1,"at":1767225600,"pool":"P","lease":{"address":"10.0.0.1","identity":"s1","state":"active","since":1767225600}}"#,
            "\ngarbage\n"
        ),
    )
    .unwrap();
    let e = Pools::open(dir.path(), &pool("10.0.0.1", "10.0.0.3")).unwrap_err();
    assert!(matches!(e, PoolError::Corrupt { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 2:"), "{msg}");
    assert!(path.exists(), "left as it is");
}

/// One change appends one line: the lease file (here with 2,000 leases)
/// is not rewritten, until the journal holds more lines than there are
/// leases.
#[test]
fn a_change_appends_one_line_and_the_lease_file_is_rewritten_only_now_and_then() {
    let dir = tempfile::tempdir().unwrap();
    let big = pool("10.1.0.0", "10.1.255.255");
    let mut p = Pools::open(dir.path(), &big).unwrap();
    for i in 0..2_000 {
        p.acquire("P", &format!("s{i}"), T0).unwrap();
    }
    drop(p);
    let file = dir.path().join(LEASE_FILE);
    let journal = dir.path().join(JOURNAL_FILE);
    let inode = std::fs::metadata(&file).unwrap().ino();

    let mut p = Pools::open(dir.path(), &big).unwrap();
    p.acquire("P", "new", T0 + 1).unwrap();
    assert_eq!(lines(&journal), 1);
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "not rewritten"
    );
    // Each release and return is a change; the journal is folded in once
    // it is longer than the 2,001 leases.
    for i in 0..1_100u64 {
        p.release("P", ip("10.1.7.208"), T0 + 2 + i).unwrap();
        p.acquire("P", "new", T0 + 2 + i).unwrap();
    }
    assert!(lines(&journal) < 2_001, "{} lines", lines(&journal));
    assert_ne!(std::fs::metadata(&file).unwrap().ino(), inode, "folded in");
}

/// The writer killed with SIGKILL at a random moment, many times: every
/// lease it acknowledged (printed after `acquire` returned) is there after
/// a restart, with its address, and no address is given twice.
#[test]
fn a_writer_killed_at_any_moment_loses_no_acknowledged_lease() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pool::journal_tests::lease_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("POOL_WRITER_DIR", dir.path())
            .env("POOL_WRITER_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut got = 0;
        // Kill after a number of acknowledged leases that varies by round.
        while got < 40 + round * 37 {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(rest) = line.strip_prefix("leased ") {
                let (identity, address) = rest.trim().split_once(' ').unwrap();
                acknowledged.insert(identity.to_owned(), ip(address));
                got += 1;
            }
        }
        child.kill().unwrap();
        // What it printed before it died.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        for l in rest.lines() {
            if let Some(r) = l.strip_prefix("leased ") {
                let (identity, address) = r.split_once(' ').unwrap();
                acknowledged.insert(identity.to_owned(), ip(address));
            }
        }
        child.wait().unwrap();
        assert!(got > 0, "round {round}: the writer acknowledged nothing");

        let p = Pools::open(dir.path(), &pool("10.2.0.0", "10.2.255.255")).unwrap();
        let found: BTreeMap<String, Ipv4Addr> = leases(&p)
            .into_iter()
            .map(|(address, identity, _)| (identity, address))
            .collect();
        for (identity, address) in &acknowledged {
            assert_eq!(
                found.get(identity),
                Some(address),
                "round {round}: {identity}"
            );
        }
        std::mem::forget(p);
    }
}

/// The writer for the test above (run only as its child).
#[test]
#[ignore = "the child process of a_writer_killed_at_any_moment_loses_no_acknowledged_lease"]
fn lease_writer() {
    let Some(dir) = std::env::var_os("POOL_WRITER_DIR") else {
        return;
    };
    let round = std::env::var("POOL_WRITER_ROUND").unwrap();
    let mut p = Pools::open(Path::new(&dir), &pool("10.2.0.0", "10.2.255.255")).unwrap();
    let mut stdout = std::io::stdout().lock();
    for i in 0.. {
        let identity = format!("r{round}-{i}");
        let address = p.acquire("P", &identity, T0 + i).unwrap();
        writeln!(stdout, "leased {identity} {address}").unwrap();
        stdout.flush().unwrap();
    }
}

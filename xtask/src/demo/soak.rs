//! `cargo xtask demo --soak DURATION`: after the demo's checks, every path
//! carries a continuous ping (5 a second) for DURATION while the SAs rekey
//! under it, a status line every minute, and rows for the summary: what
//! each flow lost, the rekeys the hub logged, and whether the hub still
//! has exactly the sessions it started with and one SA pair each.
//!
//! Issue 14's run (DESIGN.md's "hub-and-spoke sessions that stay up"):
//! `cargo xtask demo --lifetime-scale 100 --soak 1h`, the IOS default
//! lifetimes shortened a hundredfold, so CHILD_SAs rekey about every 31-34 s
//! (at 85-95 % of 36 s: the gateway's jitter) and IKE SAs about every
//! 12-14 min (of 864 s).

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use integration::{
    Netns,
    flex_lab::{
        FlexLab, HUB_LAN_HOST, PingFlow, RekeyCounts, Reply, STRONGSWAN_ADDRESS, SpiSnapshot,
        Which, gateway_rekeys, ping_flow, spoke_address, spoke_lan_host, wait_ping,
    },
};

use super::{Lifetimes, PATH_UP, Row, first_line, shortcut_row};
use crate::util;

/// 5 echoes a second on each path.
const INTERVAL: Duration = Duration::from_millis(200);
/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_mins(1);
/// How often the loop looks at the flows.
const TICK: Duration = Duration::from_secs(1);
/// A flow whose last reply is older than this is called stalled in the
/// status line (a dead path shows there before its gap closes).
const STALLED: Duration = Duration::from_secs(2);
/// How long the hub's views get to settle at the end: a rekey may be under
/// way (make-before-break: two CHILD_SAs, two SA pairs for a moment). The
/// issue's bound for "only the current SPIs" after a rekey.
const SETTLE: Duration = Duration::from_secs(10);

/// One path of the soak.
struct Path {
    name: String,
    from: Netns,
    to: Ipv4Addr,
}

/// The soak's paths: each own spoke's LAN to the hub's LAN, spoke 1's LAN
/// to spoke 2's (over the NHRP shortcut), the strongSwan spoke's virtual
/// IP to the hub's LAN.
fn paths(lab: &FlexLab) -> Vec<Path> {
    let mut paths: Vec<Path> = (1..=lab.spoke_count())
        .map(|k| Path {
            name: format!("spoke {k} LAN -> hub LAN"),
            from: lab.spoke_lan(k).clone(),
            to: HUB_LAN_HOST,
        })
        .collect();
    if lab.spoke_count() >= 2 {
        paths.push(Path {
            name: "spoke 1 LAN -> spoke 2 LAN (shortcut)".to_owned(),
            from: lab.spoke_lan(1).clone(),
            to: spoke_lan_host(2),
        });
    }
    if let Some(swan) = lab.strongswan_netns() {
        let vip = lab
            .strongswan_vip()
            .map_or_else(|_| "?".to_owned(), |v| v.to_string());
        paths.push(Path {
            name: format!("strongSwan {vip} -> hub LAN"),
            from: swan.clone(),
            to: HUB_LAN_HOST,
        });
    }
    paths
}

/// The peers whose rekeys the hub logs, by the name the rows give them and
/// the address its log lines name.
fn peers(lab: &FlexLab) -> Vec<(String, String)> {
    let mut peers: Vec<(String, String)> = (1..=lab.spoke_count())
        .map(|k| (format!("spoke {k}"), spoke_address(k).to_string()))
        .collect();
    if lab.strongswan_netns().is_some() {
        peers.push(("strongSwan".to_owned(), STRONGSWAN_ADDRESS.to_string()));
    }
    peers
}

/// Runs the soak; `started_with` are the hub's sessions when the lab came
/// up ([`session_key`]). Returns the summary's rows.
pub(super) fn run(
    lab: &FlexLab,
    soak: Duration,
    lifetimes: &Lifetimes,
    started_with: &[String],
) -> Vec<Row> {
    let paths = paths(lab);
    let count = echoes(soak);
    println!(
        "\ndemo: soak for {}: {} paths, {count} echoes each ({}/s), lifetimes {} s (IKE) and {} s (IPsec); a status line every minute\n",
        util::human(soak),
        paths.len(),
        Duration::from_secs(1).as_millis() / INTERVAL.as_millis(),
        lifetimes.ike_s,
        lifetimes.ipsec_s,
    );
    let mut rows = Vec::new();
    let mut flows = Vec::new();
    for path in paths {
        // The checks just used every path; this only rules out a path
        // that died since, which the flow's figures would blame on the soak.
        let _ = wait_ping(&path.from, path.to, PATH_UP);
        match ping_flow(&path.from, path.to, INTERVAL, count) {
            Ok(flow) => flows.push((path, flow)),
            Err(e) => rows.push(failed(&format!("soak: {}", path.name), &e)),
        }
    }
    let started = Instant::now();
    let bound = soak + Duration::from_mins(1);
    let mut next_status = STATUS_EVERY;
    while flows.iter().any(|(_, f)| f.is_running()) && started.elapsed() < bound {
        std::thread::sleep(TICK);
        if started.elapsed() >= next_status {
            println!("{}", status_line(lab, started.elapsed(), soak, &flows));
            next_status += STATUS_EVERY;
        }
    }
    for (path, flow) in flows {
        rows.push(flow_row(&path.name, flow));
    }
    rows.extend(rekey_rows(lab, soak, lifetimes));
    rows.push(hub_state_row(lab, started_with));
    rows.push(unknown_spi_row(lab));
    if lab.spoke_count() >= 2 {
        let mut row = shortcut_row(lab);
        row.path = format!("{} (after the soak)", row.path);
        rows.push(row);
    }
    rows
}

/// How many echoes fill `soak` at [`INTERVAL`] (at least one).
fn echoes(soak: Duration) -> u32 {
    let n = soak.as_millis().div_ceil(INTERVAL.as_millis()).max(1);
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `soak 12m00s/60m00s  sessions 3  CHILD rekeys 61  IKE rekeys 2  lost 0`
/// (and the flows that lost or stalled).
fn status_line(
    lab: &FlexLab,
    elapsed: Duration,
    soak: Duration,
    flows: &[(Path, PingFlow)],
) -> String {
    let sessions = lab
        .sessions()
        .map_or_else(|_| "?".to_owned(), |s| s.len().to_string());
    let rekeys = hub_log(lab).map(|log| gateway_rekeys(&log, ""));
    let (child, ike) = rekeys.as_ref().map_or_else(
        |_| ("?".to_owned(), "?".to_owned()),
        |r| (r.child().to_string(), r.ike().to_string()),
    );
    let now = unix_now();
    let mut lost = 0;
    let mut notes = Vec::new();
    for (path, flow) in flows {
        let replies = flow.replies_so_far();
        // The gaps, and the echoes of a path gone silent (no later reply
        // closes that gap yet).
        let silent = replies
            .last()
            .map_or(elapsed.as_secs_f64(), |r| now - r.received_at);
        let stalled = flow.is_running() && silent > STALLED.as_secs_f64();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let unanswered = if stalled {
            (silent / INTERVAL.as_secs_f64()) as u32
        } else {
            0
        };
        let n = lost_so_far(&replies) + unanswered;
        lost += n;
        if n > 0 {
            notes.push(format!("{}: {n} lost", path.name));
        }
        if stalled {
            notes.push(format!("{}: no reply for {silent:.0} s", path.name));
        }
    }
    let mut line = format!(
        "soak {:>7}/{}  sessions {sessions}  CHILD rekeys {child}  IKE rekeys {ike}  lost {lost}",
        util::human(elapsed),
        util::human(soak),
    );
    if !notes.is_empty() {
        line = format!("{line}  ({})", notes.join("; "));
    }
    line
}

/// Echoes lost so far: the sequence numbers missing below the highest one
/// answered (the ones still in flight are not counted). `icmp_seq` is 16
/// bits: it wraps after 65535 (3.6 h at 5/s), which is undone here.
fn lost_so_far(replies: &[Reply]) -> u32 {
    let mut seen = BTreeSet::new();
    let mut base = 0u64;
    let mut last = None;
    for r in replies {
        let seq = u64::from(r.seq);
        if last.is_some_and(|l: u64| seq + 32_768 < l) {
            base += 65_536;
        }
        last = Some(seq);
        seen.insert(base + seq);
    }
    // iputils numbers from 1.
    let highest = seen.last().copied().unwrap_or(0);
    u32::try_from(highest.saturating_sub(seen.len() as u64)).unwrap_or(u32::MAX)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One flow's row: sent, received, lost (a lost echo fails it), the
/// longest time without a reply.
fn flow_row(name: &str, flow: PingFlow) -> Row {
    let path = format!("soak: {name}");
    match flow.finish() {
        Ok(r) => {
            let lost = r.lost();
            let mut detail = format!(
                "{} sent, {} received, {lost} lost, longest gap {:.2} s",
                r.summary.transmitted,
                r.summary.received,
                r.longest_gap().as_secs_f64()
            );
            // When they left, to set beside the logs' timestamps.
            let missing: Vec<String> = r
                .missing()
                .iter()
                .take(MISSING_SHOWN)
                .map(|(seq, at)| format!("#{seq} ~{}", utc_time(*at)))
                .collect();
            if !missing.is_empty() {
                detail = format!("{detail}; missing {}", missing.join(", "));
            }
            Row {
                path,
                ok: lost == 0 && r.summary.transmitted > 0,
                result: if lost == 0 { "ok" } else { "FAILED" }.to_owned(),
                detail,
            }
        }
        Err(e) => failed(&path, &e),
    }
}

/// How many missing echoes a flow's row names.
const MISSING_SHOWN: usize = 5;

/// `16:39:24.577Z`: the time of day of Unix time `at`, as the gateways'
/// logs print it (UTC).
fn utc_time(at: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (at.max(0.0) * 1000.0) as u64;
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

fn hub_log(lab: &FlexLab) -> anyhow::Result<String> {
    Ok(lab.gateway(Which::Hub)?.process().stderr_text())
}

/// The rekeys the hub logged (`%IKEV2-5-CHILD_REKEY`, `%IKEV2-5-IKE_REKEY`,
/// both roles), per peer: each peer must have at least as many as the soak
/// alone made due (its SAs rekey before their lifetime is out).
fn rekey_rows(lab: &FlexLab, soak: Duration, lifetimes: &Lifetimes) -> Vec<Row> {
    let log = match hub_log(lab) {
        Ok(log) => log,
        Err(e) => return vec![failed("hub: rekeys", &e)],
    };
    let counts: Vec<(String, RekeyCounts)> = peers(lab)
        .into_iter()
        .map(|(name, address)| (name, gateway_rekeys(&log, &address)))
        .collect();
    let all = gateway_rekeys(&log, "");
    let secs = soak.as_secs();
    let mut rows = vec![
        rekey_row(
            "hub: CHILD_SA rekeys",
            all.child(),
            secs / lifetimes.ipsec_s,
            &counts,
            |c| (c.child(), c.child_initiated),
        ),
        rekey_row(
            "hub: IKE SA rekeys",
            all.ike(),
            secs / lifetimes.ike_s,
            &counts,
            |c| (c.ike(), c.ike_initiated),
        ),
    ];
    if lab.spoke_count() >= 2 {
        rows.extend(shortcut_rekey_rows(lab, secs, lifetimes));
    }
    rows
}

/// The rekeys of the spoke-to-spoke shortcut as spoke 1 logged them (its
/// lines that name spoke 2's address): our spokes' profiles have the
/// scaled lifetimes too, so the shortcut the soak uses rekeys as often.
fn shortcut_rekey_rows(lab: &FlexLab, secs: u64, lifetimes: &Lifetimes) -> Vec<Row> {
    let log = match lab.gateway(Which::Spoke(1)) {
        Ok(g) => g.process().stderr_text(),
        Err(e) => return vec![failed("spoke 1: shortcut rekeys", &e)],
    };
    let counts = [(
        "spoke 1 <-> spoke 2".to_owned(),
        gateway_rekeys(&log, &spoke_address(2).to_string()),
    )];
    vec![
        rekey_row(
            "spoke 1: shortcut CHILD_SA rekeys",
            counts[0].1.child(),
            secs / lifetimes.ipsec_s,
            &counts,
            |c| (c.child(), c.child_initiated),
        ),
        rekey_row(
            "spoke 1: shortcut IKE SA rekeys",
            counts[0].1.ike(),
            secs / lifetimes.ike_s,
            &counts,
            |c| (c.ike(), c.ike_initiated),
        ),
    ]
}

/// A rekey row: the total, and per peer (rekeys, initiated by the gateway
/// whose log was read).
fn rekey_row(
    path: &str,
    total: usize,
    due: u64,
    counts: &[(String, RekeyCounts)],
    of: impl Fn(&RekeyCounts) -> (usize, usize),
) -> Row {
    let due = usize::try_from(due).unwrap_or(usize::MAX);
    let short: Vec<&str> = counts
        .iter()
        .filter(|(_, c)| of(c).0 < due)
        .map(|(name, _)| name.as_str())
        .collect();
    let per_peer: Vec<String> = counts
        .iter()
        .map(|(name, c)| {
            let (n, initiated) = of(c);
            format!("{name} {n} ({initiated} initiated)")
        })
        .collect();
    let mut detail = format!("{}; at least {due} each due", per_peer.join(", "));
    if !short.is_empty() {
        detail = format!("{detail}; too few: {}", short.join(", "));
    }
    Row {
        path: path.to_owned(),
        ok: short.is_empty(),
        result: format!("{} {total}", if short.is_empty() { "ok" } else { "FAILED" }),
        detail,
    }
}

/// `identity address` of a hub session, to compare the sessions at the end
/// with those at the start.
pub(super) fn session_key(
    identity: Option<&str>,
    remote: &str,
    address: Option<Ipv4Addr>,
) -> String {
    format!(
        "{} {remote} {}",
        identity.unwrap_or("?"),
        address.map_or_else(|| "-".to_owned(), |a| a.to_string())
    )
}

/// Whether the hub has exactly the sessions it started with, one
/// virtual-access and one SA pair each, and in its XDP filter only their
/// inbound SPIs; given [`SETTLE`] to get there (a rekey may be under way).
fn hub_state_row(lab: &FlexLab, started_with: &[String]) -> Row {
    let path = format!(
        "hub: the {} sessions it started with, one SA pair each",
        started_with.len()
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let verdict = lab
            .spi_snapshot(Which::Hub)
            .and_then(|s| judge(&s, started_with));
        match verdict {
            Ok(detail) => {
                return Row {
                    path,
                    ok: true,
                    result: "ok".to_owned(),
                    detail,
                };
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return failed(&path, &e),
        }
    }
}

/// Where lost echoes most likely died: ESP dropped for an SPI the box had
/// no SA for (its XDP filter, then its datapath), over the whole run. For
/// the record, not a verdict (the flows' rows are): an ESP packet on an SA
/// removed a moment too early shows here.
fn unknown_spi_row(lab: &FlexLab) -> Row {
    let boxes = std::iter::once(("hub".to_owned(), Which::Hub))
        .chain((1..=lab.spoke_count()).map(|k| (format!("spoke {k}"), Which::Spoke(k))));
    let parts: Vec<String> = boxes
        .map(|(name, which)| match lab.spi_snapshot(which) {
            Ok(s) => {
                let xdp: u64 = s
                    .xdp
                    .verdicts
                    .iter()
                    .filter(|v| v.drop && v.verdict.contains("unknown_spi"))
                    .map(|v| v.packets)
                    .sum();
                format!(
                    "{name} {xdp} (XDP) + {} (datapath)",
                    s.datapath.global.unknown_spi
                )
            }
            Err(e) => format!("{name} ? ({})", first_line(&format!("{e:#}"))),
        })
        .collect();
    Row {
        path: "ESP dropped for an unknown SPI (whole run)".to_owned(),
        ok: true,
        result: "info".to_owned(),
        detail: parts.join(", "),
    }
}

fn judge(s: &SpiSnapshot, started_with: &[String]) -> anyhow::Result<String> {
    let mut now: Vec<String> = s
        .sessions
        .iter()
        .map(|sa| session_key(sa.identity.as_deref(), &sa.remote, sa.assigned_address))
        .collect();
    now.sort();
    let mut want = started_with.to_vec();
    want.sort();
    if now != want {
        bail!("sessions {now:?}, started with {want:?}");
    }
    if let Some(sa) = s.sessions.iter().find(|sa| !sa.is_up()) {
        bail!("the session of {} is {}", sa.remote, sa.status);
    }
    let vas = s.datapath.virtual_access.len();
    let pairs = s.datapath.sas.len();
    if vas != want.len() || pairs != want.len() {
        bail!(
            "{vas} virtual-access interfaces and {pairs} SA pairs for {} sessions",
            want.len()
        );
    }
    let surplus = s.surplus();
    if !surplus.is_empty() {
        let what: Vec<&String> = surplus.values().collect();
        bail!("more than the current SPIs: {what:?}");
    }
    Ok(format!(
        "{} sessions, {vas} virtual-access, {pairs} SA pairs, {} SPIs in the XDP filter",
        now.len(),
        s.xdp.sas.len()
    ))
}

fn failed(path: &str, e: &anyhow::Error) -> Row {
    Row {
        path: path.to_owned(),
        ok: false,
        result: "FAILED".to_owned(),
        detail: first_line(&format!("{e:#}")),
    }
}

/// `90s`, `3m`, `1h`, `1h30m`, `2m30s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("{text:?}: unknown unit {c:?} (use h, m, s: 1h, 3m, 90s)"),
        };
        let n: u64 = number
            .parse()
            .with_context(|| format!("{text:?}: a number must come before {c:?}"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        bail!("{text:?}: {number} has no unit (h, m or s)");
    }
    if total == 0 {
        bail!("{text:?}: the soak must last at least a second");
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |t: &str| parse_duration(t).expect(t);
        assert_eq!(d("1h"), Duration::from_hours(1));
        assert_eq!(d("3m"), Duration::from_mins(3));
        assert_eq!(d("90s"), Duration::from_secs(90));
        assert_eq!(d("1h30m"), Duration::from_mins(90));
        assert_eq!(d("45"), Duration::from_secs(45));
        for bad in ["", "1x", "h", "1h30", "0m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn reply(seq: u32) -> Reply {
        Reply {
            seq,
            received_at: 0.0,
            rtt_ms: 0.5,
        }
    }

    #[test]
    fn counts_the_echoes_missing_so_far() {
        let replies: Vec<Reply> = [1, 2, 4, 5, 8].into_iter().map(reply).collect();
        assert_eq!(lost_so_far(&replies), 3);
        assert_eq!(lost_so_far(&[]), 0);
        // Across the 16-bit wrap of icmp_seq, nothing missing.
        let wrapped: Vec<Reply> = (1..=65_535).chain(0..10).map(reply).collect();
        assert_eq!(lost_so_far(&wrapped), 0);
        assert_eq!(echoes(Duration::from_mins(1)), 300);
        assert_eq!(echoes(Duration::from_millis(1)), 1);
        // 2026-12-05T16:39:24.577Z
        assert_eq!(utc_time(1_796_488_764.577_4), "16:39:24.577Z");
    }
}

//! `show ip local pool` in the IOS layout: the pool table, then each pool's
//! leases.

use std::fmt::Write as _;

use gateway_report::pool::{LeaseReport, PoolReport};

use super::LeaseState;

/// `show ip local pool` as text:
///
/// ```text
///  Pool                     Begin           End             Free  In use
///  FlexSpokes               10.1.1.100      10.1.1.254       153       2
///
/// Pool FlexSpokes
///  Inuse addresses:
///   10.1.1.100       since 2026-01-01 00:00:00 UTC  fqdn:spoke1.cisco.com
///   10.1.1.101       since 2026-01-01 00:05:00 UTC  fqdn:spoke2.cisco.com
///  Idle addresses (kept for their identity, reclaimed oldest first):
///   10.1.1.102       since 2025-12-31 23:00:00 UTC  fqdn:spoke3.cisco.com
/// ```
///
/// As on IOS, Free + In use is the pool's size: Free counts the addresses a
/// new spoke can get, never-leased and idle alike.
pub fn render_pools(pools: &[PoolReport]) -> String {
    if pools.is_empty() {
        return "No address pools configured\n".to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        " {:<24} {:<15} {:<15} {:>4} {:>7}",
        "Pool", "Begin", "End", "Free", "In use"
    );
    for p in pools {
        let _ = writeln!(
            out,
            " {:<24} {:<15} {:<15} {:>4} {:>7}",
            p.name,
            p.first.to_string(),
            p.last.to_string(),
            p.free + p.idle,
            p.in_use
        );
    }
    for p in pools.iter().filter(|p| !p.leases.is_empty()) {
        let _ = write!(out, "\nPool {}\n", p.name);
        section(&mut out, " Inuse addresses:", p, LeaseState::Active);
        section(
            &mut out,
            " Idle addresses (kept for their identity, reclaimed oldest first):",
            p,
            LeaseState::Idle,
        );
    }
    out
}

fn section(out: &mut String, title: &str, pool: &PoolReport, state: LeaseState) {
    let mut leases = pool
        .leases
        .iter()
        .filter(|l| l.state == state.as_str())
        .peekable();
    if leases.peek().is_none() {
        return;
    }
    let _ = writeln!(out, "{title}");
    for LeaseReport {
        address,
        identity,
        since,
        ..
    } in leases
    {
        let _ = writeln!(
            out,
            "  {:<16} since {}  {identity}",
            address.to_string(),
            utc(*since)
        );
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (proleptic Gregorian).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to civil date: Howard Hinnant's algorithm, eras of 400 years
    // counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_767_225_599), "2025-12-31 23:59:59 UTC");
        assert_eq!(utc(1_767_225_600), "2026-01-01 00:00:00 UTC");
        assert_eq!(utc(4_107_542_400), "2100-03-01 00:00:00 UTC");
    }
}

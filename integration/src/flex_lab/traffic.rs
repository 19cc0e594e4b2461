//! Traffic through the lab: `ping` (with its summary parsed) and `iperf3`
//! (one or more TCP streams, the rate the server received).

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::{
    Netns,
    cmd::{self, tail},
    wait_until,
};

/// The port iperf3 listens on.
pub const IPERF_PORT: u16 = 5201;

// ---- ping ------------------------------------------------------------------

/// What iputils `ping` reported.
#[derive(Clone, Debug, PartialEq)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// As printed, e.g. 0.0 or 100.0.
    pub loss_percent: f64,
    /// Round-trip times in milliseconds; `None` when nothing came back.
    pub rtt: Option<Rtt>,
}

/// `rtt min/avg/max/mdev = ...` in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rtt {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub mdev: f64,
}

impl PingResult {
    /// Every echo answered.
    pub fn all_received(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// Interval between echoes, in seconds (as `ping -i` takes it).
const PING_INTERVAL: &str = "0.2";

/// `ping -c COUNT` from `from` to `to` (0.2 s apart, 1 s for the last
/// answer, bounded in time); lost echoes are not an error.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32) -> Result<PingResult> {
    ping_with(from, None, to, count)
}

/// [`ping`] from the source address `source` (`ping -I ADDRESS`).
pub fn ping_from(from: &Netns, source: Ipv4Addr, to: Ipv4Addr, count: u32) -> Result<PingResult> {
    ping_with(from, Some(source), to, count)
}

fn ping_with(
    from: &Netns,
    source: Option<Ipv4Addr>,
    to: Ipv4Addr,
    count: u32,
) -> Result<PingResult> {
    let count = count.max(1);
    // No `-w`: with a deadline, iputils ping keeps sending until COUNT
    // answers came back, so a lost echo would change what was sent. Without
    // it, it sends COUNT echoes 0.2 s apart and waits `-W` (1 s) for the
    // last answer: done in about COUNT / 5 + 1 s; the bound below is for a
    // ping that misbehaves.
    let bound = Duration::from_secs(u64::from(count.div_ceil(5)) + 10);
    let mut command = Command::new("ip");
    command.args(["netns", "exec", from.name(), "ping", "-n", "-q"]);
    command.args(["-c", &count.to_string(), "-i", PING_INTERVAL, "-W", "1"]);
    if let Some(source) = source {
        command.args(["-I", &source.to_string()]);
    }
    command.arg(to.to_string());
    let line = cmd::command_line(&command);
    let output = cmd::run_unchecked(&mut command, bound)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_ping(&stdout).with_context(|| {
        format!(
            "`{line}` printed no summary ({}); stdout: {stdout}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })
}

/// Polls with single pings (bounded by `timeout`) until one is answered:
/// for the moment a path starts to work (routes and SAs installed, ARP).
pub fn wait_ping(from: &Netns, to: Ipv4Addr, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let mut last = None;
    let ok = wait_until(timeout, Duration::from_millis(100), || {
        let result = ping(from, to, 1);
        let ok = result.as_ref().is_ok_and(|r| r.received > 0);
        last = Some(result);
        ok
    });
    if ok {
        return Ok(());
    }
    bail!(
        "no answer from {to} to pings from netns {} within {:?}; last: {last:?}",
        from.name(),
        started.elapsed()
    )
}

/// Parses the summary of iputils `ping` (`-q` or not).
pub fn parse_ping(text: &str) -> Option<PingResult> {
    let stats = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut transmitted = None;
    let mut received = None;
    let mut loss = None;
    for part in stats.split(',').map(str::trim) {
        let mut words = part.split_whitespace();
        let (Some(number), Some(word)) = (words.next(), words.next()) else {
            continue;
        };
        match word {
            "packets" => transmitted = number.parse().ok(),
            "received" => received = number.parse().ok(),
            "packet" => loss = number.strip_suffix('%').and_then(|n| n.parse().ok()),
            _ => {}
        }
    }
    let rtt = text
        .lines()
        .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
        .and_then(|rest| {
            let numbers: Vec<f64> = rest
                .split_whitespace()
                .next()?
                .split('/')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            let [min, avg, max, mdev] = numbers.as_slice() else {
                return None;
            };
            Some(Rtt {
                min: *min,
                avg: *avg,
                max: *max,
                mdev: *mdev,
            })
        });
    Some(PingResult {
        transmitted: transmitted?,
        received: received?,
        loss_percent: loss?,
        rtt,
    })
}

// ---- a ping in the background ----------------------------------------------

/// A `ping` flow running in the background ([`ping_flow`]): every reply
/// with its time, to see when a path stopped and started again.
pub struct PingFlow {
    proc: crate::Proc,
    bound: Duration,
    line: String,
}

/// One echo reply of a [`PingFlow`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reply {
    pub seq: u32,
    /// When it arrived, in seconds since the Unix epoch (`ping -D`).
    pub received_at: f64,
    /// Its round-trip time in milliseconds.
    pub rtt_ms: f64,
}

impl Reply {
    /// When its echo request left, in seconds since the Unix epoch.
    pub fn sent_at(&self) -> f64 {
        self.received_at - self.rtt_ms / 1000.0
    }
}

/// What a [`PingFlow`] saw.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowResult {
    pub summary: PingResult,
    pub replies: Vec<Reply>,
}

impl FlowResult {
    /// Echo requests that got no answer.
    pub fn lost(&self) -> u32 {
        self.summary
            .transmitted
            .saturating_sub(self.summary.received)
    }

    /// The first reply to an echo sent after `at` (Unix seconds).
    pub fn first_reply_sent_after(&self, at: f64) -> Option<&Reply> {
        self.replies.iter().find(|r| r.sent_at() > at)
    }

    /// The sequence numbers that got no reply, each with about when it was
    /// sent (Unix seconds, from its neighbours' replies), to set beside the
    /// logs' timestamps.
    pub fn missing(&self) -> Vec<(u32, f64)> {
        let mut out = Vec::new();
        for w in self.replies.windows(2) {
            let (a, b) = (w[0], w[1]);
            let gap = b.seq.saturating_sub(a.seq);
            for k in 1..gap {
                let t = a.sent_at() + (b.sent_at() - a.sent_at()) * f64::from(k) / f64::from(gap);
                out.push((a.seq + k, t));
            }
        }
        out
    }

    /// The longest time between two replies in a row.
    pub fn longest_gap(&self) -> Duration {
        self.replies
            .windows(2)
            .map(|w| w[1].received_at - w[0].received_at)
            .fold(Duration::ZERO, |m, g| {
                m.max(Duration::from_secs_f64(g.max(0.0)))
            })
    }
}

/// Starts `ping -D -c COUNT -i INTERVAL` from `from` to `to` in the
/// background (root may send faster than every 0.2 s). [`PingFlow::finish`]
/// waits for it.
pub fn ping_flow(from: &Netns, to: Ipv4Addr, interval: Duration, count: u32) -> Result<PingFlow> {
    let mut command = Command::new("ping");
    command.args(["-n", "-D", "-W", "1"]);
    command.args(["-c", &count.max(1).to_string()]);
    command.args(["-i", &format!("{:.3}", interval.as_secs_f64())]);
    command.arg(to.to_string());
    let line = format!("{} in netns {}", cmd::command_line(&command), from.name());
    let proc = from.spawn(&command)?;
    // Its own run time, plus the last answer's wait and some slack.
    let bound = interval * count + Duration::from_secs(30);
    Ok(PingFlow { proc, bound, line })
}

impl PingFlow {
    /// Whether ping is still sending.
    pub fn is_running(&self) -> bool {
        self.proc.is_running()
    }

    /// The replies so far, while ping runs (for a status line during a
    /// long flow).
    pub fn replies_so_far(&self) -> Vec<Reply> {
        parse_ping_replies(&self.proc.stdout_text())
    }

    /// Waits (bounded) for ping to end and reads what it saw.
    pub fn finish(self) -> Result<FlowResult> {
        if self.proc.wait_timeout(self.bound).is_err() {
            let _ = self.proc.terminate();
        }
        let stdout = self.proc.stdout_text();
        let summary = parse_ping(&stdout).with_context(|| {
            format!(
                "`{}` printed no summary; stdout: {}; stderr: {}",
                self.line,
                tail(&stdout, 2000),
                self.proc.stderr_text().trim()
            )
        })?;
        Ok(FlowResult {
            summary,
            replies: parse_ping_replies(&stdout),
        })
    }
}

/// The replies in `ping -D` output:
/// `[1700000000.123456] 64 bytes from 192.168.0.10: icmp_seq=1 ttl=63 time=0.512 ms`.
pub fn parse_ping_replies(text: &str) -> Vec<Reply> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (stamp, rest) = rest.split_once(']')?;
            if !rest.contains(" bytes from ") {
                return None;
            }
            let field = |name: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(name));
            Some(Reply {
                seq: field("icmp_seq=")?.parse().ok()?,
                received_at: stamp.parse().ok()?,
                rtt_ms: field("time=")?.parse().ok()?,
            })
        })
        .collect()
}

// ---- iperf3 ----------------------------------------------------------------

/// How long the iperf3 server gets to listen.
const IPERF_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// One TCP stream for `seconds` from `client_ns` to an iperf3 server on
/// `server_addr` in `server_ns` ([`IPERF_PORT`]); returns what the server
/// received, in bits per second. The server is a lab process (`iperf3 -s
/// -1`: one test, then it exits; stopped in any case when this returns).
pub fn iperf3(
    server_ns: &Netns,
    server_addr: Ipv4Addr,
    client_ns: &Netns,
    seconds: u32,
) -> Result<f64> {
    iperf3_streams(server_ns, server_addr, client_ns, seconds, 1)
}

/// [`iperf3`] with `streams` parallel TCP streams (`-P`), summed.
pub fn iperf3_streams(
    server_ns: &Netns,
    server_addr: Ipv4Addr,
    client_ns: &Netns,
    seconds: u32,
    streams: u32,
) -> Result<f64> {
    let port = IPERF_PORT.to_string();
    let addr = server_addr.to_string();
    let mut server = Command::new("iperf3");
    server.args(["-s", "-1", "-B", &addr, "-p", &port]);
    let server = server_ns.spawn(&server)?;
    let listening = wait_until(IPERF_LISTEN_TIMEOUT, Duration::from_millis(50), || {
        !server.is_running() || tcp_listening(server_ns, IPERF_PORT)
    });
    ensure!(
        listening && server.is_running(),
        "the iperf3 server on {addr} in netns {} did not listen within {IPERF_LISTEN_TIMEOUT:?}: {}",
        server_ns.name(),
        server.stderr_text().trim()
    );

    let mut client = Command::new("ip");
    client.args(["netns", "exec", client_ns.name(), "iperf3", "-c", &addr]);
    client.args(["-p", &port, "-t", &seconds.to_string()]);
    client.args(["-P", &streams.max(1).to_string()]);
    client.args(["--json", "--connect-timeout", "3000"]);
    let line = cmd::command_line(&client);
    let output = cmd::run_unchecked(&mut client, Duration::from_secs(u64::from(seconds) + 20))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = parse_iperf3_json(&stdout).with_context(|| {
        format!(
            "`{line}` ({}): stderr: {}; server: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            server.stderr_text().trim()
        )
    });
    // It exits by itself after one test; if the test failed, stop it.
    if server.wait_timeout(Duration::from_secs(2)).is_err() {
        let _ = server.terminate();
    }
    result
}

fn tcp_listening(netns: &Netns, port: u16) -> bool {
    let filter = format!("sport = :{port}");
    netns
        .exec_unchecked(["ss", "-H", "-l", "-t", "-n", &filter])
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// `end.sum_received.bits_per_second` of `iperf3 --json` output; its
/// `error` when it reports one.
pub fn parse_iperf3_json(text: &str) -> Result<f64> {
    let v: Value = serde_json::from_str(text)
        .with_context(|| format!("iperf3 printed no JSON: {}", tail(text, 2000)))?;
    if let Some(error) = v["error"].as_str() {
        bail!("iperf3: {error}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| "iperf3's JSON has no end.sum_received.bits_per_second".to_owned())
}

/// `1.23 Gbit/s`, `456.7 Mbit/s`.
pub fn human_rate(bits_per_second: f64) -> String {
    if bits_per_second >= 1e9 {
        format!("{:.2} Gbit/s", bits_per_second / 1e9)
    } else if bits_per_second >= 1e6 {
        format!("{:.1} Mbit/s", bits_per_second / 1e6)
    } else {
        format!("{:.1} kbit/s", bits_per_second / 1e3)
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_iputils_ping() {
        let ok = "PING 192.168.1.10 (192.168.1.10) 56(84) bytes of data.\n\n\
                  --- 192.168.1.10 ping statistics ---\n\
                  5 packets transmitted, 5 received, 0% packet loss, time 803ms\n\
                  rtt min/avg/max/mdev = 0.045/0.061/0.080/0.014 ms\n";
        let r = parse_ping(ok).unwrap();
        assert!(r.all_received());
        assert_eq!((r.transmitted, r.received), (5, 5));
        assert!((r.rtt.unwrap().avg - 0.061).abs() < 1e-9);
        let lost = "--- 192.168.0.10 ping statistics ---\n\
                    3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2034ms\n";
        let r = parse_ping(lost).unwrap();
        assert_eq!((r.transmitted, r.received, r.rtt), (3, 0, None));
        assert!((r.loss_percent - 100.0).abs() < 1e-9);
        assert!(!r.all_received());
        let some = "4 packets transmitted, 3 received, 25% packet loss, time 3004ms\n\
                    rtt min/avg/max/mdev = 1.0/2.0/3.0/0.5 ms, pipe 2\n";
        let r = parse_ping(some).unwrap();
        assert_eq!(r.received, 3);
        assert!((r.loss_percent - 25.0).abs() < 1e-9);
        assert!((r.rtt.unwrap().max - 3.0).abs() < 1e-9);
        assert_eq!(parse_ping("ping: connect: Network is unreachable\n"), None);
    }

    #[test]
    fn parses_timestamped_replies() {
        let text = "PING 192.168.0.10 (192.168.0.10) 56(84) bytes of data.\n\
                    [1700000000.100000] 64 bytes from 192.168.0.10: icmp_seq=1 ttl=63 time=0.500 ms\n\
                    [1700000000.120000] From 172.25.1.1 icmp_seq=2 Destination Host Unreachable\n\
                    [1700000002.500000] 64 bytes from 192.168.0.10: icmp_seq=3 ttl=63 time=1000 ms\n\n\
                    --- 192.168.0.10 ping statistics ---\n\
                    3 packets transmitted, 2 received, 33% packet loss, time 40ms\n";
        let replies = parse_ping_replies(text);
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[1].seq, 3);
        assert!((replies[1].sent_at() - 1_700_000_001.5).abs() < 1e-6);
        let flow = FlowResult {
            summary: parse_ping(text).unwrap(),
            replies,
        };
        assert_eq!(flow.lost(), 1);
        assert_eq!(flow.first_reply_sent_after(1_700_000_000.2).unwrap().seq, 3);
        assert!((flow.longest_gap().as_secs_f64() - 2.4).abs() < 1e-6);
    }

    #[test]
    fn parses_iperf3_json() {
        let ok = r#"{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":2.0e9},
                    "sum_received":{"bits_per_second":1.5e9}}}"#;
        assert!((parse_iperf3_json(ok).unwrap() - 1.5e9).abs() < 1.0);
        let err = r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#;
        let e = parse_iperf3_json(err).unwrap_err();
        assert!(format!("{e}").contains("Connection refused"), "{e}");
        assert!(parse_iperf3_json("iperf3: error").is_err());
        assert_eq!(human_rate(1.5e9), "1.50 Gbit/s");
        assert_eq!(human_rate(2.5e8), "250.0 Mbit/s");
    }
}

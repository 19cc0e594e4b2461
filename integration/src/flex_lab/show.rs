//! What the gateways say: `gateway show ...` (and `clear ip nhrp`) on the
//! hub or a spoke, read as the gateway's own report types
//! (`gateway_report`): a field the daemon renames or retypes breaks here
//! instead of reading as zero.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use gateway_report::{
    bgp::Summary,
    ike::SaReport,
    interfaces::{DatapathReport, VaCounters},
    nhrp::{NhrpEntryView, NhrpTraffic, NhrpView},
};
use serde::de::DeserializeOwned;

use crate::wait_until;

use super::{FlexLab, Which, spoke_address, spoke_identity};

/// The counters of `show ip nhrp traffic` that are not zero, `name=value`
/// separated by spaces (for messages).
pub fn nonzero_counters(traffic: &NhrpTraffic) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(traffic) else {
        return format!("{traffic:?}");
    };
    let words: Vec<String> = map
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if words.is_empty() {
        "(all zero)".to_owned()
    } else {
        words.join(" ")
    }
}

impl FlexLab {
    /// `gateway show ARGS...` (the text an operator sees).
    pub fn show(&self, on: Which, args: &[&str]) -> Result<String> {
        let mut full = vec!["show"];
        full.extend_from_slice(args);
        self.gateway(on)?.cli_ok(&full)
    }

    /// `gateway show ARGS... --json`, as its report type.
    pub fn show_report<T: DeserializeOwned>(&self, on: Which, args: &[&str]) -> Result<T> {
        self.gateway(on)?.show_report(args)
    }

    /// The hub's sessions (`show crypto session --json`).
    pub fn sessions(&self) -> Result<Vec<SaReport>> {
        self.show_report(Which::Hub, &["crypto", "session"])
    }

    /// Polls the hub's sessions (every 250 ms, at most `timeout`) until at
    /// least `n` are up ([`SaReport::is_up`]); returns the ones up. The
    /// error shows the last answer and the logs.
    pub fn wait_sessions(&self, n: usize, timeout: Duration) -> Result<Vec<SaReport>> {
        let mut last: Result<Vec<SaReport>> = Ok(Vec::new());
        let done = wait_until(timeout, Duration::from_millis(250), || {
            last = self.sessions();
            last.as_ref()
                .is_ok_and(|s| s.iter().filter(|s| s.is_up()).count() >= n)
        });
        let seen = match last {
            Ok(sessions) if done => {
                return Ok(sessions.into_iter().filter(SaReport::is_up).collect());
            }
            Ok(s) => format!("{s:#?}"),
            Err(e) => format!("{e:#}"),
        };
        bail!(
            "fewer than {n} sessions up on the hub after {timeout:?}; last seen: {seen}\n{}",
            self.logs()
        )
    }

    /// Waits until the hub has `n` dynamic BGP neighbors (spokes from its
    /// listen range) Established with one prefix each (their LANs).
    pub fn wait_bgp_spokes(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let summary: Result<Summary> = self.show_report(Which::Hub, &["bgp", "summary"]);
            let ready = summary.as_ref().map_or(0, |s| {
                s.neighbors
                    .iter()
                    .filter(|n| {
                        n.dynamic && n.state == "Established" && n.prefixes_received == Some(1)
                    })
                    .count()
            });
            if ready >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{ready} of {n} BGP spokes Established with their prefix after {timeout:?}: {summary:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The hub's session of own spoke k, if it has one.
    pub fn spoke_session(&self, k: usize) -> Result<Option<SaReport>> {
        let id = format!("fqdn:{}", spoke_identity(k));
        Ok(self
            .sessions()?
            .into_iter()
            .find(|s| s.identity.as_deref() == Some(id.as_str())))
    }

    /// The pool address the hub gave own spoke k.
    pub fn spoke_pool_address(&self, k: usize) -> Result<Ipv4Addr> {
        self.spoke_session(k)?
            .and_then(|s| s.assigned_address)
            .with_context(|| format!("the hub has no session with an address for spoke {k}"))
    }

    /// The hub's virtual-access interfaces (`show interfaces
    /// virtual-access --json`, field `virtual_access`).
    pub fn virtual_access(&self) -> Result<Vec<VaCounters>> {
        self.virtual_access_on(Which::Hub)
    }

    /// The virtual-access interfaces of the hub or of a spoke (on a spoke:
    /// `Tunnel1` to the hub and its spoke-to-spoke `Virtual-AccessN`).
    pub fn virtual_access_on(&self, on: Which) -> Result<Vec<VaCounters>> {
        let report: DatapathReport = self.show_report(on, &["interfaces", "virtual-access"])?;
        Ok(report.virtual_access)
    }

    /// Spoke k's spoke-to-spoke virtual-access to own spoke `peer` (its
    /// outer address is [`spoke_address`]`(peer)`), if it has one.
    pub fn shortcut_tunnel(&self, k: usize, peer: usize) -> Result<Option<VaCounters>> {
        let peer = spoke_address(peer);
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .find(|va| va.is_virtual_access() && va.outer_ip() == Some(peer)))
    }

    /// Every spoke-to-spoke virtual-access of spoke k to own spoke `peer`:
    /// more than one when both opened a tunnel to the other at once (each
    /// answering the other's resolution request).
    pub fn shortcut_tunnels_to(&self, k: usize, peer: usize) -> Result<Vec<VaCounters>> {
        let peer = spoke_address(peer);
        Ok(self
            .shortcut_tunnels(k)?
            .into_iter()
            .filter(|va| va.outer_ip() == Some(peer))
            .collect())
    }

    /// Spoke k's spoke-to-spoke virtual-accesses (not its `Tunnel1`).
    pub fn shortcut_tunnels(&self, k: usize) -> Result<Vec<VaCounters>> {
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .filter(VaCounters::is_virtual_access)
            .collect())
    }

    /// `gateway show ip nhrp --json`: the NHRP cache (the hub has none).
    pub fn nhrp_entries(&self, on: Which) -> Result<Vec<NhrpEntryView>> {
        let view: NhrpView = self.show_report(on, &["ip", "nhrp"])?;
        Ok(view.entries)
    }

    /// The NHRP entry for exactly `target` (e.g. `192.168.2.0/24`).
    pub fn nhrp_entry(&self, on: Which, target: &str) -> Result<Option<NhrpEntryView>> {
        Ok(self
            .nhrp_entries(on)?
            .into_iter()
            .find(|e| e.target == target))
    }

    /// `gateway show ip nhrp traffic --json`.
    pub fn nhrp_traffic(&self, on: Which) -> Result<NhrpTraffic> {
        self.show_report(on, &["ip", "nhrp", "traffic"])
    }

    /// `gateway clear ip nhrp`: on the hub, its redirect rate-limit state;
    /// on a spoke, its shortcut entries and spoke-to-spoke tunnels.
    pub fn clear_nhrp(&self, on: Which) -> Result<String> {
        self.gateway(on)?.cli_ok(["clear", "ip", "nhrp"])
    }

    /// The hub's virtual-access whose outer peer address is `outer`.
    pub fn virtual_access_of(&self, outer: Ipv4Addr) -> Result<Option<VaCounters>> {
        Ok(self
            .virtual_access()?
            .into_iter()
            .find(|va| va.outer_ip() == Some(outer)))
    }

    /// The hub's virtual-access of own spoke k.
    pub fn spoke_virtual_access(&self, k: usize) -> Result<Option<VaCounters>> {
        self.virtual_access_of(spoke_address(k))
    }

    /// Whether the hub's kernel has a route to exactly `prefix` (e.g.
    /// `10.1.1.100/32` or `192.168.1.0/24`), in any table.
    pub fn hub_has_route(&self, prefix: &str) -> Result<bool> {
        let out = self
            .hub
            .netns
            .ip(["-4", "route", "show", "table", "all", "to", "exact", prefix])?;
        Ok(!String::from_utf8_lossy(&out.stdout).trim().is_empty())
    }

    /// The device in spoke k's namespace that holds its tunnel (pool)
    /// address: the gateway's TUN device.
    pub fn spoke_tunnel_device(&self, k: usize) -> Result<String> {
        let address = self.spoke_pool_address(k)?;
        let out = self.spoke(k).ip(["-o", "-4", "addr", "show"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        device_with_address(&text, address)
            .with_context(|| format!("no device in spoke {k}'s namespace holds {address}:\n{text}"))
    }
}

/// The interface holding `address` in `ip -o -4 addr show` output.
fn device_with_address(ip_o_addr: &str, address: Ipv4Addr) -> Option<String> {
    ip_o_addr.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let _index = words.next()?;
        let dev = words.next()?;
        let _inet = words.next().filter(|w| *w == "inet")?;
        let cidr = words.next()?;
        let ip: Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
        (ip == address).then(|| dev.trim_end_matches(':').to_owned())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tunnel_device() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    5: gw-va    inet 10.1.1.100/32 scope global gw-va\\       valid_lft forever\n";
        assert_eq!(
            device_with_address(text, Ipv4Addr::new(10, 1, 1, 100)).as_deref(),
            Some("gw-va")
        );
        assert_eq!(
            device_with_address(text, Ipv4Addr::new(10, 1, 1, 101)),
            None
        );
    }

    #[test]
    fn nonzero_counters_name_what_happened() {
        let t = NhrpTraffic {
            redirects_sent: 2,
            ..NhrpTraffic::default()
        };
        assert_eq!(nonzero_counters(&t), "redirects_sent=2");
        assert_eq!(nonzero_counters(&NhrpTraffic::default()), "(all zero)");
    }
}

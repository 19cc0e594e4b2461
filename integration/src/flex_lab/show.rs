//! What the gateways say: `gateway show ...` (and `clear ip nhrp`) on the
//! hub or a spoke, and the lab's own view of the JSON answers
//! ([`Session`], [`VirtualAccess`], [`NhrpEntry`], [`NhrpTraffic`]). Those
//! four types and their parsing are kept here, together, so that they can be
//! replaced by the gateway's own report types in one place.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::wait_until;

use super::{FlexLab, Which, spoke_address, spoke_identity};

/// One row of `gateway show crypto session --json` (the daemon's
/// `SaReport`), with what the lab needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// e.g. `fqdn:spoke1.lab.example`.
    pub identity: Option<String>,
    /// The peer's outer address and port, `172.25.1.11/4500`.
    pub remote: String,
    /// `READY` once IKE_AUTH is done, `IN-NEG` before.
    pub status: String,
    pub assigned_address: Option<Ipv4Addr>,
    pub children: usize,
    /// The first CHILD_SA's encryption, e.g. `AES-GCM-256`.
    pub esp: Option<String>,
}

impl Session {
    /// READY with at least one CHILD_SA.
    pub fn is_up(&self) -> bool {
        self.status == "READY" && self.children > 0
    }

    fn from_json(v: &Value) -> Session {
        let s = |key: &str| v[key].as_str().map(ToOwned::to_owned);
        let children = v["children"].as_array().map_or(&[][..], Vec::as_slice);
        Session {
            identity: s("identity"),
            remote: s("remote").unwrap_or_default(),
            status: s("status").unwrap_or_default(),
            assigned_address: v["assigned_address"].as_str().and_then(|a| a.parse().ok()),
            children: children.len(),
            esp: children
                .first()
                .and_then(|c| c["encryption"].as_str())
                .map(ToOwned::to_owned),
        }
    }
}

/// One interface of `gateway show interfaces virtual-access --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualAccess {
    pub name: String,
    /// The spoke's tunnel address (its pool address), if it has one.
    pub peer_inner: Option<Ipv4Addr>,
    /// `172.25.1.11:4500`.
    pub remote_outer: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_spoofed: u64,
    pub tx_too_big: u64,
    pub hairpinned: u64,
}

impl VirtualAccess {
    fn from_json(v: &Value) -> VirtualAccess {
        let n = |key: &str| v[key].as_u64().unwrap_or(0);
        VirtualAccess {
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            peer_inner: v["peer_inner"]
                .as_str()
                .and_then(|a| a.split('/').next()?.parse().ok()),
            remote_outer: v["remote_outer"].as_str().unwrap_or_default().to_owned(),
            rx_packets: n("rx_packets"),
            tx_packets: n("tx_packets"),
            rx_spoofed: n("rx_spoofed"),
            tx_too_big: n("tx_too_big"),
            hairpinned: n("hairpinned"),
        }
    }

    /// The IP part of `remote_outer`.
    pub fn outer_ip(&self) -> Option<Ipv4Addr> {
        self.remote_outer
            .rsplit_once(':')
            .map_or(self.remote_outer.as_str(), |(ip, _)| ip)
            .parse()
            .ok()
    }
}

impl VirtualAccess {
    /// A spoke-to-spoke (shortcut) tunnel: named `Virtual-AccessN` on a
    /// spoke, whose tunnel to the hub is `Tunnel1`.
    pub fn is_virtual_access(&self) -> bool {
        self.name.starts_with("Virtual-Access")
    }
}

/// One entry of `gateway show ip nhrp --json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NhrpEntry {
    /// The prefix, e.g. `192.168.2.0/24`.
    pub target: String,
    /// The next hop's tunnel address.
    pub via: Option<Ipv4Addr>,
    /// The next hop's outer (NBMA) address.
    pub nbma: Option<Ipv4Addr>,
    /// e.g. `Virtual-Access1`.
    pub interface: String,
    pub created_s: u64,
    pub expires_s: u64,
    /// e.g. `router`, `rib`, `nho`, `dynamic`.
    pub flags: Vec<String>,
}

impl NhrpEntry {
    fn from_json(v: &Value) -> NhrpEntry {
        let ip = |key: &str| v[key].as_str().and_then(|a| a.parse().ok());
        NhrpEntry {
            target: v["target"].as_str().unwrap_or_default().to_owned(),
            via: ip("via"),
            nbma: ip("nbma"),
            interface: v["interface"].as_str().unwrap_or_default().to_owned(),
            created_s: v["created_s"].as_u64().unwrap_or(0),
            expires_s: v["expires_s"].as_u64().unwrap_or(0),
            flags: v["flags"].as_array().map_or_else(Vec::new, |f| {
                f.iter()
                    .filter_map(|f| f.as_str().map(ToOwned::to_owned))
                    .collect()
            }),
        }
    }
}

/// `gateway show ip nhrp traffic --json`: counter name to value
/// (`redirects_sent`, `resolution_requests_received`, `shortcuts_installed`,
/// ...). A counter the answer lacks reads as 0 through [`NhrpTraffic::get`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NhrpTraffic(pub std::collections::BTreeMap<String, u64>);

impl NhrpTraffic {
    pub fn get(&self, counter: &str) -> u64 {
        self.0.get(counter).copied().unwrap_or(0)
    }

    fn from_json(v: &Value) -> Result<NhrpTraffic> {
        let map = v
            .as_object()
            .with_context(|| format!("`show ip nhrp traffic --json` is not an object: {v}"))?;
        Ok(NhrpTraffic(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect(),
        ))
    }
}

impl std::fmt::Display for NhrpTraffic {
    /// The counters that are not zero, `name=value` separated by spaces.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (k, v) in self.0.iter().filter(|(_, v)| **v != 0) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        if first {
            f.write_str("(all zero)")?;
        }
        Ok(())
    }
}

impl FlexLab {
    /// `gateway show ARGS...` (the text an operator sees).
    pub fn show(&self, on: Which, args: &[&str]) -> Result<String> {
        let mut full = vec!["show"];
        full.extend_from_slice(args);
        self.gateway(on)?.cli_ok(&full)
    }

    /// `gateway show ARGS... --json`, parsed.
    pub fn show_json(&self, on: Which, args: &[&str]) -> Result<Value> {
        self.gateway(on)?.show_json(args)
    }

    /// The hub's sessions (`show crypto session --json`).
    pub fn sessions(&self) -> Result<Vec<Session>> {
        let v = self.show_json(Which::Hub, &["crypto", "session"])?;
        let rows = v
            .as_array()
            .with_context(|| format!("`show crypto session --json` is not a list: {v}"))?;
        Ok(rows.iter().map(Session::from_json).collect())
    }

    /// Polls the hub's sessions (every 250 ms, at most `timeout`) until at
    /// least `n` are up ([`Session::is_up`]); returns the ones up. The
    /// error shows the last answer and the logs.
    pub fn wait_sessions(&self, n: usize, timeout: Duration) -> Result<Vec<Session>> {
        let mut last: Result<Vec<Session>> = Ok(Vec::new());
        let done = wait_until(timeout, Duration::from_millis(250), || {
            last = self.sessions();
            last.as_ref()
                .is_ok_and(|s| s.iter().filter(|s| s.is_up()).count() >= n)
        });
        let seen = match last {
            Ok(sessions) if done => {
                return Ok(sessions.into_iter().filter(Session::is_up).collect());
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
            let summary = self.show_json(Which::Hub, &["bgp", "summary"]);
            let ready = summary.as_ref().ok().map_or(0, |v| {
                v["neighbors"].as_array().map_or(0, |list| {
                    list.iter()
                        .filter(|n| {
                            n["dynamic"] == true
                                && n["state"] == "Established"
                                && n["prefixes_received"] == 1
                        })
                        .count()
                })
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
    pub fn spoke_session(&self, k: usize) -> Result<Option<Session>> {
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
    pub fn virtual_access(&self) -> Result<Vec<VirtualAccess>> {
        self.virtual_access_on(Which::Hub)
    }

    /// The virtual-access interfaces of the hub or of a spoke (on a spoke:
    /// `Tunnel1` to the hub and its spoke-to-spoke `Virtual-AccessN`).
    pub fn virtual_access_on(&self, on: Which) -> Result<Vec<VirtualAccess>> {
        let v = self.show_json(on, &["interfaces", "virtual-access"])?;
        let list = v["virtual_access"].as_array().with_context(|| {
            format!("`show interfaces virtual-access --json` has no virtual_access list: {v}")
        })?;
        Ok(list.iter().map(VirtualAccess::from_json).collect())
    }

    /// Spoke k's spoke-to-spoke virtual-access to own spoke `peer` (its
    /// outer address is [`spoke_address`]`(peer)`), if it has one.
    pub fn shortcut_tunnel(&self, k: usize, peer: usize) -> Result<Option<VirtualAccess>> {
        let peer = spoke_address(peer);
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .find(|va| va.is_virtual_access() && va.outer_ip() == Some(peer)))
    }

    /// Every spoke-to-spoke virtual-access of spoke k to own spoke `peer`:
    /// more than one when both opened a tunnel to the other at once (each
    /// answering the other's resolution request).
    pub fn shortcut_tunnels_to(&self, k: usize, peer: usize) -> Result<Vec<VirtualAccess>> {
        let peer = spoke_address(peer);
        Ok(self
            .shortcut_tunnels(k)?
            .into_iter()
            .filter(|va| va.outer_ip() == Some(peer))
            .collect())
    }

    /// Spoke k's spoke-to-spoke virtual-accesses (not its `Tunnel1`).
    pub fn shortcut_tunnels(&self, k: usize) -> Result<Vec<VirtualAccess>> {
        Ok(self
            .virtual_access_on(Which::Spoke(k))?
            .into_iter()
            .filter(VirtualAccess::is_virtual_access)
            .collect())
    }

    /// `gateway show ip nhrp --json`: the NHRP cache (the hub has none).
    pub fn nhrp_entries(&self, on: Which) -> Result<Vec<NhrpEntry>> {
        let v = self.show_json(on, &["ip", "nhrp"])?;
        let list = v["entries"]
            .as_array()
            .with_context(|| format!("`show ip nhrp --json` has no entries list: {v}"))?;
        Ok(list.iter().map(NhrpEntry::from_json).collect())
    }

    /// The NHRP entry for exactly `target` (e.g. `192.168.2.0/24`).
    pub fn nhrp_entry(&self, on: Which, target: &str) -> Result<Option<NhrpEntry>> {
        Ok(self
            .nhrp_entries(on)?
            .into_iter()
            .find(|e| e.target == target))
    }

    /// `gateway show ip nhrp traffic --json`.
    pub fn nhrp_traffic(&self, on: Which) -> Result<NhrpTraffic> {
        NhrpTraffic::from_json(&self.show_json(on, &["ip", "nhrp", "traffic"])?)
    }

    /// `gateway clear ip nhrp`: on the hub, its redirect rate-limit state;
    /// on a spoke, its shortcut entries and spoke-to-spoke tunnels.
    pub fn clear_nhrp(&self, on: Which) -> Result<String> {
        self.gateway(on)?.cli_ok(["clear", "ip", "nhrp"])
    }

    /// The hub's virtual-access whose outer peer address is `outer`.
    pub fn virtual_access_of(&self, outer: Ipv4Addr) -> Result<Option<VirtualAccess>> {
        Ok(self
            .virtual_access()?
            .into_iter()
            .find(|va| va.outer_ip() == Some(outer)))
    }

    /// The hub's virtual-access of own spoke k.
    pub fn spoke_virtual_access(&self, k: usize) -> Result<Option<VirtualAccess>> {
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

    const SPOKE: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 11);

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
    fn sessions_and_virtual_access_from_json() {
        let row: Value = serde_json::from_str(
            r#"{"tunnel_id":1,"local":"172.25.1.1/4500","remote":"172.25.1.11/4500",
               "status":"READY","identity":"fqdn:spoke1.lab.example","assigned_address":"10.1.1.100",
               "children":[{"spi_in":"c0010001","spi_out":"d0020002","mode":"transport",
                            "encryption":"AES-GCM-256","local_ts":[],"remote_ts":[]}]}"#,
        )
        .unwrap();
        let s = Session::from_json(&row);
        assert!(s.is_up());
        assert_eq!(s.assigned_address, Some(Ipv4Addr::new(10, 1, 1, 100)));
        assert_eq!(s.esp.as_deref(), Some("AES-GCM-256"));
        let va: Value = serde_json::from_str(
            r#"{"id":1,"name":"Virtual-Access1","peer_inner":"10.1.1.100",
               "remote_outer":"172.25.1.11:4500","mtu":1400,"rx_packets":5,"rx_bytes":420,
               "tx_packets":5,"tx_bytes":420,"rx_spoofed":2,"tx_too_big":0,"hairpinned":3}"#,
        )
        .unwrap();
        let va = VirtualAccess::from_json(&va);
        assert_eq!(va.outer_ip(), Some(SPOKE));
        assert_eq!(va.peer_inner, Some(Ipv4Addr::new(10, 1, 1, 100)));
        assert_eq!((va.rx_spoofed, va.hairpinned), (2, 3));
    }

    #[test]
    fn nhrp_entries_and_traffic_from_json() {
        let v: Value = serde_json::from_str(
            r#"{"target":"192.168.2.0/24","via":"10.1.1.102","nbma":"172.16.1.102",
               "interface":"Virtual-Access1","created_s":3,"expires_s":5,
               "flags":["router","rib","nho","dynamic"]}"#,
        )
        .unwrap();
        let e = NhrpEntry::from_json(&v);
        assert_eq!(e.target, "192.168.2.0/24");
        assert_eq!(e.via, Some(Ipv4Addr::new(10, 1, 1, 102)));
        assert_eq!(e.nbma, Some(Ipv4Addr::new(172, 16, 1, 102)));
        assert_eq!(
            (e.interface.as_str(), e.created_s, e.expires_s),
            ("Virtual-Access1", 3, 5)
        );
        assert_eq!(e.flags, ["router", "rib", "nho", "dynamic"]);
        let t: Value =
            serde_json::from_str(r#"{"redirects_sent":2,"redirects_suppressed":0}"#).unwrap();
        let t = NhrpTraffic::from_json(&t).unwrap();
        assert_eq!((t.get("redirects_sent"), t.get("malformed")), (2, 0));
        assert_eq!(t.to_string(), "redirects_sent=2");
        assert!(NhrpTraffic::from_json(&Value::Null).is_err());
    }
}

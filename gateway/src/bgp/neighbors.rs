//! Who may talk BGP to this speaker, and with which settings: static
//! neighbors (`[[bgp.neighbor]]`) and dynamic ones that connect from a
//! listen range (IOS `bgp listen range PREFIX peer-group NAME`), capped by
//! `bgp listen limit`. Decided when a TCP connection arrives, before any
//! BGP message is read; no I/O here.

use std::net::Ipv4Addr;

use crate::{
    config::{Bgp, BgpTimers},
    net::Ipv4Prefix,
};

/// IOS defaults: `timers bgp 60 180`.
pub const DEFAULT_TIMERS: BgpTimers = BgpTimers {
    keepalive: 60,
    hold: 180,
};

/// The settings a session runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSettings {
    pub address: Ipv4Addr,
    pub remote_as: u32,
    pub keepalive: u16,
    pub hold: u16,
    pub route_reflector_client: bool,
    pub unsuppress: bool,
    pub next_hop: Option<Ipv4Addr>,
    pub update_source: Option<Ipv4Addr>,
    /// `Some(peer group)` for a neighbor accepted from a listen range:
    /// IOS marks it with `*` in `show bgp summary` and forgets it when the
    /// session ends.
    pub dynamic: Option<String>,
}

/// What to do with an incoming connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Accept(PeerSettings),
    /// Closed at once; the reason is logged (IOS logs
    /// `%BGP-3-BGP_NO_REMOTE_READ`-style lines for refused peers).
    Refuse(String),
}

/// The neighbor configuration, resolved.
#[derive(Clone, Debug)]
pub struct Neighbors {
    statics: Vec<PeerSettings>,
    /// Most specific first.
    ranges: Vec<(Ipv4Prefix, PeerSettings)>,
    limit: usize,
}

impl Neighbors {
    pub fn from_config(bgp: &Bgp) -> Self {
        let global = bgp.timers.unwrap_or(DEFAULT_TIMERS);
        let statics = bgp
            .neighbor
            .iter()
            .map(|n| {
                let t = n.timers.unwrap_or(global);
                PeerSettings {
                    address: n.address,
                    remote_as: n.remote_as,
                    keepalive: t.keepalive,
                    hold: t.hold,
                    route_reflector_client: n.route_reflector_client,
                    unsuppress: n.unsuppress,
                    next_hop: n.next_hop,
                    update_source: n.update_source,
                    dynamic: None,
                }
            })
            .collect();
        let mut ranges: Vec<(Ipv4Prefix, PeerSettings)> = bgp
            .listen_range
            .iter()
            .filter_map(|r| {
                // The config check guarantees the group exists.
                let g = bgp.peer_group.get(&r.peer_group)?;
                let t = g.timers.unwrap_or(global);
                Some((
                    r.prefix,
                    PeerSettings {
                        address: Ipv4Addr::UNSPECIFIED,
                        remote_as: g.remote_as,
                        keepalive: t.keepalive,
                        hold: t.hold,
                        route_reflector_client: g.route_reflector_client,
                        unsuppress: false,
                        next_hop: None,
                        update_source: g.update_source,
                        dynamic: Some(r.peer_group.clone()),
                    },
                ))
            })
            .collect();
        ranges.sort_by_key(|r| std::cmp::Reverse(r.0.len));
        Neighbors {
            statics,
            ranges,
            limit: usize::try_from(bgp.listen_limit).unwrap_or(usize::MAX),
        }
    }

    pub fn statics(&self) -> &[PeerSettings] {
        &self.statics
    }

    /// A connection from `peer`; `has_session`: `peer` is a dynamic
    /// neighbor with a session now; `dynamic_sessions`: how many dynamic
    /// neighbors have one (counts, not a set: this runs per connection).
    pub fn admit(&self, peer: Ipv4Addr, has_session: bool, dynamic_sessions: usize) -> Admission {
        // A configured neighbor wins over a range that also covers it, as
        // in IOS.
        if let Some(s) = self.statics.iter().find(|s| s.address == peer) {
            return Admission::Accept(s.clone());
        }
        let Some((range, settings)) = self.ranges.iter().find(|(r, _)| r.contains(peer)) else {
            return Admission::Refuse(format!(
                "connection from {peer} refused: not a configured neighbor and in no listen range"
            ));
        };
        if !has_session && dynamic_sessions >= self.limit {
            return Admission::Refuse(format!(
                "connection from {peer} (listen range {range}) refused: bgp listen limit {} reached",
                self.limit
            ));
        }
        let mut settings = settings.clone();
        settings.address = peer;
        Admission::Accept(settings)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bgp() -> Bgp {
        let config = crate::config::parse(
            r#"
[hub]
local_address = "172.25.1.1"
uplink = "eth0"
[bgp]
asn = 65001
listen_limit = 2
timers = { keepalive = 20, hold = 60 }
[[bgp.listen_range]]
prefix = "10.1.0.0/16"
peer_group = "Wide"
[[bgp.listen_range]]
prefix = "10.1.1.0/24"
peer_group = "Spokes"
[bgp.peer_group.Spokes]
remote_as = 65001
route_reflector_client = true
timers = { keepalive = 3, hold = 9 }
[bgp.peer_group.Wide]
remote_as = 65002
[[bgp.neighbor]]
address = "10.1.1.5"
remote_as = 65001
route_reflector_client = true
unsuppress = true
next_hop = "192.168.0.2"
"#,
            "test.toml",
        )
        .unwrap();
        config.bgp.unwrap()
    }

    fn accept(a: Admission) -> PeerSettings {
        match a {
            Admission::Accept(s) => s,
            Admission::Refuse(why) => panic!("refused: {why}"),
        }
    }

    #[test]
    fn the_most_specific_range_gives_its_peer_groups_settings() {
        let n = Neighbors::from_config(&bgp());
        let s = accept(n.admit("10.1.1.100".parse().unwrap(), false, 0));
        assert_eq!(s.dynamic.as_deref(), Some("Spokes"));
        assert_eq!((s.remote_as, s.keepalive, s.hold), (65001, 3, 9));
        assert!(s.route_reflector_client);
        assert_eq!(s.address, "10.1.1.100".parse::<Ipv4Addr>().unwrap());
        let w = accept(n.admit("10.1.9.9".parse().unwrap(), false, 0));
        assert_eq!(w.dynamic.as_deref(), Some("Wide"));
        assert_eq!(
            (w.remote_as, w.keepalive, w.hold),
            (65002, 20, 60),
            "global timers"
        );
    }

    #[test]
    fn a_static_neighbor_wins_over_a_range_and_keeps_its_options() {
        let n = Neighbors::from_config(&bgp());
        let s = accept(n.admit("10.1.1.5".parse().unwrap(), false, 0));
        assert_eq!(s.dynamic, None);
        assert!(s.unsuppress && s.route_reflector_client);
        assert_eq!(s.next_hop, Some("192.168.0.2".parse().unwrap()));
    }

    #[test]
    fn outside_every_range_and_over_the_limit_are_refused_with_the_reason() {
        let n = Neighbors::from_config(&bgp());
        let Admission::Refuse(why) = n.admit("172.16.0.1".parse().unwrap(), false, 0) else {
            panic!("accepted a peer outside every range");
        };
        assert!(
            why.contains("172.16.0.1") && why.contains("no listen range"),
            "{why}"
        );
        let Admission::Refuse(why) = n.admit("10.1.1.102".parse().unwrap(), false, 2) else {
            panic!("accepted over the listen limit");
        };
        assert!(why.contains("listen limit 2"), "{why}");
        // A neighbor that already has a session may reconnect.
        accept(n.admit("10.1.1.101".parse().unwrap(), true, 2));
    }
}

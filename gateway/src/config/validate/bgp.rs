//! `[bgp]`: AS numbers, timers, listen ranges, peer groups and static
//! neighbors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{Checker, undefined};
use crate::config::{Bgp, BgpTimers, Config, Role, Unnumbered, error::quote_key};

/// RFC 6793: the 2-byte placeholder for a 4-byte AS, never a real AS.
const AS_TRANS: u32 = 23_456;

impl Checker {
    /// Reports an AS number no speaker may use; true if `asn` is usable.
    pub(super) fn asn(&mut self, key: String, asn: u32) -> bool {
        let why = match asn {
            0 => "0 is not a valid AS number".to_owned(),
            AS_TRANS => {
                "23456 is AS_TRANS (RFC 6793), a placeholder that no speaker may use".to_owned()
            }
            65_535 | 4_294_967_295 => format!("{asn} is a reserved AS number (RFC 7300)"),
            _ => return true,
        };
        self.error(key, why);
        false
    }

    pub(super) fn timers(&mut self, path: &str, timers: Option<BgpTimers>) {
        let Some(BgpTimers { keepalive, hold }) = timers else {
            return;
        };
        if hold == 0 {
            if keepalive != 0 {
                self.error(
                    format!("{path}.timers.keepalive"),
                    format!("{keepalive} with hold 0: hold 0 turns keepalives off, set 0 too"),
                );
            }
        } else if hold < 3 {
            self.error(
                format!("{path}.timers.hold"),
                format!("{hold} is out of range; expected 0 (no hold timer) or 3..=65535 seconds"),
            );
        } else if keepalive >= hold {
            self.error(
                format!("{path}.timers.keepalive"),
                format!(
                    "{keepalive} must be less than hold ({hold}); the usual value is a third of \
                     hold ({})",
                    hold / 3
                ),
            );
        } else if keepalive == 0 {
            self.error(
                format!("{path}.timers.keepalive"),
                format!(
                    "0 sends no keepalives, so the peer's hold timer ({hold} s) would expire; \
                     use {} (a third of hold)",
                    hold / 3
                ),
            );
        }
    }

    pub(super) fn ibgp_only(&mut self, key: String, on: bool, remote_as: u32, asn: Option<u32>) {
        let Some(asn) = asn else { return };
        if on && remote_as != asn {
            self.error(
                key,
                format!(
                    "route reflection is for iBGP neighbors; remote_as {remote_as} differs from \
                     bgp.asn {asn}"
                ),
            );
        }
    }

    pub(super) fn bgp(&mut self, config: &Config, bgp: &Bgp) {
        // The local AS, if usable for comparisons.
        let asn = self.asn("bgp.asn".into(), bgp.asn).then_some(bgp.asn);
        if let Some(id) = bgp.router_id {
            self.unicast("bgp.router_id".into(), id, true);
        }
        let mut seen = BTreeSet::new();
        for (i, n) in bgp.networks.iter().enumerate() {
            if !seen.insert(*n) {
                self.error(format!("bgp.networks[{i}]"), format!("{n} is listed twice"));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, a) in bgp.aggregates.iter().enumerate() {
            if !seen.insert(a.prefix) {
                self.error(
                    format!("bgp.aggregates[{i}].prefix"),
                    format!("{} is listed twice", a.prefix),
                );
            }
        }
        self.range("bgp.listen_limit".into(), bgp.listen_limit, 1, 10_000, "");
        self.timers("bgp", bgp.timers);

        if config.hub.role == Role::Spoke && !bgp.listen_range.is_empty() {
            self.error(
                "bgp.listen_range",
                "a spoke does not accept dynamic neighbors (hub.role = \"spoke\"); remove \
                 [[bgp.listen_range]] or set hub.role = \"hub\"",
            );
        }
        let mut seen = BTreeMap::new();
        for (i, r) in bgp.listen_range.iter().enumerate() {
            let lp = format!("bgp.listen_range[{i}]");
            if !bgp.peer_group.contains_key(&r.peer_group) {
                self.error(
                    format!("{lp}.peer_group"),
                    undefined(
                        "peer group",
                        "peer groups",
                        &r.peer_group,
                        bgp.peer_group.keys(),
                    ),
                );
            }
            if let Some(j) = seen.insert(r.prefix, i) {
                self.error(
                    format!("{lp}.prefix"),
                    format!("{} is also bgp.listen_range[{j}]", r.prefix),
                );
            }
        }

        for (name, g) in &bgp.peer_group {
            let gp = format!("bgp.peer_group.{}", quote_key(name));
            self.name(&gp, "peer group", name);
            let remote_ok = self.asn(format!("{gp}.remote_as"), g.remote_as);
            self.ibgp_only(
                format!("{gp}.route_reflector_client"),
                g.route_reflector_client,
                g.remote_as,
                asn.filter(|_| remote_ok),
            );
            self.timers(&gp, g.timers);
            if let Some(a) = g.update_source {
                self.unicast(format!("{gp}.update_source"), a, true);
            }
        }

        self.neighbors(config, bgp, asn);
    }

    /// Static neighbors; `asn` is the local AS if it is usable.
    pub(super) fn neighbors(&mut self, config: &Config, bgp: &Bgp, asn: Option<u32>) {
        // Addresses of this box: the tunnel source and the template addresses.
        let own: BTreeSet<Ipv4Addr> = std::iter::once(config.hub.local_address)
            .chain(
                config
                    .virtual_template
                    .values()
                    .filter_map(|t| match t.unnumbered {
                        Unnumbered::Address(a) => Some(a),
                        Unnumbered::Tunnel(_) => None,
                    }),
            )
            .collect();

        let mut seen = BTreeMap::new();
        for (i, n) in bgp.neighbor.iter().enumerate() {
            let np = format!("bgp.neighbor[{i}]");
            self.unicast(format!("{np}.address"), n.address, false);
            if own.contains(&n.address) {
                self.error(
                    format!("{np}.address"),
                    format!("{} is this box's own address", n.address),
                );
            }
            if let Some(j) = seen.insert(n.address, i) {
                self.error(
                    format!("{np}.address"),
                    format!("{} is also bgp.neighbor[{j}]", n.address),
                );
            }
            let remote_ok = self.asn(format!("{np}.remote_as"), n.remote_as);
            self.ibgp_only(
                format!("{np}.route_reflector_client"),
                n.route_reflector_client,
                n.remote_as,
                asn.filter(|_| remote_ok),
            );
            if let Some(a) = n.next_hop {
                self.unicast(format!("{np}.next_hop"), a, false);
            }
            if let Some(a) = n.update_source {
                self.unicast(format!("{np}.update_source"), a, true);
            }
            self.timers(&np, n.timers);
        }
    }
}

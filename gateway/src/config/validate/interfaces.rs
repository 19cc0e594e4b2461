//! `[pool.*]`, `[virtual_template.*]` and a spoke's `[tunnel.*]`.

use std::net::Ipv4Addr;

use super::{Checker, undefined};
use crate::config::{Config, Unnumbered, error::quote_key};

impl Checker {
    pub(super) fn pools(&mut self, config: &Config) {
        let mut valid: Vec<(&String, u32, u32)> = Vec::new();
        for (name, pool) in &config.pool {
            let pp = format!("pool.{}", quote_key(name));
            self.name(&pp, "pool", name);
            self.unicast(format!("{pp}.first"), pool.first, false);
            self.unicast(format!("{pp}.last"), pool.last, false);
            if pool.first > pool.last {
                self.error(
                    pp.clone(),
                    format!(
                        "first ({}) is after last ({}); a pool runs from first up to last",
                        pool.first, pool.last
                    ),
                );
                continue;
            }
            let (first, last) = (u32::from(pool.first), u32::from(pool.last));
            let contains = |a: Ipv4Addr| (first..=last).contains(&u32::from(a));

            for (other, o_first, o_last) in &valid {
                if first <= *o_last && *o_first <= last {
                    self.error(
                        pp.clone(),
                        format!(
                            "{}..{} overlaps pool \"{other}\" ({}..{}); one address would be \
                             leased twice",
                            pool.first,
                            pool.last,
                            Ipv4Addr::from(*o_first),
                            Ipv4Addr::from(*o_last)
                        ),
                    );
                }
            }
            valid.push((name, first, last));

            if contains(config.hub.local_address) {
                self.error(
                    pp.clone(),
                    format!(
                        "contains {}, the hub's local_address; a spoke could be given it",
                        config.hub.local_address
                    ),
                );
            }
            for (n, template) in &config.virtual_template {
                if let Unnumbered::Address(a) = template.unnumbered
                    && contains(a)
                {
                    self.error(
                        pp.clone(),
                        format!(
                            "contains {a}, the unnumbered address of virtual_template.{n}; a \
                             spoke could be given the hub's own address"
                        ),
                    );
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    pub(super) fn interface(
        &mut self,
        path: &str,
        mtu: u16,
        tcp_adjust_mss: Option<u16>,
        nhrp_network_id: Option<u32>,
        nhrp_redirect: bool,
        nhrp_shortcut: bool,
        nhrp_holdtime: u16,
        nhrp_redirect_timeout: u16,
    ) {
        self.range(format!("{path}.mtu"), mtu, 576, 9000, " bytes");
        self.range(
            format!("{path}.nhrp_holdtime"),
            nhrp_holdtime,
            1,
            u16::MAX,
            " seconds",
        );
        self.range(
            format!("{path}.nhrp_redirect_timeout"),
            nhrp_redirect_timeout,
            1,
            300,
            " seconds",
        );
        // Against an MTU that is itself wrong, the MSS check would only add noise.
        if let Some(mss) = tcp_adjust_mss
            && (576..=9000).contains(&mtu)
        {
            let max = mtu.saturating_sub(40);
            if !(500..=max).contains(&mss) {
                self.error(
                    format!("{path}.tcp_adjust_mss"),
                    format!(
                        "{mss} is out of range; expected 500..={max} (mtu {mtu} minus 40 bytes \
                         of IP and TCP header)"
                    ),
                );
            }
        }
        if nhrp_network_id == Some(0) {
            self.error(
                format!("{path}.nhrp_network_id"),
                "0 is out of range; expected 1..=4294967295",
            );
        }
        for (key, on) in [
            ("nhrp_redirect", nhrp_redirect),
            ("nhrp_shortcut", nhrp_shortcut),
        ] {
            if on && nhrp_network_id.is_none() {
                self.error(
                    format!("{path}.{key}"),
                    "needs nhrp_network_id (IOS `ip nhrp network-id`); NHRP is off without it",
                );
            }
        }
    }

    pub(super) fn templates(&mut self, config: &Config) {
        for (n, t) in &config.virtual_template {
            let vp = format!("virtual_template.{n}");
            match t.unnumbered {
                Unnumbered::Address(a) => self.unicast(format!("{vp}.unnumbered"), a, false),
                Unnumbered::Tunnel(tn) if !config.tunnel.contains_key(&tn) => self.error(
                    format!("{vp}.unnumbered"),
                    format!(
                        "refers to Tunnel{tn}, which is not defined ([tunnel.{tn}] is missing)"
                    ),
                ),
                Unnumbered::Tunnel(_) => {}
            }
            self.interface(
                &vp,
                t.mtu,
                t.tcp_adjust_mss,
                t.nhrp_network_id,
                t.nhrp_redirect,
                t.nhrp_shortcut,
                t.nhrp_holdtime,
                t.nhrp_redirect_timeout,
            );
        }
    }

    pub(super) fn tunnels(&mut self, config: &Config) {
        for (n, t) in &config.tunnel {
            let tp = format!("tunnel.{n}");
            self.unicast(format!("{tp}.destination"), t.destination, true);
            if t.destination == config.hub.local_address {
                self.error(
                    format!("{tp}.destination"),
                    format!(
                        "{} is this box's own local_address; the destination is the hub's \
                         address",
                        t.destination
                    ),
                );
            }
            match config.ikev2.profile.get(&t.ikev2_profile) {
                None => self.error(
                    format!("{tp}.ikev2_profile"),
                    undefined(
                        "ikev2 profile",
                        "ikev2 profiles",
                        &t.ikev2_profile,
                        config.ikev2.profile.keys(),
                    ),
                ),
                Some(profile) if t.nhrp_shortcut && profile.virtual_template.is_none() => self
                    .error(
                        format!("{tp}.nhrp_shortcut"),
                        format!(
                            "shortcut tunnels are cloned from the virtual template of profile \
                             \"{}\", which has none (IOS `ip nhrp shortcut virtual-template 1`)",
                            t.ikev2_profile
                        ),
                    ),
                Some(_) => {}
            }
            self.interface(
                &tp,
                t.mtu,
                t.tcp_adjust_mss,
                t.nhrp_network_id,
                t.nhrp_redirect,
                t.nhrp_shortcut,
                t.nhrp_holdtime,
                t.nhrp_redirect_timeout,
            );
        }
    }
}

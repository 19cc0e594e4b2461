//! Checks that need more than one key: references between tables, ranges
//! IOS enforces, overlaps, role constraints. Every problem is collected, none
//! stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::Ipv4Addr;

use super::error::{Problem, quote_key};
use super::{
    AuthMethod, Bgp, BgpTimers, Config, Hub, KeyringPeer, Profile, Role, Secret, Unnumbered, Xdp,
};

/// Linux IFNAMSIZ (16) minus the terminating NUL.
const IFNAME_MAX: usize = 15;
/// `sun_path` is 108 bytes, NUL included.
const SUN_PATH_MAX: usize = 107;
/// RFC 6793: the 2-byte placeholder for a 4-byte AS, never a real AS.
const AS_TRANS: u32 = 23_456;

pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let mut v = Checker::default();
    v.hub(&config.hub);
    v.profiles(config);
    v.keyrings(config);
    v.pools(config);
    v.templates(config);
    v.tunnels(config);
    if let Some(bgp) = &config.bgp {
        v.bgp(config, bgp);
    }
    v.xdp(&config.xdp);
    v.problems
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

/// `what "name", which is not defined (defined: a, b)`.
fn undefined<'a, K: Display + 'a>(
    what: &str,
    plural: &str,
    name: impl Display,
    defined: impl Iterator<Item = &'a K>,
) -> String {
    let defined: Vec<String> = defined.map(ToString::to_string).collect();
    let list = if defined.is_empty() {
        format!("no {plural} are defined")
    } else {
        format!("defined: {}", defined.join(", "))
    };
    format!("refers to {what} \"{name}\", which is not defined ({list})")
}

/// Why `addr` cannot be a host address here, if it cannot.
fn not_unicast(addr: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    let first = addr.octets()[0];
    if addr.is_unspecified() {
        Some("is the unspecified address")
    } else if addr.is_broadcast() {
        Some("is the broadcast address")
    } else if addr.is_multicast() {
        Some("is a multicast address")
    } else if addr.is_loopback() && !allow_loopback {
        Some("is a loopback address")
    } else if first == 0 {
        Some("is in 0.0.0.0/8 (\"this network\")")
    } else if first >= 240 {
        Some("is in the reserved 240.0.0.0/4")
    } else {
        None
    }
}

impl Checker {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn unicast(&mut self, key: String, addr: Ipv4Addr, allow_loopback: bool) {
        if let Some(why) = not_unicast(addr, allow_loopback) {
            self.error(key, format!("{addr} {why}; expected a unicast address"));
        }
    }

    /// Names of profiles, keyrings, peers, pools and peer groups.
    fn name(&mut self, key: &str, what: &str, name: &str) {
        if name.is_empty() {
            self.error(key, format!("the {what} name is empty"));
        } else if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            self.error(
                key,
                format!(
                    "{what} name \"{name}\" contains {c:?}; names may only contain letters, \
                     digits, '_', '.' and '-'"
                ),
            );
        }
    }

    fn range<T: PartialOrd + Display + Copy>(
        &mut self,
        key: String,
        value: T,
        lo: T,
        hi: T,
        what: &str,
    ) {
        if value < lo || value > hi {
            self.error(
                key,
                format!("{value} is out of range; expected {lo}..={hi}{what}"),
            );
        }
    }

    fn hub(&mut self, hub: &Hub) {
        self.unicast("hub.local_address".into(), hub.local_address, true);

        let uplink = &hub.uplink;
        if uplink.is_empty() {
            self.error(
                "hub.uplink",
                "is empty; name the interface facing the spokes (e.g. \"eth0\")",
            );
        } else if uplink.len() > IFNAME_MAX {
            self.error(
                "hub.uplink",
                format!(
                    "\"{uplink}\" is {} bytes long; Linux interface names have at most \
                     {IFNAME_MAX}",
                    uplink.len()
                ),
            );
        } else if uplink == "." || uplink == ".." {
            self.error(
                "hub.uplink",
                format!("\"{uplink}\" is not a valid interface name"),
            );
        } else if let Some(c) = uplink
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
        {
            self.error(
                "hub.uplink",
                format!("\"{uplink}\" contains {c:?}, which Linux interface names cannot"),
            );
        }

        if !hub.state_dir.is_absolute() {
            self.error(
                "hub.state_dir",
                format!(
                    "\"{}\" is not an absolute path; the daemon's working directory is not a \
                     place for state",
                    hub.state_dir.display()
                ),
            );
        }
        let socket = &hub.control_socket;
        if !socket.is_absolute() {
            self.error(
                "hub.control_socket",
                format!(
                    "\"{}\" is not an absolute path; the CLI could not find it",
                    socket.display()
                ),
            );
        }
        let len = socket.as_os_str().len();
        if len > SUN_PATH_MAX {
            self.error(
                "hub.control_socket",
                format!(
                    "the path is {len} bytes long; a Unix socket path has at most {SUN_PATH_MAX}"
                ),
            );
        }
    }

    fn profiles(&mut self, config: &Config) {
        let ikev2 = &config.ikev2;
        let used_by_tunnel: BTreeSet<&str> = config
            .tunnel
            .values()
            .map(|t| t.ikev2_profile.as_str())
            .collect();
        // Which profile a match entry was first seen in.
        let mut matched_by: BTreeMap<String, &str> = BTreeMap::new();

        for (name, profile) in &ikev2.profile {
            let p = format!("ikev2.profile.{}", quote_key(name));
            self.name(&p, "profile", name);

            if profile.match_identity_remote.is_empty() {
                self.error(
                    format!("{p}.match_identity_remote"),
                    "is empty, so the profile matches no peer (e.g. [\"fqdn-domain:cisco.com\"] \
                     or [\"address:0.0.0.0/0\"])",
                );
            }
            let mut here = BTreeSet::new();
            for m in &profile.match_identity_remote {
                let text = m.to_string();
                if !here.insert(text.clone()) {
                    self.error(
                        format!("{p}.match_identity_remote"),
                        format!("lists \"{text}\" twice"),
                    );
                } else if let Some(other) = matched_by.get(&text) {
                    self.error(
                        format!("{p}.match_identity_remote"),
                        format!(
                            "\"{text}\" is also matched by profile \"{other}\"; a peer identity \
                             must select exactly one profile"
                        ),
                    );
                } else {
                    matched_by.insert(text, name);
                }
            }

            let psk_side = [
                ("authentication_local", profile.authentication_local),
                ("authentication_remote", profile.authentication_remote),
            ]
            .into_iter()
            .find(|(_, m)| *m == AuthMethod::PreShare);
            match (&profile.keyring, psk_side) {
                (Some(k), _) if !ikev2.keyring.contains_key(k) => self.error(
                    format!("{p}.keyring"),
                    undefined("keyring", "keyrings", k, ikev2.keyring.keys()),
                ),
                (None, Some((side, _))) => self.error(
                    format!("{p}.keyring"),
                    format!(
                        "is missing; {side} = \"pre-share\" needs a keyring holding the \
                         pre-shared keys (IOS `keyring local NAME`)"
                    ),
                ),
                _ => {}
            }

            if let Some(pool) = &profile.pool
                && !config.pool.contains_key(pool)
            {
                self.error(
                    format!("{p}.pool"),
                    undefined("pool", "pools", pool, config.pool.keys()),
                );
            }

            match profile.virtual_template {
                Some(n) if !config.virtual_template.contains_key(&n) => self.error(
                    format!("{p}.virtual_template"),
                    undefined(
                        "virtual_template",
                        "virtual templates",
                        n,
                        config.virtual_template.keys(),
                    ),
                ),
                None if !used_by_tunnel.contains(name.as_str()) => self.error(
                    format!("{p}.virtual_template"),
                    "is missing; peers accepted by this profile need a virtual template to \
                     clone their virtual-access from (IOS `virtual-template 1`), unless a \
                     [tunnel.N] uses the profile",
                ),
                _ => {}
            }

            if let Some(dpd) = &profile.dpd {
                self.range(
                    format!("{p}.dpd.interval"),
                    dpd.interval,
                    10,
                    3600,
                    " seconds",
                );
                self.range(format!("{p}.dpd.retry"), dpd.retry, 2, 60, " seconds");
            }

            self.proposals(&p, profile);
        }
    }

    fn proposals(&mut self, p: &str, profile: &Profile) {
        for (key, list, example) in [
            ("proposals", &profile.proposals, "aes256-sha256-modp2048"),
            ("esp_proposals", &profile.esp_proposals, "aes256gcm16"),
        ] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                self.error(
                    format!("{p}.{key}"),
                    "is empty, so nothing could be negotiated; leave the key out to \
                     accept the defaults",
                );
            }
            for (i, proposal) in list.iter().enumerate() {
                let well_formed = !proposal.is_empty()
                    && proposal
                        .split('-')
                        .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()));
                if !well_formed {
                    self.error(
                        format!("{p}.{key}[{i}]"),
                        format!(
                            "\"{proposal}\" is not a proposal; expected algorithms joined \
                             by '-', e.g. \"{example}\""
                        ),
                    );
                }
            }
        }
    }

    fn keyrings(&mut self, config: &Config) {
        let ikev2 = &config.ikev2;
        // keyring -> (side key, profile) for each pre-share side that uses it.
        let mut needs: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (name, profile) in &ikev2.profile {
            let Some(k) = &profile.keyring else { continue };
            if profile.authentication_local == AuthMethod::PreShare {
                needs
                    .entry(k)
                    .or_default()
                    .push(("pre_shared_key_local", name));
            }
            if profile.authentication_remote == AuthMethod::PreShare {
                needs
                    .entry(k)
                    .or_default()
                    .push(("pre_shared_key_remote", name));
            }
        }

        for (name, keyring) in &ikev2.keyring {
            let kr = format!("ikev2.keyring.{}", quote_key(name));
            self.name(&kr, "keyring", name);
            if keyring.peer.is_empty() {
                self.error(
                    kr.clone(),
                    "has no peers; add [ikev2.keyring.NAME.peer.PEER] with address or identity \
                     and the pre-shared keys",
                );
            }
            let needed = needs.get(name.as_str()).map_or(&[][..], Vec::as_slice);
            let mut seen_address = BTreeMap::new();
            let mut seen_identity = BTreeMap::new();

            for (peer_name, peer) in &keyring.peer {
                let pp = format!("{kr}.peer.{}", quote_key(peer_name));
                self.name(&pp, "peer", peer_name);
                match (&peer.address, &peer.identity) {
                    (Some(_), Some(_)) => self.error(
                        pp.clone(),
                        "has both address and identity; a keyring peer is found by exactly one \
                         of them",
                    ),
                    (None, None) => self.error(
                        pp.clone(),
                        "needs address (e.g. \"0.0.0.0/0\") or identity (e.g. \
                         \"fqdn:spoke1.cisco.com\")",
                    ),
                    _ => {}
                }
                if let Some(a) = peer.address
                    && let Some(other) = seen_address.insert(a, peer_name)
                {
                    self.error(
                        format!("{pp}.address"),
                        format!("{a} is also the address of peer \"{other}\" in this keyring"),
                    );
                }
                if let Some(id) = &peer.identity
                    && let Some(other) = seen_identity.insert(id.clone(), peer_name)
                {
                    self.error(
                        format!("{pp}.identity"),
                        format!(
                            "\"{id}\" is also the identity of peer \"{other}\" in this keyring"
                        ),
                    );
                }

                self.peer_keys(&pp, peer, needed);
            }
        }
    }

    /// The pre-shared keys of one keyring peer; `needed` lists the keys the
    /// profiles using the keyring require, and which profile requires them.
    fn peer_keys(&mut self, pp: &str, peer: &KeyringPeer, needed: &[(&str, &str)]) {
        for (key, secret) in [
            ("pre_shared_key_local", &peer.pre_shared_key_local),
            ("pre_shared_key_remote", &peer.pre_shared_key_remote),
        ] {
            match secret.as_ref().map(Secret::expose) {
                Some("") => self.error(format!("{pp}.{key}"), "is empty"),
                Some(s) if s.trim() != s => self.error(
                    format!("{pp}.{key}"),
                    "has leading or trailing blanks (IOS would drop them, so the peer \
                     would not agree on the key)",
                ),
                Some(_) => {}
                None => {
                    if let Some((_, profile)) = needed.iter().find(|(k, _)| *k == key) {
                        let side = key.trim_start_matches("pre_shared_key_");
                        self.error(
                            format!("{pp}.{key}"),
                            format!(
                                "is missing; profile \"{profile}\" uses this keyring \
                                 with authentication_{side} = \"pre-share\""
                            ),
                        );
                    }
                }
            }
        }
        if peer.pre_shared_key_local.is_none()
            && peer.pre_shared_key_remote.is_none()
            && needed.is_empty()
        {
            self.error(
                pp,
                "has neither pre_shared_key_local nor pre_shared_key_remote",
            );
        }
    }

    fn pools(&mut self, config: &Config) {
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
    fn interface(
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

    fn templates(&mut self, config: &Config) {
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

    fn tunnels(&mut self, config: &Config) {
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

    /// Reports an AS number no speaker may use; true if `asn` is usable.
    fn asn(&mut self, key: String, asn: u32) -> bool {
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

    fn timers(&mut self, path: &str, timers: Option<BgpTimers>) {
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

    fn ibgp_only(&mut self, key: String, on: bool, remote_as: u32, asn: Option<u32>) {
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

    fn bgp(&mut self, config: &Config, bgp: &Bgp) {
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
    fn neighbors(&mut self, config: &Config, bgp: &Bgp, asn: Option<u32>) {
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

    fn xdp(&mut self, xdp: &Xdp) {
        if xdp.ike_rate > 0 && xdp.ike_burst == 0 {
            self.error(
                "xdp.ike_burst",
                "must be at least 1 when ike_rate > 0 (0 would drop every IKE packet)",
            );
        }
    }
}

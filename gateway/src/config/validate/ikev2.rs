//! `[ikev2]`: profiles (identity matches, authentication, the keyring,
//! pool and template they name, proposals) and keyrings (peers and their
//! pre-shared keys).

use std::collections::{BTreeMap, BTreeSet};

use super::{Checker, undefined};
use crate::config::{
    AuthMethod, Config, KeyringPeer, LIFETIME_KILOBYTES_RANGE, LIFETIME_SECONDS_RANGE,
    NAT_KEEPALIVE_RANGE, Profile, Secret, error::quote_key,
};

impl Checker {
    pub(super) fn profiles(&mut self, config: &Config) {
        let ikev2 = &config.ikev2;
        self.nat_keepalive(ikev2.nat_keepalive);
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

            self.lifetimes(&p, profile);
            self.proposals(&p, profile);
        }
    }

    /// IOS `crypto ikev2 nat keepalive` takes 5..=3600 seconds; 0 is off.
    fn nat_keepalive(&mut self, seconds: u64) {
        if seconds != 0 {
            let (lo, hi) = NAT_KEEPALIVE_RANGE;
            self.range(
                "ikev2.nat_keepalive".to_string(),
                seconds,
                lo,
                hi,
                " seconds (or 0 for no keepalives)",
            );
        }
    }

    /// The IOS ranges of `lifetime` (`crypto ikev2 profile`) and `set
    /// security-association lifetime seconds|kilobytes`.
    fn lifetimes(&mut self, p: &str, profile: &Profile) {
        let (lo, hi) = LIFETIME_SECONDS_RANGE;
        for (key, value) in [
            ("lifetime", profile.lifetime),
            ("ipsec_lifetime_seconds", profile.ipsec_lifetime_seconds),
        ] {
            self.range(format!("{p}.{key}"), value, lo, hi, " seconds");
        }
        let (lo, hi) = LIFETIME_KILOBYTES_RANGE;
        self.range(
            format!("{p}.ipsec_lifetime_kilobytes"),
            profile.ipsec_lifetime_kilobytes,
            lo,
            hi,
            " kilobytes",
        );
    }

    pub(super) fn proposals(&mut self, p: &str, profile: &Profile) {
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

    pub(super) fn keyrings(&mut self, config: &Config) {
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
    pub(super) fn peer_keys(&mut self, pp: &str, peer: &KeyringPeer, needed: &[(&str, &str)]) {
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
}

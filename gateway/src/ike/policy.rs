//! The hub's IKE policy, built once from the config: profiles with their
//! identity matches, keyrings, pools and proposals. Pure data plus the
//! lookups the exchanges need (IOS `match identity remote`, keyring peers,
//! `route accept any`).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use crate::{
    config::{self, AuthMethod, Config, Identity, IdentityMatch, PfsGroup, Profile},
    ike::{
        crypto::DhGroup,
        proposal::{EspProposal, IkeProposal, ProposalError},
        sa::subnet_attribute,
        wire::{ConfigAttribute, ConfigAttributeType},
    },
    net::Ipv4Prefix,
};

/// Most prefixes `route_accept` installs for one peer: a spoke announces its
/// LANs, a handful; a CFG_REQUEST of thousands would be a routing table
/// filled by one peer.
pub const MAX_PEER_ROUTES: usize = 256;

#[derive(Clone, Debug)]
pub struct Policy {
    pub local_address: Ipv4Addr,
    pub profiles: Vec<ProfilePolicy>,
    /// Union of the profiles' IKE proposals, in profile order: IKE_SA_INIT
    /// is answered before the peer's identity (and so its profile) is known.
    pub ike_proposals: Vec<IkeProposal>,
}

#[derive(Clone, Debug)]
pub struct ProfilePolicy {
    pub name: String,
    pub matches: Vec<IdentityMatch>,
    pub local_identity: Identity,
    pub auth_local: AuthMethod,
    pub auth_remote: AuthMethod,
    pub keyring: Vec<KeyringEntry>,
    pub pool: Option<String>,
    /// First and last address of `pool`: the prefixes a peer may not claim.
    pub pool_range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub virtual_template: Option<u16>,
    pub ike_proposals: Vec<IkeProposal>,
    pub esp_proposals: Vec<EspProposal>,
    /// Pushed as INTERNAL_IP4_SUBNET with the address.
    pub route_set: Vec<Ipv4Prefix>,
    /// IOS `route accept any`: the INTERNAL_IP4_SUBNETs of the peer's
    /// CFG_REQUEST become routes via its virtual-access.
    pub route_accept: bool,
    /// IOS `dpd INTERVAL RETRY MODE`: (interval, retry) in seconds.
    pub dpd: Option<(u16, u16)>,
    /// IOS `on-demand` (the default): ask only a peer that was silent while
    /// we sent it traffic; `periodic`: ask any peer silent for the interval.
    pub dpd_on_demand: bool,
    /// Lifetimes and PFS: when the SAs of this profile are rekeyed.
    pub rekey: Rekey,
}

/// When a profile's SAs are rekeyed, with the IOS names and defaults. The
/// side whose lifetime runs out first rekeys (RFC 7296 section 2.8: each
/// end keeps its own lifetimes; nothing is negotiated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rekey {
    /// IOS `lifetime` in `crypto ikev2 profile` (default 86,400 s).
    pub ike_lifetime: Duration,
    /// IOS `set security-association lifetime seconds` (default 3,600 s).
    pub ipsec_lifetime: Duration,
    /// IOS `set security-association lifetime kilobytes` (default
    /// 4,608,000 KB).
    pub ipsec_kilobytes: u64,
    /// IOS `set pfs groupN`: a fresh Diffie-Hellman in every CHILD_SA
    /// rekey (RFC 7296 section 1.3.1); `None` (the IOS default) is none.
    pub pfs: Option<DhGroup>,
}

impl Default for Rekey {
    fn default() -> Self {
        Rekey {
            ike_lifetime: Duration::from_secs(config::IKE_LIFETIME_DEFAULT),
            ipsec_lifetime: Duration::from_secs(config::IPSEC_LIFETIME_SECONDS_DEFAULT),
            ipsec_kilobytes: config::IPSEC_LIFETIME_KILOBYTES_DEFAULT,
            pfs: None,
        }
    }
}

impl Rekey {
    /// The profile's `lifetime`, `ipsec_lifetime_seconds`,
    /// `ipsec_lifetime_kilobytes` and `pfs` (the config has checked the
    /// ranges; its defaults are the IOS ones, as `Rekey::default`).
    pub fn from_profile(profile: &Profile) -> Self {
        Rekey {
            ike_lifetime: Duration::from_secs(profile.lifetime),
            ipsec_lifetime: Duration::from_secs(profile.ipsec_lifetime_seconds),
            ipsec_kilobytes: profile.ipsec_lifetime_kilobytes,
            pfs: profile.pfs.map(|g| match g {
                PfsGroup::Modp2048 => DhGroup::Modp2048,
                PfsGroup::Ecp256 => DhGroup::Ecp256,
                PfsGroup::Ecp384 => DhGroup::Ecp384,
                PfsGroup::Ecp521 => DhGroup::Ecp521,
                PfsGroup::Curve25519 => DhGroup::Curve25519,
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeyringEntry {
    pub name: String,
    pub address: Option<Ipv4Prefix>,
    pub identity: Option<Identity>,
    pub psk_local: Option<Vec<u8>>,
    pub psk_remote: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "ikev2.profile.{profile}.{key} = \"{method}\": certificate authentication is not implemented yet; use \"pre-share\""
    )]
    Unsupported {
        profile: String,
        key: &'static str,
        method: String,
    },
    #[error("ikev2.profile.{profile}.{key}: {source}")]
    Proposal {
        profile: String,
        key: &'static str,
        #[source]
        source: ProposalError,
    },
}

impl Policy {
    #[allow(clippy::too_many_lines, reason = "one field per profile key")]
    pub fn from_config(config: &Config) -> Result<Self, PolicyError> {
        let mut profiles = Vec::new();
        let mut ike_proposals: Vec<IkeProposal> = Vec::new();
        for (name, profile) in &config.ikev2.profile {
            for (key, method) in [
                ("authentication_local", profile.authentication_local),
                ("authentication_remote", profile.authentication_remote),
            ] {
                if method != AuthMethod::PreShare {
                    return Err(PolicyError::Unsupported {
                        profile: name.clone(),
                        key,
                        method: method.as_str().to_owned(),
                    });
                }
            }
            let ike = match &profile.proposals {
                Some(list) => list
                    .iter()
                    .map(|t| IkeProposal::parse(t))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| PolicyError::Proposal {
                        profile: name.clone(),
                        key: "proposals",
                        source,
                    })?,
                None => IkeProposal::defaults(),
            };
            let esp = match &profile.esp_proposals {
                Some(list) => list
                    .iter()
                    .map(|t| EspProposal::parse(t))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| PolicyError::Proposal {
                        profile: name.clone(),
                        key: "esp_proposals",
                        source,
                    })?,
                None => EspProposal::defaults(),
            };
            for p in &ike {
                if !ike_proposals.contains(p) {
                    ike_proposals.push(p.clone());
                }
            }
            let keyring = profile
                .keyring
                .as_ref()
                .and_then(|k| config.ikev2.keyring.get(k))
                .map(|k| {
                    k.peer
                        .iter()
                        .map(|(peer, p)| KeyringEntry {
                            name: peer.clone(),
                            address: p.address,
                            identity: p.identity.clone(),
                            psk_local: p
                                .pre_shared_key_local
                                .as_ref()
                                .map(|s| s.expose().as_bytes().to_vec()),
                            psk_remote: p
                                .pre_shared_key_remote
                                .as_ref()
                                .map(|s| s.expose().as_bytes().to_vec()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            profiles.push(ProfilePolicy {
                name: name.clone(),
                matches: profile.match_identity_remote.clone(),
                local_identity: profile
                    .local_identity
                    .clone()
                    .unwrap_or(Identity::Address(config.hub.local_address)),
                auth_local: profile.authentication_local,
                auth_remote: profile.authentication_remote,
                keyring,
                pool: profile.pool.clone(),
                pool_range: profile
                    .pool
                    .as_ref()
                    .and_then(|p| config.pool.get(p))
                    .map(|p| (p.first, p.last)),
                virtual_template: profile.virtual_template,
                ike_proposals: ike,
                esp_proposals: esp,
                route_set: profile.route_set.clone(),
                route_accept: profile.route_accept,
                dpd: profile.dpd.as_ref().map(|d| (d.interval, d.retry)),
                dpd_on_demand: profile
                    .dpd
                    .as_ref()
                    .is_none_or(|d| d.mode == crate::config::DpdMode::OnDemand),
                rekey: Rekey::from_profile(profile),
            });
        }
        Ok(Policy {
            local_address: config.hub.local_address,
            profiles,
            ike_proposals,
        })
    }

    /// The profile for a peer identity (IOS: the first profile whose
    /// `match identity remote` accepts it; here in name order, most specific
    /// match first).
    pub fn profile_for(&self, peer: &Identity) -> Option<&ProfilePolicy> {
        self.profiles
            .iter()
            .filter_map(|p| {
                p.matches
                    .iter()
                    .filter_map(|m| match_rank(m, peer))
                    .max()
                    .map(|rank| (rank, p))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, p)| p)
    }
}

/// How specifically `m` matches `id` (higher = more specific), or `None`.
fn match_rank(m: &IdentityMatch, id: &Identity) -> Option<u32> {
    match (m, id) {
        (IdentityMatch::Any, _) => Some(0),
        (IdentityMatch::Fqdn(want), Identity::Fqdn(name)) => {
            want.eq_ignore_ascii_case(name).then_some(1000)
        }
        (IdentityMatch::FqdnDomain(domain), Identity::Fqdn(name)) => {
            let name = name.to_ascii_lowercase();
            let domain = domain.to_ascii_lowercase();
            (name == domain || name.ends_with(&format!(".{domain}")))
                .then(|| 100 + u32::try_from(domain.len()).unwrap_or(u32::MAX - 100))
        }
        (IdentityMatch::Address(prefix), Identity::Address(a)) => {
            prefix.contains(*a).then(|| 10 + u32::from(prefix.len))
        }
        (IdentityMatch::Email(want), Identity::Email(e)) => {
            want.eq_ignore_ascii_case(e).then_some(1000)
        }
        (IdentityMatch::EmailDomain(domain), Identity::Email(e)) => e
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
            .then(|| 100 + u32::try_from(domain.len()).unwrap_or(u32::MAX - 100)),
        (IdentityMatch::KeyId(want), Identity::KeyId(k)) => (want == k).then_some(1000),
        _ => None,
    }
}

impl ProfilePolicy {
    /// The keyring entry for a peer: one configured for its identity, else
    /// the longest address range holding its address (IOS keyring lookup).
    pub fn keyring_entry(
        &self,
        peer_id: &Identity,
        peer_address: Ipv4Addr,
    ) -> Option<&KeyringEntry> {
        self.keyring
            .iter()
            .find(|k| k.identity.as_ref() == Some(peer_id))
            .or_else(|| {
                self.keyring
                    .iter()
                    .filter(|k| k.address.is_some_and(|p| p.contains(peer_address)))
                    .max_by_key(|k| k.address.map_or(0, |p| p.len))
            })
    }

    /// The prefixes of a CFG_REQUEST's INTERNAL_IP4_SUBNETs that the profile's
    /// `route_accept` (IOS `route accept any`) installs via the peer's
    /// virtual-access; each one left out gets a log line saying why:
    ///
    /// - a zero-length value asks us for our subnets (RFC 7296 section 3.15.1
    ///   lets a request leave values empty); it is not a route, and is
    ///   skipped without a log line;
    /// - a value that is not 8 octets, a netmask with holes, or an address with
    ///   host bits set: refused, not repaired. Whether `10.1.1.1/24` means the
    ///   host or its network is a guess, and a hub routing for thousands of
    ///   spokes should not install guesses;
    /// - 0.0.0.0/0: refused. One spoke would take every destination the hub has
    ///   no better route for (the other spokes' LANs while their sessions are
    ///   down, the Internet); a default route via a spoke is for a static
    ///   route, not for what a peer claims;
    /// - a prefix overlapping the profile's pool: refused. Those addresses are
    ///   the spokes' own tunnel addresses, each routed /32 via its spoke's
    ///   virtual-access (and what `bgp listen range` accepts sessions from);
    ///   one spoke claiming them would catch the traffic of spokes not up yet;
    /// - a prefix holding the hub's tunnel source or the peer's outer address:
    ///   refused, it would route the tunnel's own ESP into the tunnel;
    /// - duplicates are dropped, and at most `MAX_PEER_ROUTES` are taken.
    pub fn accepted_routes(
        &self,
        hub: Ipv4Addr,
        peer: SocketAddrV4,
        identity: &Identity,
        attributes: &[ConfigAttribute],
    ) -> Vec<Ipv4Prefix> {
        let subnets: Vec<&ConfigAttribute> = attributes
            .iter()
            .filter(|a| a.kind == ConfigAttributeType::InternalIp4Subnet && !a.value.is_empty())
            .collect();
        if subnets.is_empty() {
            return Vec::new();
        }
        if !self.route_accept {
            tracing::debug!(%peer, %identity, profile = %self.name, count = subnets.len(), "INTERNAL_IP4_SUBNET in the CFG_REQUEST ignored: the profile has no route_accept");
            return Vec::new();
        }
        let mut routes: Vec<Ipv4Prefix> = Vec::new();
        for attribute in subnets {
            let refused = match subnet_attribute(&attribute.value) {
                Err(why) => Err(why),
                Ok(prefix) if prefix.len == 0 => Err(format!("{prefix}: a default route")),
                Ok(prefix)
                    if self.pool_range.is_some_and(|(first, last)| {
                        let (a, b) = prefix.range();
                        a <= last && first <= b
                    }) =>
                {
                    Err(format!(
                        "{prefix} overlaps the pool of profile {}",
                        self.name
                    ))
                }
                Ok(prefix) if prefix.contains(hub) => {
                    Err(format!("{prefix} holds the hub's tunnel source {hub}"))
                }
                Ok(prefix) if prefix.contains(*peer.ip()) => Err(format!(
                    "{prefix} holds the peer's own outer address {}",
                    peer.ip()
                )),
                Ok(prefix) if routes.contains(&prefix) => continue,
                Ok(_) if routes.len() >= MAX_PEER_ROUTES => {
                    Err(format!("more than {MAX_PEER_ROUTES} prefixes"))
                }
                Ok(prefix) => Ok(prefix),
            };
            match refused {
                Ok(prefix) => routes.push(prefix),
                Err(why) => tracing::warn!(
                    %peer, %identity, profile = %self.name,
                    "route accept: INTERNAL_IP4_SUBNET refused: {why}"
                ),
            }
        }
        if !routes.is_empty() {
            tracing::info!(%peer, %identity, profile = %self.name, routes = ?routes.iter().map(ToString::to_string).collect::<Vec<_>>(), "route accept: prefixes from the peer's CFG_REQUEST");
        }
        routes
    }
}

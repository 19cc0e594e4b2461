//! The configuration file: one TOML file whose tables and keys follow the
//! "Config sketch" of DESIGN.md, named so that an IOS engineer recognises
//! them (the IOS command each one replaces is in its doc comment).
//!
//! Only `[hub]` is required; every other table is optional (absent: the
//! feature is off, or its defaults apply). Unknown keys are errors, so a typo
//! never silently falls back to a default.
//!
//! [`parse`] and [`load`] deserialize, then validate the whole file and
//! report every problem found, each naming the file and the key path:
//!
//! ```text
//! examples/hub.toml: ikev2.profile.Flex_IKEv2.pool: refers to pool "X", which is not defined (defined: FlexSpokes)
//! ```

mod error;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

pub use error::{ConfigError, Problem};
pub use types::{
    AuthMethod, Datapath, DpdMode, Identity, IdentityMatch, PfsGroup, Role, Secret, Unnumbered,
    XdpMode,
};

use crate::net::Ipv4Prefix;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        origin: origin.clone(),
        source,
    })?;
    parse(&text, &origin)
}

/// Parses and validates configuration text; `origin` (usually the file name)
/// starts every error message.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
    let problems = validate::validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            problems,
        })
    }
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub hub: Hub,
    #[serde(default)]
    pub ikev2: Ikev2,
    /// `[pool.NAME]`: IOS `ip local pool NAME FIRST LAST`.
    #[serde(default)]
    pub pool: BTreeMap<String, Pool>,
    /// `[virtual_template.N]`: IOS `interface Virtual-TemplateN type tunnel`.
    #[serde(default, deserialize_with = "numbered")]
    pub virtual_template: BTreeMap<u16, VirtualTemplate>,
    /// `[tunnel.N]`: IOS `interface TunnelN` — a static tunnel to a hub (a
    /// spoke's Tunnel1 with `ip address negotiated`).
    #[serde(default, deserialize_with = "numbered")]
    pub tunnel: BTreeMap<u16, Tunnel>,
    /// `[bgp]`: IOS `router bgp ASN`. Absent: no BGP speaker.
    #[serde(default)]
    pub bgp: Option<Bgp>,
    /// `[xdp]`: the uplink filter.
    #[serde(default)]
    pub xdp: Xdp,
}

/// `[hub]`: this box.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    #[serde(default)]
    pub role: Role,
    /// Tunnel source, the address spokes dial (IOS: Loopback0).
    pub local_address: Ipv4Addr,
    /// The interface facing the spokes; XDP attaches here.
    pub uplink: String,
    #[serde(default)]
    pub datapath: Datapath,
    /// Leases and other state that must survive restarts.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/gateway")
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/gateway/gateway.sock")
}

/// `[ikev2]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ikev2 {
    /// `[ikev2.profile.NAME]`: IOS `crypto ikev2 profile NAME`.
    #[serde(default)]
    pub profile: BTreeMap<String, Profile>,
    /// `[ikev2.keyring.NAME]`: IOS `crypto ikev2 keyring NAME`.
    #[serde(default)]
    pub keyring: BTreeMap<String, Keyring>,
    /// IOS `crypto ikev2 nat keepalive SECONDS` (5..=3600; 0: off): where
    /// NAT detection finds this gateway behind a NAT, it sends a keepalive
    /// to the peer this often so that the NAT keeps the mapping the
    /// peer's traffic comes back through. Default 20 s, as strongSwan: IOS
    /// leaves it off, and then a quiet spoke behind a NAT silently loses
    /// the way back.
    #[serde(default = "default_nat_keepalive")]
    pub nat_keepalive: u64,
}

impl Default for Ikev2 {
    fn default() -> Self {
        Ikev2 {
            profile: BTreeMap::new(),
            keyring: BTreeMap::new(),
            nat_keepalive: NAT_KEEPALIVE_DEFAULT,
        }
    }
}

pub const NAT_KEEPALIVE_DEFAULT: u64 = 20;
/// IOS accepts 5..=3600 seconds; 0 turns keepalives off.
pub const NAT_KEEPALIVE_RANGE: (u64, u64) = (5, 3_600);

fn default_nat_keepalive() -> u64 {
    NAT_KEEPALIVE_DEFAULT
}

impl Ikev2 {
    /// The keepalive interval, `None` when turned off.
    pub fn nat_keepalive_interval(&self) -> Option<std::time::Duration> {
        (self.nat_keepalive > 0).then(|| std::time::Duration::from_secs(self.nat_keepalive))
    }
}

/// An IKEv2 profile: which peers it accepts and how they authenticate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// IOS `match identity remote ...`; a peer whose identity matches one
    /// entry uses this profile.
    pub match_identity_remote: Vec<IdentityMatch>,
    /// IOS `identity local ...`; absent: `address:` the hub's local address.
    #[serde(default)]
    pub local_identity: Option<Identity>,
    pub authentication_local: AuthMethod,
    pub authentication_remote: AuthMethod,
    /// IOS `keyring local NAME`.
    #[serde(default)]
    pub keyring: Option<String>,
    /// IOS `aaa authorization ...` -> `crypto ikev2 authorization policy` ->
    /// `pool NAME`: the pool handed out in the configuration payload.
    #[serde(default)]
    pub pool: Option<String>,
    /// IOS `virtual-template N`: each peer gets a virtual-access cloned from
    /// `[virtual_template.N]`.
    #[serde(default)]
    pub virtual_template: Option<u16>,
    /// IOS `dpd INTERVAL RETRY MODE`. Absent: no dead-peer detection.
    #[serde(default)]
    pub dpd: Option<Dpd>,
    /// IKE proposals (`aes256-sha256-modp2048`); absent: accept what IOS
    /// spokes and strongSwan send.
    #[serde(default)]
    pub proposals: Option<Vec<String>>,
    /// ESP proposals (`aes256gcm16`); absent: the defaults.
    #[serde(default)]
    pub esp_proposals: Option<Vec<String>>,
    /// IOS `route set access-list` / `route set interface`: prefixes pushed
    /// to the spoke in the configuration payload (INTERNAL_IP4_SUBNET), such
    /// as the hub's summary `192.168.0.0/16`.
    #[serde(default)]
    pub route_set: Vec<Ipv4Prefix>,
    /// IOS `route accept any` in the authorization policy: install the
    /// prefixes the peer sends in its configuration request
    /// (INTERNAL_IP4_SUBNET) via its virtual-access.
    #[serde(default)]
    pub route_accept: bool,
    /// IOS `lifetime SECONDS` in `crypto ikev2 profile`: the IKE SA is
    /// rekeyed before it is this old. 10..=86400 (IOS starts at 120; shorter
    /// lifetimes are for labs); default 86400 as in IOS.
    #[serde(default = "default_ike_lifetime")]
    pub lifetime: u64,
    /// IOS `set security-association lifetime seconds N` (the IPsec profile
    /// of the tunnel or virtual template): the CHILD_SAs are rekeyed before
    /// they are this old. 10..=86400 (IOS starts at 120); default 3600 as in
    /// IOS.
    #[serde(default = "default_ipsec_lifetime_seconds")]
    pub ipsec_lifetime_seconds: u64,
    /// IOS `set security-association lifetime kilobytes N`: ... or once they
    /// carried this many kilobytes, both directions counted. 2560..=4294967295;
    /// default 4608000 as in IOS.
    #[serde(default = "default_ipsec_lifetime_kilobytes")]
    pub ipsec_lifetime_kilobytes: u64,
    /// IOS `set pfs groupN`: a fresh Diffie-Hellman exchange in every
    /// CHILD_SA rekey, in this group (`"ecp256"`, `"modp2048"`,
    /// `"curve25519"` ...). Absent (the IOS default): no PFS.
    #[serde(default)]
    pub pfs: Option<PfsGroup>,
}

/// The IOS defaults of the lifetimes, and the ranges accepted: those of
/// IOS, except that lifetimes in seconds may go below its 120 s so that a
/// lab sees many rekeys in minutes (the issue's hour-long demo shortens the
/// IOS defaults a hundredfold: 36 s).
pub const IKE_LIFETIME_DEFAULT: u64 = 86_400;
pub const IPSEC_LIFETIME_SECONDS_DEFAULT: u64 = 3_600;
pub const IPSEC_LIFETIME_KILOBYTES_DEFAULT: u64 = 4_608_000;
pub const LIFETIME_SECONDS_RANGE: (u64, u64) = (10, 86_400);
pub const LIFETIME_KILOBYTES_RANGE: (u64, u64) = (2_560, 4_294_967_295);

fn default_ike_lifetime() -> u64 {
    IKE_LIFETIME_DEFAULT
}

fn default_ipsec_lifetime_seconds() -> u64 {
    IPSEC_LIFETIME_SECONDS_DEFAULT
}

fn default_ipsec_lifetime_kilobytes() -> u64 {
    IPSEC_LIFETIME_KILOBYTES_DEFAULT
}

/// IOS `dpd 30 5 on-demand`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpd {
    /// Seconds, 10..=3600.
    pub interval: u16,
    /// Seconds between retries, 2..=60.
    pub retry: u16,
    #[serde(default)]
    pub mode: DpdMode,
}

/// `[ikev2.keyring.NAME]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// `[ikev2.keyring.NAME.peer.PEER]`: IOS `peer PEER`.
    #[serde(default)]
    pub peer: BTreeMap<String, KeyringPeer>,
}

/// A keyring peer, found by address range or by identity (exactly one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringPeer {
    /// IOS `address 0.0.0.0 0.0.0.0`: `"0.0.0.0/0"`; a bare address is a /32.
    #[serde(default, deserialize_with = "host_or_prefix")]
    pub address: Option<Ipv4Prefix>,
    /// IOS `identity fqdn ...`.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// IOS `pre-shared-key local KEY`: what this end authenticates with.
    #[serde(default)]
    pub pre_shared_key_local: Option<Secret>,
    /// IOS `pre-shared-key remote KEY`: what the peer must authenticate with.
    #[serde(default)]
    pub pre_shared_key_remote: Option<Secret>,
}

/// IOS `ip local pool NAME FIRST LAST`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

/// IOS `interface Virtual-TemplateN type tunnel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualTemplate {
    /// IOS `ip unnumbered Loopback100` (`"10.1.1.1"`) or `ip unnumbered
    /// Tunnel1` (`"Tunnel1"`, on a spoke).
    pub unnumbered: Unnumbered,
    /// IOS `ip mtu`, 576..=9000; default 1400.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// IOS `ip tcp adjust-mss`, 500..=mtu-40; absent: no clamping.
    #[serde(default)]
    pub tcp_adjust_mss: Option<u16>,
    /// IOS `ip nhrp network-id`; absent: no NHRP on these interfaces.
    #[serde(default)]
    pub nhrp_network_id: Option<u32>,
    /// IOS `ip nhrp redirect` (a hub).
    #[serde(default)]
    pub nhrp_redirect: bool,
    /// IOS `ip nhrp shortcut` (a spoke).
    #[serde(default)]
    pub nhrp_shortcut: bool,
    /// IOS `ip nhrp holdtime`: seconds the shortcuts this box answers for
    /// stay valid at the requester; default 7200 as in IOS.
    #[serde(default = "default_nhrp_holdtime")]
    pub nhrp_holdtime: u16,
    /// IOS `ip nhrp redirect timeout`: at most one Traffic Indication per
    /// source and destination pair this often (seconds, default 8).
    #[serde(default = "default_nhrp_redirect_timeout")]
    pub nhrp_redirect_timeout: u16,
}

fn default_mtu() -> u16 {
    1400
}

fn default_nhrp_holdtime() -> u16 {
    7200
}

fn default_nhrp_redirect_timeout() -> u16 {
    8
}

/// IOS `interface TunnelN` on a spoke: `ip address negotiated` (always: the
/// address comes from the hub's pool), `tunnel source` = `[hub]
/// local_address`, `tunnel protection ipsec profile` -> `ikev2_profile`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// IOS `tunnel destination`: the hub's address.
    pub destination: Ipv4Addr,
    /// The `[ikev2.profile.NAME]` that protects the tunnel.
    pub ikev2_profile: String,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default)]
    pub tcp_adjust_mss: Option<u16>,
    #[serde(default)]
    pub nhrp_network_id: Option<u32>,
    #[serde(default)]
    pub nhrp_redirect: bool,
    /// IOS `ip nhrp shortcut virtual-template N`: shortcut tunnels are cloned
    /// from the profile's virtual template.
    #[serde(default)]
    pub nhrp_shortcut: bool,
    /// As on a virtual template.
    #[serde(default = "default_nhrp_holdtime")]
    pub nhrp_holdtime: u16,
    #[serde(default = "default_nhrp_redirect_timeout")]
    pub nhrp_redirect_timeout: u16,
}

/// IOS `router bgp ASN`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// 4-byte AS number, not 0 and not 23456 (AS_TRANS).
    pub asn: u32,
    /// IOS `bgp router-id`; absent: `[hub] local_address`.
    #[serde(default)]
    pub router_id: Option<Ipv4Addr>,
    /// IOS `bgp log-neighbor-changes` (on by default, as in IOS).
    #[serde(default = "yes")]
    pub log_neighbor_changes: bool,
    /// IOS `network A mask M`.
    #[serde(default)]
    pub networks: Vec<Ipv4Prefix>,
    /// IOS `aggregate-address A M [summary-only]`.
    #[serde(default)]
    pub aggregates: Vec<Aggregate>,
    /// IOS `redistribute connected` / `redistribute static`: the kernel's
    /// connected routes (protocol kernel, scope link) and static ones
    /// (protocol static or boot), ORIGIN incomplete, MED 0.
    #[serde(default)]
    pub redistribute: Vec<Redistribute>,
    /// Whether the best routes BGP learns go into the forwarding tables
    /// (the datapath, the kernel). Off: BGP reflects and shows them only,
    /// as a route reflector outside the forwarding path (IOS `table-map M
    /// filter` with a route-map denying all; FRR `bgp no-rib`). Default on.
    #[serde(default = "yes")]
    pub install_routes: bool,
    /// IOS `bgp listen limit`, 1..=10000; default 100 as in IOS.
    #[serde(default = "default_listen_limit")]
    pub listen_limit: u32,
    /// IOS `timers bgp KEEPALIVE HOLD` for every neighbor without its own.
    #[serde(default)]
    pub timers: Option<BgpTimers>,
    /// `[[bgp.listen_range]]`: IOS `bgp listen range PREFIX peer-group NAME`.
    #[serde(default)]
    pub listen_range: Vec<ListenRange>,
    /// `[bgp.peer_group.NAME]`: IOS `neighbor NAME peer-group`.
    #[serde(default)]
    pub peer_group: BTreeMap<String, PeerGroup>,
    /// `[[bgp.neighbor]]`: static neighbors (the inter-hub session).
    #[serde(default)]
    pub neighbor: Vec<Neighbor>,
}

fn yes() -> bool {
    true
}

fn default_listen_limit() -> u32 {
    100
}

/// What `redistribute` takes from the kernel's main routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redistribute {
    Connected,
    Static,
}

/// IOS `aggregate-address 192.168.0.0 255.255.0.0 summary-only`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    pub prefix: Ipv4Prefix,
    #[serde(default)]
    pub summary_only: bool,
}

/// IOS `bgp listen range 10.1.1.0/24 peer-group Spokes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenRange {
    pub prefix: Ipv4Prefix,
    pub peer_group: String,
}

/// IOS `neighbor NAME peer-group` and the `neighbor NAME ...` lines under it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerGroup {
    pub remote_as: u32,
    #[serde(default)]
    pub timers: Option<BgpTimers>,
    #[serde(default)]
    pub route_reflector_client: bool,
    /// IOS `neighbor NAME update-source`: the local address of the sessions.
    #[serde(default)]
    pub update_source: Option<Ipv4Addr>,
}

/// A static neighbor (IOS `neighbor 192.168.0.1 remote-as 65001` and its
/// options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    pub address: Ipv4Addr,
    pub remote_as: u32,
    #[serde(default)]
    pub route_reflector_client: bool,
    /// IOS `unsuppress-map ALL`: send the routes that `summary-only`
    /// aggregates suppress.
    #[serde(default)]
    pub unsuppress: bool,
    /// IOS `route-map SET_NEXT_HOP out` with `set ip next-hop A`.
    #[serde(default)]
    pub next_hop: Option<Ipv4Addr>,
    #[serde(default)]
    pub timers: Option<BgpTimers>,
    #[serde(default)]
    pub update_source: Option<Ipv4Addr>,
}

/// IOS `timers KEEPALIVE HOLD`: hold 0 (no keepalives, keepalive 0 too) or
/// 3..=65535, keepalive below hold.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpTimers {
    pub keepalive: u16,
    pub hold: u16,
}

/// `[xdp]`: the uplink filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Xdp {
    pub enabled: bool,
    pub mode: XdpMode,
    /// IKE packets per second per source address; 0: no limit.
    pub ike_rate: u32,
    /// Bucket depth, at least 1 when `ike_rate` > 0.
    pub ike_burst: u32,
    /// Spread decryption over cores: ESP with a known SPI (raw and on UDP
    /// 4500) is redirected through a CPU map to the online CPU its SPI
    /// hashes to, instead of being passed on the CPU that received it. ESP
    /// has no ports, so the NIC's RSS puts all of a peer's ESP on one queue;
    /// turn this on when few peers carry most of the traffic. Default false.
    /// The daemon refuses to start, naming this key, if the kernel refuses
    /// the CPU map. On a veth uplink fed by a local stack, UDP checksums left
    /// to offload do not survive the redirect: send ESP-in-UDP with a zero
    /// checksum there (IPsec stacks do, RFC 3948 section 2.1).
    pub spread_esp: bool,
}

impl Default for Xdp {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: XdpMode::Auto,
            ike_rate: 20,
            ike_burst: 40,
            spread_esp: false,
        }
    }
}

/// Tables keyed by an interface number (`[virtual_template.1]`): the TOML key
/// is a string, the number must be decimal in 1..=65535 without a leading
/// zero.
fn numbered<'de, D, T>(d: D) -> Result<BTreeMap<u16, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Number(u16);

    impl<'de> Deserialize<'de> for Number {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            types::from_str(d, "an interface number", |s| {
                types::parse_number(s).map(Number).ok_or_else(|| {
                    format!("\"{s}\" is not an interface number (1..=65535, no leading zero)")
                })
            })
        }
    }

    let map = BTreeMap::<Number, T>::deserialize(d)?;
    Ok(map.into_iter().map(|(Number(n), v)| (n, v)).collect())
}

fn host_or_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Prefix>, D::Error> {
    types::from_str(
        d,
        "an IPv4 address or prefix (a.b.c.d or a.b.c.d/len)",
        Ipv4Prefix::parse_host_or_prefix,
    )
    .map(Some)
}

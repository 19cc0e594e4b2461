//! The config files of the lab: the hub's and the own spokes' gateway
//! configs (plain, with BGP, with NHRP), the BGP speakers' (FRR), and the
//! strongSwan spokes' and reference hub's parameters.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use crate::strongswan::SpokeParams;

use super::{
    BgpSpec, HUB_ADDRESS, HUB_IDENTITY, HUB_LAN_GATEWAY, HUB_TUNNEL_ADDRESS, LabSpec, NhrpSpec,
    POOL_FIRST, POOL_LAST, PSK, STRONGSWAN_ADDRESS, STRONGSWAN_IDENTITY, spoke_address,
    spoke_identity, spoke_lan_prefix,
};

/// A config of the lab with the datapath the spec asks for.
pub(super) fn with_datapath(config: String, spec: &LabSpec) -> String {
    if spec.kernel_datapath {
        config.replace("datapath = \"userspace\"", "datapath = \"kernel\"")
    } else {
        config
    }
}

/// The overlay's AS (the seed documents use 65001).
pub const BGP_ASN: u32 = 65001;

/// The `[bgp]` section of the hub.
pub fn hub_bgp_section(spec: &BgpSpec) -> String {
    let mut text = format!(
        r#"
# IOS: router bgp 65001 / network 192.168.0.0 / bgp listen range
# 10.1.1.0/24 peer-group Spokes / aggregate-address 192.168.0.0
# 255.255.0.0 summary-only / neighbor Spokes route-reflector-client.
[bgp]
asn = {BGP_ASN}
networks = ["192.168.0.0/24"]
aggregates = [{{ prefix = "192.168.0.0/16", summary_only = true }}]
# Short timers: a lab, not a WAN.
timers = {{ keepalive = 5, hold = 15 }}

[[bgp.listen_range]]
prefix = "10.1.1.0/24"
peer_group = "Spokes"

[bgp.peer_group.Spokes]
remote_as = {BGP_ASN}
route_reflector_client = true
"#
    );
    if let Some(n) = spec.lan_neighbor {
        let _ = write!(
            text,
            r#"
# The DMVPN hub: neighbor route-reflector-client, unsuppress-map ALL,
# route-map SET_NEXT_HOP out (set ip next-hop 192.168.0.1).
[[bgp.neighbor]]
address = "{n}"
remote_as = {BGP_ASN}
route_reflector_client = true
unsuppress = true
next_hop = "{HUB_LAN_GATEWAY}"
"#
        );
    }
    text
}

/// The `[bgp]` section of own spoke k (IOS: router bgp 65001 / network
/// 192.168.k.0 / neighbor 10.1.1.1 remote-as 65001).
pub fn spoke_bgp_section(k: usize) -> String {
    format!(
        r#"
[bgp]
asn = {BGP_ASN}
networks = ["{lan}"]
timers = {{ keepalive = 5, hold = 15 }}

[[bgp.neighbor]]
address = "{HUB_TUNNEL_ADDRESS}"
remote_as = {BGP_ASN}
"#,
        lan = spoke_lan_prefix(k),
    )
}

/// FRR's bgpd as spoke k's BGP speaker (its tunnel is the spoke's
/// gateway without `[bgp]`): neighbor the hub's tunnel address, its LAN
/// as a `network`. Without zebra, so `no bgp network import-check`, and
/// an explicit router id (bgpd alone knows no interface address to take
/// one from).
pub fn frr_spoke_config(k: usize) -> String {
    format!(
        "hostname spoke{k}-bgpd\nlog file @DIR@/bgpd.log\n!\nrouter bgp {BGP_ASN}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 5 15\n neighbor {HUB_TUNNEL_ADDRESS} remote-as {BGP_ASN}\n address-family ipv4 unicast\n  network {lan}\n exit-address-family\n!\n",
        lan = spoke_lan_prefix(k),
        id = spoke_address(k),
    )
}

/// A DMVPN spoke's LAN that the DMVPN hub announces (inside the /16
/// aggregate, so the FlexVPN spokes reach it through the summary).
pub const DMVPN_LAN: &str = "192.168.100.0/24";

/// FRR's bgpd as the DMVPN hub on the hub's LAN at `address`: a static
/// iBGP neighbor of our hub, announcing [`DMVPN_LAN`] (the routes of its
/// DMVPN spokes during the migration).
pub fn frr_lan_hub_config(address: Ipv4Addr) -> String {
    format!(
        "hostname dmvpn-hub\nlog file @DIR@/bgpd.log\n!\nrouter bgp {BGP_ASN}\n bgp router-id {address}\n no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 5 15\n neighbor {HUB_LAN_GATEWAY} remote-as {BGP_ASN}\n address-family ipv4 unicast\n  network {DMVPN_LAN}\n exit-address-family\n!\n"
    )
}

/// The hub's config (`dir` holds its state directory and control socket).
pub fn hub_config(uplink: &str, dir: &Path) -> String {
    hub_config_with(uplink, dir, None)
}

/// The hub's config; with `bgp`, routing is by BGP: IKE pushes only the
/// tunnel addresses and does not install what spokes announce.
pub fn hub_config_with(uplink: &str, dir: &Path, bgp: Option<&BgpSpec>) -> String {
    hub_config_nhrp(uplink, dir, bgp, None)
}

/// [`hub_config_with`]; with `nhrp` and its `redirect_timeout`, the
/// template gets `nhrp_redirect_timeout` (the hub's template always has
/// `nhrp_network_id = 2` and `nhrp_redirect = true`). Without, the text is
/// that of [`hub_config_with`].
pub fn hub_config_nhrp(
    uplink: &str,
    dir: &Path,
    bgp: Option<&BgpSpec>,
    nhrp: Option<&NhrpSpec>,
) -> String {
    let redirect_timeout = nhrp
        .and_then(|n| n.redirect_timeout)
        .map_or_else(String::new, |t| {
            format!(
                "# IOS: ip nhrp redirect timeout {t}: one Traffic Indication per \
                 (source, destination) pair per {t} s.\nnhrp_redirect_timeout = {t}\n"
            )
        });
    let (route_set, route_accept) = if bgp.is_some() {
        (r#"["10.1.1.0/24"]"#, "false")
    } else {
        (r#"["192.168.0.0/16", "10.1.1.0/24"]"#, "true")
    };
    let text = format!(
        r#"# The FlexVPN lab's hub: written by integration::flex_lab.
[hub]
role = "hub"
local_address = "{HUB_ADDRESS}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

# IOS: crypto ikev2 profile Flex_IKEv2 / match identity remote any.
[ikev2.profile.Flex_IKEv2]
match_identity_remote = ["any"]
local_identity = "fqdn:{HUB_IDENTITY}"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Flex_key"
pool = "FlexSpokes"
virtual_template = 1
# Periodic, short: a spoke that vanishes without a DELETE is gone within
# about 15 s (a timed test waits for that).
dpd = {{ interval = 10, retry = 2, mode = "periodic" }}
# IOS: route set interface / route set access-list: the hub's LANs and the
# tunnel addresses, pushed to every spoke as INTERNAL_IP4_SUBNET.
route_set = {route_set}
# IOS: route accept any: install what a spoke announces (its LAN) via its
# virtual-access.
route_accept = {route_accept}

[ikev2.keyring.Flex_key.peer.Any]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

[pool.FlexSpokes]
first = "{POOL_FIRST}"
last = "{POOL_LAST}"

[virtual_template.1]
unnumbered = "{HUB_TUNNEL_ADDRESS}"
mtu = 1400
tcp_adjust_mss = 1360
nhrp_network_id = 2
nhrp_redirect = true
{redirect_timeout}
# As in the other labs: the filter on, and an IKE rate that a handful of
# spokes starting at once stays well within.
[xdp]
enabled = true
mode = "auto"
ike_rate = 50
ike_burst = 100
"#,
        state = dir.join("hub-state").display(),
        socket = dir.join("hub.sock").display(),
    );
    match bgp {
        Some(spec) => text + &hub_bgp_section(spec),
        None => text,
    }
}

/// Own spoke k's config (`dir` holds its state directory and control
/// socket). `esp_proposals`: the profile's, if given.
pub fn spoke_config(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
) -> String {
    spoke_config_with(k, uplink, dir, esp_proposals, None)
}

/// Own spoke k's config. `bgp`: `Some(true)` runs the BGP client and
/// announces the LAN by BGP only; `Some(false)` announces nothing (another
/// speaker, such as FRR, does it); `None`: the LAN goes in the CFG_REQUEST.
pub fn spoke_config_with(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
    bgp: Option<bool>,
) -> String {
    spoke_config_nhrp(k, uplink, dir, esp_proposals, bgp, None)
}

/// [`spoke_config_with`]; with `nhrp`, spoke k is an NHRP spoke: its
/// profile has `virtual_template = 1` (shortcut tunnels are cloned from
/// it, both the ones it opens and the ones opened to it), `[tunnel.1]` has
/// the NHRP lines, and `[virtual_template.1]` is unnumbered to Tunnel1 with
/// the same MTU, MSS and NHRP lines (IOS: the seed's `interface
/// Virtual-Template1 type tunnel`). Without, the text is that of
/// [`spoke_config_with`].
pub fn spoke_config_nhrp(
    k: usize,
    uplink: &str,
    dir: &Path,
    esp_proposals: Option<&[String]>,
    bgp: Option<bool>,
    nhrp: Option<&NhrpSpec>,
) -> String {
    let (profile_template, tunnel_nhrp, template_section) =
        nhrp.map_or_else(Default::default, |n| spoke_nhrp_parts(k, n));
    let route_set = if bgp.is_some() {
        String::new()
    } else {
        format!("route_set = [\"{}\"]", spoke_lan_prefix(k))
    };
    let esp = esp_proposals.map_or_else(String::new, |list| {
        let quoted: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
        format!("esp_proposals = [{}]\n", quoted.join(", "))
    });
    let text = format!(
        r#"# The FlexVPN lab's spoke {k}: written by integration::flex_lab.
[hub]
role = "spoke"
local_address = "{address}"
uplink = "{uplink}"
datapath = "userspace"
state_dir = "{state}"
control_socket = "{socket}"

# The hub (hub.lab.example) authenticates with the same key. No pool: a
# spoke takes its Tunnel1 address from the hub's. No virtual_template:
# [tunnel.1] uses the profile, and spoke-to-spoke shortcuts are not part of
# this lab.
[ikev2.profile.Flex_IKEv2]
match_identity_remote = ["any"]
local_identity = "fqdn:{identity}"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Flex_key"
{profile_template}# Announced to the hub in the CFG_REQUEST (the hub has route_accept).
{route_set}
{esp}
[ikev2.keyring.Flex_key.peer.Hub]
address = "0.0.0.0/0"
pre_shared_key_local = "{PSK}"
pre_shared_key_remote = "{PSK}"

# IOS: interface Tunnel1 / ip address negotiated / tunnel destination.
[tunnel.1]
destination = "{HUB_ADDRESS}"
ikev2_profile = "Flex_IKEv2"
mtu = 1400
tcp_adjust_mss = 1360
{tunnel_nhrp}
# The spoke's uplink filter too: it must let the hub's ESP through (spoke
# mode installs its inbound SPI) and drops anything else.
[xdp]
enabled = true
mode = "auto"
{template_section}"#,
        address = spoke_address(k),
        identity = spoke_identity(k),
        state = dir.join(format!("spoke{k}-state")).display(),
        socket = dir.join(format!("spoke{k}.sock")).display(),
    );
    if bgp == Some(true) {
        text + &spoke_bgp_section(k)
    } else {
        text
    }
}

/// The NHRP parts of spoke k's config: the profile's template line, the
/// lines of `[tunnel.1]`, and the `[virtual_template.1]` section.
fn spoke_nhrp_parts(k: usize, nhrp: &NhrpSpec) -> (String, String, String) {
    let shortcut = nhrp.shortcut(k);
    let holdtime = nhrp.holdtime;
    let lines = format!(
        "nhrp_network_id = 2\nnhrp_shortcut = {shortcut}\nnhrp_redirect = true\nnhrp_holdtime = {holdtime}\n"
    );
    let profile = "# Spoke-to-spoke shortcut tunnels (NHRP) are cloned from it.\n\
                   virtual_template = 1\n"
        .to_owned();
    let tunnel = format!(
        "# IOS: ip nhrp network-id 2 / ip nhrp shortcut virtual-template 1 / ip nhrp redirect / \
         ip nhrp holdtime {holdtime}\n{lines}"
    );
    let template = format!(
        "\n# IOS: interface Virtual-Template1 type tunnel / ip unnumbered Tunnel1 (the \
         spoke-to-spoke shortcut tunnels).\n[virtual_template.1]\nunnumbered = \"Tunnel1\"\n\
         mtu = 1400\ntcp_adjust_mss = 1360\n{lines}"
    );
    (profile, tunnel, template)
}

/// A second hub profile, `[ikev2.profile.NAME]`, for exactly the peer
/// identities `fqdn:` each of `identities` (more specific than the lab's
/// `any` profile, so it wins for them), otherwise like the lab's profile
/// (keyring, pool, template, routes) but without DPD, plus `extra` (e.g.
/// lifetimes: `lifetime = 120`). Append it to the hub's config
/// ([`FlexLab::append_config`](super::FlexLab::append_config)).
pub fn hub_profile_section(name: &str, identities: &[&str], extra: &str) -> String {
    let matches: Vec<String> = identities.iter().map(|i| format!("\"fqdn:{i}\"")).collect();
    format!(
        r#"
# Written by integration::flex_lab: a profile of its own for {ids}.
[ikev2.profile.{name}]
match_identity_remote = [{list}]
local_identity = "fqdn:{HUB_IDENTITY}"
authentication_local = "pre-share"
authentication_remote = "pre-share"
keyring = "Flex_key"
pool = "FlexSpokes"
virtual_template = 1
route_set = ["192.168.0.0/16", "10.1.1.0/24"]
route_accept = true
{extra}
"#,
        ids = identities.join(", "),
        list = matches.join(", "),
    )
}

/// `config` with `lines` put at the top of its `[ikev2.profile.PROFILE]`
/// table (right after the header, where they cannot end up in another
/// table); `None` if the config has no such table.
pub fn with_profile_lines(config: &str, profile: &str, lines: &str) -> Option<String> {
    let header = format!("[ikev2.profile.{profile}]\n");
    let at = config.find(&header)? + header.len();
    let mut lines = lines.to_owned();
    if !lines.ends_with('\n') {
        lines.push('\n');
    }
    Some(format!("{}{lines}{}", &config[..at], &config[at..]))
}

/// The strongSwan spoke: PSK, a virtual IP from the hub's pool, tunnel mode
/// to the hub's LANs and the tunnel addresses, aes256gcm16.
pub fn strongswan_spoke_params() -> SpokeParams {
    let mut p = SpokeParams::new(STRONGSWAN_ADDRESS, HUB_ADDRESS);
    STRONGSWAN_IDENTITY.clone_into(&mut p.local_id);
    HUB_IDENTITY.clone_into(&mut p.remote_id);
    PSK.clone_into(&mut p.psk);
    "aes256gcm16".clone_into(&mut p.esp_proposals);
    "192.168.0.0/16,10.1.1.0/24".clone_into(&mut p.remote_ts);
    p
}

/// The strongSwan reference hub's swanctl.conf: any spoke identity with
/// [`PSK`], tunnel mode from the hub's LAN to spoke k's, aes256gcm16.
pub fn swanctl_reference_hub(k: usize) -> String {
    format!(
        r#"# strongSwan as the hub, the reference (integration::flex_lab).
connections {{
    hub {{
        version = 2
        local_addrs = {HUB_ADDRESS}
        encap = yes
        proposals = aes256-sha256-x25519
        local {{
            auth = psk
            id = "{HUB_IDENTITY}"
        }}
        remote {{
            auth = psk
            # any spoke id
        }}
        children {{
            lans {{
                local_ts = 192.168.0.0/24
                remote_ts = {lan}
                esp_proposals = aes256gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-hub {{
        secret = "{PSK}"
    }}
}}
"#,
        lan = spoke_lan_prefix(k),
    )
}

/// The strongSwan reference spoke k: its LAN to the hub's, no virtual IP.
pub fn reference_spoke_params(k: usize) -> SpokeParams {
    let mut p = SpokeParams::new(spoke_address(k), HUB_ADDRESS);
    p.local_id = spoke_identity(k);
    HUB_IDENTITY.clone_into(&mut p.remote_id);
    PSK.clone_into(&mut p.psk);
    "aes256gcm16".clone_into(&mut p.esp_proposals);
    p.vips = None;
    p.local_ts = Some(spoke_lan_prefix(k));
    "192.168.0.0/24".clone_into(&mut p.remote_ts);
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn profile_lines_and_sections() {
        let dir = Path::new("/tmp/lab");
        let hub = hub_config("u", dir);
        let text = with_profile_lines(&hub, "Flex_IKEv2", "lifetime = 120").unwrap();
        assert!(text.contains("[ikev2.profile.Flex_IKEv2]\nlifetime = 120\nmatch_identity_remote"));
        assert_eq!(with_profile_lines(&hub, "Nope", "x = 1"), None);
        let section = hub_profile_section("Short", &["a.example", "b.example"], "lifetime = 120");
        assert!(section.contains("[ikev2.profile.Short]\n"), "{section}");
        assert!(
            section.contains(r#"match_identity_remote = ["fqdn:a.example", "fqdn:b.example"]"#),
            "{section}"
        );
        assert!(section.contains("\nlifetime = 120\n") && !section.contains("dpd"));
    }

    #[test]
    fn nhrp_configs_only_add_to_the_plain_ones() {
        let dir = Path::new("/tmp/lab");
        let bgp = BgpSpec {
            own_bgp_spokes: 2,
            lan_neighbor: None,
        };
        assert_eq!(
            hub_config_nhrp("u", dir, Some(&bgp), Some(&NhrpSpec::new(8))),
            hub_config_with("u", dir, Some(&bgp))
        );
        let nhrp = NhrpSpec {
            holdtime: 8,
            shortcut_off: vec![2],
            redirect_timeout: Some(2),
        };
        let hub = hub_config_nhrp("u", dir, Some(&bgp), Some(&nhrp));
        assert!(hub.contains("nhrp_redirect = true\n# IOS: ip nhrp redirect timeout 2"));
        assert!(hub.contains("\nnhrp_redirect_timeout = 2\n"));
        for k in 1..=2 {
            let plain = spoke_config_with(k, "u", dir, None, Some(true));
            let text = spoke_config_nhrp(k, "u", dir, None, Some(true), Some(&nhrp));
            assert!(!plain.contains("nhrp_") && !plain.contains("virtual_template ="));
            assert!(text.contains("keyring = \"Flex_key\"\n# Spoke-to-spoke"));
            assert!(text.contains("\nvirtual_template = 1\n"));
            assert!(text.contains("[virtual_template.1]\nunnumbered = \"Tunnel1\"\n"));
            assert_eq!(text.matches("nhrp_holdtime = 8\n").count(), 2);
            assert_eq!(text.matches("nhrp_network_id = 2\n").count(), 2);
            let shortcut = format!("nhrp_shortcut = {}\n", k != 2);
            assert_eq!(text.matches(&shortcut).count(), 2, "{text}");
        }
    }
}

//! strongswan.conf and swanctl.conf text for lab peers, after the recipes in
//! `shared/interop/strongswan-{hub,spoke}`.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// Plugins charon loads (`load_modular = no`). Order matters:
/// kernel-libipsec must come before kernel-netlink so that it provides the
/// IPsec backend (userspace ESP over the TUN device `ipsec0`; the machines'
/// kernels have no ESP) while kernel-netlink still does routes and addresses.
/// `kdf` is needed by 5.9.8 for key derivation; `openssl`/`gcm` provide
/// AES-GCM (package libstrongswan-standard-plugins).
pub const DEFAULT_PLUGINS: &[&str] = &[
    "random",
    "nonce",
    "openssl",
    "aes",
    "sha1",
    "sha2",
    "hmac",
    "gcm",
    "kdf",
    "gmp",
    "curve25519",
    "pem",
    "pkcs1",
    "x509",
    "pubkey",
    "revocation",
    "constraints",
    "kernel-libipsec",
    "kernel-netlink",
    "socket-default",
    "vici",
    "updown",
    "attr",
];

/// The Debian package that ships a plugin, for error messages.
pub fn plugin_package(plugin: &str) -> &'static str {
    match plugin {
        "openssl" | "gcm" | "agent" => "libstrongswan-standard-plugins",
        "kernel-libipsec" | "attr" | "updown" => "libcharon-extra-plugins",
        "curve25519" | "gcrypt" | "af-alg" | "ccm" | "chapoly" | "ctr" | "cmac" => {
            "libstrongswan-extra-plugins"
        }
        "vici" | "socket-default" => "strongswan-libcharon",
        _ => "libstrongswan",
    }
}

/// How one charon instance is set up: its strongswan.conf settings and the
/// swanctl.conf it loads.
#[derive(Clone, Debug, PartialEq)]
pub struct CharonConfig {
    /// The swanctl.conf text (connections, pools, secrets).
    pub swanctl_conf: String,
    /// Log levels per subsystem for the file log (`-1`..`4`); `default`
    /// applies to the others.
    pub log_levels: Vec<(String, i32)>,
    /// `charon.retransmit_tries`: retransmissions before giving up.
    pub retransmit_tries: u32,
    /// `charon.retransmit_timeout` in seconds.
    pub retransmit_timeout: f64,
    /// `charon.retransmit_base`: backoff factor.
    pub retransmit_base: f64,
    /// The plugin load list (see [`DEFAULT_PLUGINS`]).
    pub plugins: Vec<String>,
    /// Extra lines put verbatim inside `charon { ... }`.
    pub extra_charon: String,
}

impl CharonConfig {
    /// Defaults around the given swanctl.conf: file log with ike, cfg, knl,
    /// esp and chd at level 2 (others 1); 2 retransmissions after 1 s with a
    /// backoff of 1.4 (a dead peer is given up in about 4.4 s).
    pub fn new(swanctl_conf: impl Into<String>) -> Self {
        CharonConfig {
            swanctl_conf: swanctl_conf.into(),
            log_levels: [
                ("default", 1),
                ("ike", 2),
                ("cfg", 2),
                ("knl", 2),
                ("esp", 2),
                ("chd", 2),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            retransmit_tries: 2,
            retransmit_timeout: 1.0,
            retransmit_base: 1.4,
            plugins: DEFAULT_PLUGINS.iter().map(|&p| p.to_owned()).collect(),
            extra_charon: String::new(),
        }
    }

    /// A strongSwan spoke (see [`swanctl_spoke`]).
    pub fn spoke(params: &SpokeParams) -> Self {
        Self::new(swanctl_spoke(params))
    }

    /// A strongSwan hub, the reference hub (see [`swanctl_hub`]).
    pub fn hub(params: &HubParams) -> Self {
        Self::new(swanctl_hub(params))
    }

    /// Sets the file-log level of `subsystem` (e.g. `"enc"`, `"net"`,
    /// `"default"`).
    #[must_use]
    pub fn log_level(mut self, subsystem: &str, level: i32) -> Self {
        match self.log_levels.iter_mut().find(|(s, _)| s == subsystem) {
            Some(entry) => entry.1 = level,
            None => self.log_levels.push((subsystem.to_owned(), level)),
        }
        self
    }

    /// Sets the retransmission schedule.
    #[must_use]
    pub fn retransmit(mut self, tries: u32, timeout: f64, base: f64) -> Self {
        self.retransmit_tries = tries;
        self.retransmit_timeout = timeout;
        self.retransmit_base = base;
        self
    }

    /// Adds lines inside `charon { ... }` (e.g. `"make_before_break = yes"`).
    #[must_use]
    pub fn charon_setting(mut self, line: &str) -> Self {
        self.extra_charon.push_str(line);
        self.extra_charon.push('\n');
        self
    }

    /// The strongswan.conf for an instance living in `dir`: vici socket at
    /// `dir/charon.vici`, file log at `dir/charon.log`.
    pub fn strongswan_conf(&self, dir: &Path) -> String {
        let dir = dir.display();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Written by integration::strongswan (lab instance in {dir}).\n\
             charon {{\n    \
                 load_modular = no\n    \
                 load = {}\n    \
                 install_routes = yes\n    \
                 install_virtual_ip = yes\n    \
                 retransmit_tries = {}\n    \
                 retransmit_timeout = {}\n    \
                 retransmit_base = {}",
            self.plugins.join(" "),
            self.retransmit_tries,
            self.retransmit_timeout,
            self.retransmit_base,
        );
        for line in self.extra_charon.lines() {
            let _ = writeln!(s, "    {line}");
        }
        let _ = writeln!(
            s,
            "    plugins {{\n        \
                     vici {{\n            socket = unix://{dir}/charon.vici\n        }}\n        \
                     kernel-libipsec {{\n            load = yes\n            allow_peer_ts = no\n        }}\n        \
                     kernel-netlink {{\n            fwmark = !0x42\n        }}\n        \
                     socket-default {{\n            use_ipv6 = no\n        }}\n    \
                 }}\n    \
                 filelog {{\n        \
                     lab {{\n            \
                         path = {dir}/charon.log\n            \
                         time_format = %T\n            \
                         ike_name = yes\n            \
                         append = no\n            \
                         flush_line = yes"
        );
        for (subsystem, level) in &self.log_levels {
            let _ = writeln!(s, "            {subsystem} = {level}");
        }
        let _ = writeln!(
            s,
            "        }}\n    \
                 }}\n    \
                 syslog {{\n        daemon {{\n            default = -1\n        }}\n    }}\n\
             }}\n\
             swanctl {{\n    \
                 socket = unix://{dir}/charon.vici\n    \
                 load = pem pkcs1 pkcs8 x509 pubkey random\n\
             }}"
        );
        s
    }
}

/// How the spoke's CHILD_SA carries traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// ESP tunnel mode with traffic selectors (what a strongSwan spoke with
    /// kernel-libipsec can do).
    Tunnel,
    /// ESP transport mode, for GRE over IPsec (FlexVPN's default); with
    /// `dynamic[gre]` selectors. kernel-libipsec cannot install it (charon
    /// logs `IPsec SA: unsupported mode`): it needs kernel XFRM.
    Transport,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Tunnel => "tunnel",
            Mode::Transport => "transport",
        }
    }
}

/// swanctl's `start_action` for a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for `swanctl --initiate`.
    None,
    /// Initiate as soon as the config is loaded.
    Start,
    /// Install a trap policy; initiate on the first matching packet.
    Trap,
}

impl StartAction {
    fn as_str(self) -> &'static str {
        match self {
            StartAction::None => "none",
            StartAction::Start => "start",
            StartAction::Trap => "trap",
        }
    }
}

/// The lab's usual PSK (as in shared/interop).
pub const LAB_PSK: &str = "test-psk-0123456789";

/// A strongSwan spoke: IKEv2 initiator with PSK, asking for a virtual IP.
/// [`SpokeParams::new`] gives shared/interop's `strongswan-spoke/swanctl.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpokeParams {
    /// The connection name (`swanctl --initiate --ike NAME`).
    pub name: String,
    /// The child name (`--child NAME`).
    pub child: String,
    pub local_addr: Ipv4Addr,
    pub remote_addr: Ipv4Addr,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    /// IKE proposals, e.g. `aes256-sha256-x25519`.
    pub proposals: String,
    /// ESP proposals, e.g. `aes256gcm16`.
    pub esp_proposals: String,
    /// `vips`: `Some("0.0.0.0")` asks the hub for an address from its pool.
    pub vips: Option<String>,
    /// `encap = yes`: force UDP encapsulation.
    pub encap: bool,
    pub mode: Mode,
    /// `local_ts`; `None` leaves swanctl's default (`dynamic`: the virtual IP).
    pub local_ts: Option<String>,
    /// `remote_ts`, e.g. the hub's LAN `10.1.2.0/24`.
    pub remote_ts: String,
    pub start_action: StartAction,
    /// The IKE_SA's `rekey_time` (e.g. `60s`); `None`: swanctl's default
    /// (4 h). A rekey, not a reauthentication (`reauth_time` stays 0).
    pub ike_rekey_time: Option<String>,
    /// The CHILD_SA's `rekey_time` (e.g. `20s`); `None`: swanctl's default
    /// (1 h).
    pub child_rekey_time: Option<String>,
}

impl SpokeParams {
    /// shared/interop's spoke: `spoke`/`hub`, spoke1.example to hub.example,
    /// [`LAB_PSK`], aes256-sha256-x25519 / aes256gcm16, vips 0.0.0.0,
    /// encap, tunnel mode to 10.1.2.0/24, start_action none.
    pub fn new(local_addr: Ipv4Addr, remote_addr: Ipv4Addr) -> Self {
        SpokeParams {
            name: "spoke".to_owned(),
            child: "hub".to_owned(),
            local_addr,
            remote_addr,
            local_id: "spoke1.example".to_owned(),
            remote_id: "hub.example".to_owned(),
            psk: LAB_PSK.to_owned(),
            proposals: "aes256-sha256-x25519".to_owned(),
            esp_proposals: "aes256gcm16".to_owned(),
            vips: Some("0.0.0.0".to_owned()),
            encap: true,
            mode: Mode::Tunnel,
            local_ts: None,
            remote_ts: "10.1.2.0/24".to_owned(),
            start_action: StartAction::None,
            ike_rekey_time: None,
            child_rekey_time: None,
        }
    }

    /// GRE over IPsec transport mode: `mode = transport`, both selectors
    /// `dynamic[gre]` (GRE between the outer addresses) and no virtual IP
    /// (it would replace `dynamic` in the local selector).
    #[must_use]
    pub fn gre_transport(mut self) -> Self {
        self.mode = Mode::Transport;
        self.local_ts = Some("dynamic[gre]".to_owned());
        "dynamic[gre]".clone_into(&mut self.remote_ts);
        self.vips = None;
        self
    }
}

/// swanctl.conf text for a spoke.
pub fn swanctl_spoke(p: &SpokeParams) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "connections {{\n    {name} {{\n        \
             version = 2\n        \
             local_addrs = {local}\n        \
             remote_addrs = {remote}",
        name = p.name,
        local = p.local_addr,
        remote = p.remote_addr,
    );
    if let Some(vips) = &p.vips {
        let _ = writeln!(s, "        vips = {vips}");
    }
    if let Some(rekey) = &p.ike_rekey_time {
        let _ = writeln!(s, "        rekey_time = {rekey}");
    }
    let _ = writeln!(
        s,
        "        encap = {encap}\n        \
             proposals = {proposals}\n        \
             local {{\n            auth = psk\n            id = {local_id}\n        }}\n        \
             remote {{\n            auth = psk\n            id = {remote_id}\n        }}\n        \
             children {{\n            {child} {{\n                \
                 mode = {mode}",
        encap = yes_no(p.encap),
        proposals = p.proposals,
        local_id = quote(&p.local_id),
        remote_id = quote(&p.remote_id),
        child = p.child,
        mode = p.mode.as_str(),
    );
    if let Some(local_ts) = &p.local_ts {
        let _ = writeln!(s, "                local_ts = {local_ts}");
    }
    if let Some(rekey) = &p.child_rekey_time {
        let _ = writeln!(s, "                rekey_time = {rekey}");
    }
    let _ = writeln!(
        s,
        "                remote_ts = {remote_ts}\n                \
                         esp_proposals = {esp}\n                \
                         start_action = {start}\n            \
                     }}\n        \
                 }}\n    \
             }}\n\
         }}\n\
         secrets {{\n    ike-{name} {{\n        \
             id-1 = {remote_id}\n        \
             id-2 = {local_id}\n        \
             secret = {psk}\n    \
         }}\n\
         }}",
        remote_ts = p.remote_ts,
        esp = p.esp_proposals,
        start = p.start_action.as_str(),
        name = p.name,
        remote_id = quote(&p.remote_id),
        local_id = quote(&p.local_id),
        psk = quote(&p.psk),
    );
    s
}

/// A strongSwan hub: IKEv2 responder with PSK for any spoke identity, a pool
/// of virtual IPs, tunnel mode to its LAN. [`HubParams::new`] gives
/// shared/interop's `strongswan-hub/swanctl.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubParams {
    /// The connection name.
    pub name: String,
    /// The child name.
    pub child: String,
    pub local_addr: Ipv4Addr,
    pub local_id: String,
    /// One PSK for every spoke.
    pub psk: String,
    pub proposals: String,
    pub esp_proposals: String,
    /// `local_ts`: the hub's LAN.
    pub local_ts: String,
    pub encap: bool,
    pub pool_name: String,
    /// e.g. `10.1.1.100-10.1.1.254`.
    pub pool_addrs: String,
    /// A DNS server handed out with the address, if any.
    pub dns: Option<Ipv4Addr>,
}

impl HubParams {
    /// shared/interop's hub: `hub`/`spokes`, hub.example, [`LAB_PSK`],
    /// aes256-sha256-x25519 and aes128-sha256-modp2048 / aes256gcm16 and
    /// aes128-sha256, LAN 10.1.2.0/24, pool `spokes` 10.1.1.100-10.1.1.254,
    /// DNS 10.1.2.53.
    pub fn new(local_addr: Ipv4Addr) -> Self {
        HubParams {
            name: "hub".to_owned(),
            child: "spokes".to_owned(),
            local_addr,
            local_id: "hub.example".to_owned(),
            psk: LAB_PSK.to_owned(),
            proposals: "aes256-sha256-x25519, aes128-sha256-modp2048".to_owned(),
            esp_proposals: "aes256gcm16, aes128-sha256".to_owned(),
            local_ts: "10.1.2.0/24".to_owned(),
            encap: true,
            pool_name: "spokes".to_owned(),
            pool_addrs: "10.1.1.100-10.1.1.254".to_owned(),
            dns: Some(Ipv4Addr::new(10, 1, 2, 53)),
        }
    }
}

/// swanctl.conf text for a hub.
pub fn swanctl_hub(p: &HubParams) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "connections {{\n    {name} {{\n        \
             version = 2\n        \
             local_addrs = {local}\n        \
             pools = {pool}\n        \
             encap = {encap}\n        \
             proposals = {proposals}\n        \
             local {{\n            auth = psk\n            id = {local_id}\n        }}\n        \
             remote {{\n            auth = psk\n            # any spoke id\n        }}\n        \
             children {{\n            {child} {{\n                \
                 local_ts = {local_ts}\n                \
                 esp_proposals = {esp}\n            \
             }}\n        \
             }}\n    \
         }}\n\
         }}\n\
         pools {{\n    {pool} {{\n        addrs = {addrs}",
        name = p.name,
        local = p.local_addr,
        pool = p.pool_name,
        encap = yes_no(p.encap),
        proposals = p.proposals,
        local_id = quote(&p.local_id),
        child = p.child,
        local_ts = p.local_ts,
        esp = p.esp_proposals,
        addrs = p.pool_addrs,
    );
    if let Some(dns) = p.dns {
        let _ = writeln!(s, "        dns = {dns}");
    }
    let _ = writeln!(
        s,
        "    }}\n\
         }}\n\
         secrets {{\n    ike-{name} {{\n        secret = {psk}\n    }}\n\
         }}",
        name = p.name,
        psk = quote(&p.psk),
    );
    s
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A double-quoted swanctl.conf string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Non-empty, non-comment lines, trimmed, with `id = "x"` style quotes
    /// removed: to compare with shared/interop's hand-written files.
    fn significant(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.replace('"', ""))
            .collect()
    }

    #[test]
    fn spoke_preset_is_the_interop_spoke() {
        let p = SpokeParams::new(Ipv4Addr::new(172, 25, 1, 2), Ipv4Addr::new(172, 25, 1, 1));
        let text = swanctl_spoke(&p);
        // shared/interop/strongswan-spoke/swanctl.conf, plus the explicit
        // `mode = tunnel` (swanctl's default).
        let expected = "connections {\n spoke {\n version = 2\n local_addrs = 172.25.1.2\n\
            remote_addrs = 172.25.1.1\n vips = 0.0.0.0\n encap = yes\n\
            proposals = aes256-sha256-x25519\n local {\n auth = psk\n id = spoke1.example\n }\n\
            remote {\n auth = psk\n id = hub.example\n }\n children {\n hub {\n mode = tunnel\n\
            remote_ts = 10.1.2.0/24\n esp_proposals = aes256gcm16\n start_action = none\n }\n }\n }\n}\n\
            secrets {\n ike-spoke {\n id-1 = hub.example\n id-2 = spoke1.example\n\
            secret = test-psk-0123456789\n }\n}\n";
        assert_eq!(significant(&text), significant(expected));
    }

    #[test]
    fn gre_transport_spoke() {
        let p = SpokeParams::new(Ipv4Addr::new(172, 25, 1, 2), Ipv4Addr::new(172, 25, 1, 1))
            .gre_transport();
        let text = swanctl_spoke(&p);
        let lines = significant(&text);
        for want in [
            "mode = transport",
            "local_ts = dynamic[gre]",
            "remote_ts = dynamic[gre]",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} in\n{text}");
        }
        assert!(!text.contains("vips"), "{text}");
    }

    #[test]
    fn rekey_times_go_to_the_ike_sa_and_the_child() {
        let mut p = SpokeParams::new(Ipv4Addr::new(172, 25, 1, 2), Ipv4Addr::new(172, 25, 1, 1));
        assert!(!swanctl_spoke(&p).contains("rekey_time"));
        p.ike_rekey_time = Some("60s".to_owned());
        p.child_rekey_time = Some("20s".to_owned());
        let text = swanctl_spoke(&p);
        assert!(text.contains("\n        rekey_time = 60s\n"), "{text}");
        assert!(
            text.contains("\n                rekey_time = 20s\n"),
            "{text}"
        );
        let ike = text.find("rekey_time = 60s").unwrap();
        let child = text.find("rekey_time = 20s").unwrap();
        assert!(ike < text.find("children").unwrap() && child > text.find("children").unwrap());
    }

    #[test]
    fn hub_preset_is_the_interop_hub() {
        let text = swanctl_hub(&HubParams::new(Ipv4Addr::new(172, 25, 1, 1)));
        let expected = "connections {\n hub {\n version = 2\n local_addrs = 172.25.1.1\n\
            pools = spokes\n encap = yes\n proposals = aes256-sha256-x25519, aes128-sha256-modp2048\n\
            local {\n auth = psk\n id = hub.example\n }\n remote {\n auth = psk\n }\n\
            children {\n spokes {\n local_ts = 10.1.2.0/24\n esp_proposals = aes256gcm16, aes128-sha256\n\
            }\n }\n }\n}\npools {\n spokes {\n addrs = 10.1.1.100-10.1.1.254\n dns = 10.1.2.53\n }\n}\n\
            secrets {\n ike-hub {\n secret = test-psk-0123456789\n }\n}\n";
        assert_eq!(significant(&text), significant(expected));
    }

    #[test]
    fn strings_are_quoted() {
        let mut p = SpokeParams::new(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        p.psk = r#"a "b" \c"#.to_owned();
        p.local_id = "C=CH, O=Org, CN=spoke".to_owned();
        let text = swanctl_spoke(&p);
        assert!(text.contains(r#"secret = "a \"b\" \\c""#), "{text}");
        assert!(text.contains(r#"id = "C=CH, O=Org, CN=spoke""#), "{text}");
    }

    #[test]
    fn strongswan_conf_settings() {
        let conf = CharonConfig::new("")
            .log_level("enc", 3)
            .log_level("ike", 1)
            .retransmit(3, 0.5, 2.0)
            .charon_setting("make_before_break = yes");
        let text = conf.strongswan_conf(Path::new("/tmp/x"));
        let lines = significant(&text);
        let has = |want: &str| assert!(lines.iter().any(|l| l == want), "{want} in\n{text}");
        has("socket = unix:///tmp/x/charon.vici");
        has("path = /tmp/x/charon.log");
        has("retransmit_tries = 3");
        has("retransmit_timeout = 0.5");
        has("retransmit_base = 2");
        has("make_before_break = yes");
        has("enc = 3");
        has("ike = 1");
        has("chd = 2");
        has("load_modular = no");
        let load = lines
            .iter()
            .find(|l| l.starts_with("load = random"))
            .unwrap();
        let pos = |p: &str| load.split(' ').position(|w| w == p).unwrap();
        assert!(pos("kernel-libipsec") < pos("kernel-netlink"), "{load}");
        assert!(pos("kdf") > 0 && pos("gcm") > 0);
        // Balanced braces.
        assert_eq!(
            text.matches('{').count(),
            text.matches('}').count(),
            "{text}"
        );
    }

    #[test]
    fn default_retransmits() {
        let text = CharonConfig::new("").strongswan_conf(Path::new("/d"));
        assert!(text.contains("retransmit_tries = 2\n"), "{text}");
        assert!(text.contains("retransmit_timeout = 1\n"), "{text}");
        assert!(text.contains("retransmit_base = 1.4\n"), "{text}");
    }
}

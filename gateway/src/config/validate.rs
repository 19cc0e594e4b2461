//! Checks that need more than one key: references between tables, ranges
//! IOS enforces, overlaps, role constraints. Every problem is collected, none
//! stops the others. By section: `ikev2` (profiles, keyrings), `interfaces`
//! (pools, virtual templates, spoke tunnels), `bgp`; the hub and XDP here.

mod bgp;
mod ikev2;
mod interfaces;

use std::fmt::Display;
use std::net::Ipv4Addr;

use super::error::Problem;
use super::{Config, Hub, Xdp};

/// Linux IFNAMSIZ (16) minus the terminating NUL.
const IFNAME_MAX: usize = 15;
/// `sun_path` is 108 bytes, NUL included.
const SUN_PATH_MAX: usize = 107;

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

    fn xdp(&mut self, xdp: &Xdp) {
        if xdp.ike_rate > 0 && xdp.ike_burst == 0 {
            self.error(
                "xdp.ike_burst",
                "must be at least 1 when ike_rate > 0 (0 would drop every IKE packet)",
            );
        }
    }
}

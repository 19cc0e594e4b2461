//! Value types of the configuration: prefixes, IKE identities, secrets and the
//! string choices. Each one parses from the string form shown in DESIGN.md
//! ("Config sketch") and serializes back to it, so `show running-config`
//! prints what the operator wrote.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::net::Ipv4Prefix;
pub(crate) use crate::net::from_str;

/// An IKE identity this end presents or a keyring peer is known by:
/// `fqdn:hub.cisco.com`, `address:172.25.1.1`, `email:ops@cisco.com`,
/// `key-id:spoke1` (IOS `identity fqdn|address|email|key-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    Fqdn(String),
    Address(Ipv4Addr),
    Email(String),
    KeyId(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fqdn(n) => write!(f, "fqdn:{n}"),
            Self::Address(a) => write!(f, "address:{a}"),
            Self::Email(e) => write!(f, "email:{e}"),
            Self::KeyId(k) => write!(f, "key-id:{k}"),
        }
    }
}

impl FromStr for Identity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, value) = split_kind(s, IDENTITY_FORMS)?;
        match kind {
            "fqdn" => check_fqdn(value).map(|()| Self::Fqdn(value.to_owned())),
            "address" => value
                .parse()
                .map(Self::Address)
                .map_err(|_| format!("\"{s}\": \"{value}\" is not an IPv4 address")),
            "email" => check_email(value).map(|()| Self::Email(value.to_owned())),
            "key-id" => check_key_id(value).map(|()| Self::KeyId(value.to_owned())),
            _ => Err(unknown_kind(s, kind, IDENTITY_FORMS)),
        }
        .map_err(|e| {
            if e.starts_with('"') {
                e
            } else {
                format!("\"{s}\": {e}")
            }
        })
    }
}

const IDENTITY_FORMS: &str = "fqdn:NAME, address:A.B.C.D, email:USER@DOMAIN or key-id:ID";

/// What a profile's `match_identity_remote` entry accepts (IOS `match
/// identity remote ...`): `fqdn-domain:cisco.com`, `fqdn:spoke1.cisco.com`,
/// `address:10.0.0.0/8`, `address:172.16.1.1`, `email:x@y`,
/// `email-domain:y`, `key-id:K`, or `any`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityMatch {
    Any,
    Fqdn(String),
    FqdnDomain(String),
    Address(Ipv4Prefix),
    Email(String),
    EmailDomain(String),
    KeyId(String),
}

const MATCH_FORMS: &str = "fqdn-domain:DOMAIN, fqdn:NAME, address:A.B.C.D/LEN, address:A.B.C.D, \
                           email:USER@DOMAIN, email-domain:DOMAIN, key-id:ID or any";

impl fmt::Display for IdentityMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Fqdn(n) => write!(f, "fqdn:{n}"),
            Self::FqdnDomain(d) => write!(f, "fqdn-domain:{d}"),
            Self::Address(p) => write!(f, "address:{p}"),
            Self::Email(e) => write!(f, "email:{e}"),
            Self::EmailDomain(d) => write!(f, "email-domain:{d}"),
            Self::KeyId(k) => write!(f, "key-id:{k}"),
        }
    }
}

impl FromStr for IdentityMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "any" {
            return Ok(Self::Any);
        }
        let (kind, value) = split_kind(s, MATCH_FORMS)?;
        match kind {
            "fqdn" => check_fqdn(value).map(|()| Self::Fqdn(value.to_owned())),
            "fqdn-domain" => check_domain(value).map(|()| Self::FqdnDomain(value.to_owned())),
            "address" => Ipv4Prefix::parse_host_or_prefix(value).map(Self::Address),
            "email" => check_email(value).map(|()| Self::Email(value.to_owned())),
            "email-domain" => check_domain(value).map(|()| Self::EmailDomain(value.to_owned())),
            "key-id" => check_key_id(value).map(|()| Self::KeyId(value.to_owned())),
            _ => Err(unknown_kind(s, kind, MATCH_FORMS)),
        }
        .map_err(|e| {
            if e.starts_with('"') {
                e
            } else {
                format!("\"{s}\": {e}")
            }
        })
    }
}

fn split_kind<'a>(s: &'a str, forms: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once(':')
        .ok_or_else(|| format!("\"{s}\" is not an identity; expected {forms}"))
}

fn unknown_kind(s: &str, kind: &str, forms: &str) -> String {
    format!("\"{s}\": unknown identity type \"{kind}\"; expected {forms}")
}

/// A host name: dot-separated labels of letters, digits, `-` and `_`, each
/// 1..=63 characters and not starting or ending with `-`; 253 characters at
/// most, no trailing dot.
fn check_fqdn(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.len() > 253 {
        return Err(format!(
            "the name is {} characters long (at most 253)",
            name.len()
        ));
    }
    if name.ends_with('.') {
        return Err(format!(
            "\"{name}\" ends with a dot; write \"{}\"",
            name.trim_end_matches('.')
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "\"{name}\" has an empty label (\"..\" or a leading dot)"
            ));
        }
        if label.len() > 63 {
            return Err(format!("label \"{label}\" is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "\"{name}\" contains {c:?}; a host name has letters, digits, '-', '_' and dots"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label \"{label}\" starts or ends with '-'"));
        }
    }
    Ok(())
}

/// A domain suffix (`cisco.com`); a leading dot is refused with the fix.
fn check_domain(domain: &str) -> Result<(), String> {
    if let Some(rest) = domain.strip_prefix('.') {
        return Err(format!(
            "write the domain without the leading dot: \"{rest}\""
        ));
    }
    check_fqdn(domain)
}

fn check_email(email: &str) -> Result<(), String> {
    let Some((user, domain)) = email.rsplit_once('@') else {
        return Err(format!(
            "\"{email}\" is not an e-mail address (USER@DOMAIN)"
        ));
    };
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("\"{email}\": the user part is empty or has blanks"));
    }
    check_fqdn(domain)
}

fn check_key_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the key-id is empty".to_owned());
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "key-id {id:?} contains blanks or control characters"
        ));
    }
    Ok(())
}

macro_rules! string_serde {
    ($($t:ty: $expecting:literal),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                from_str(d, $expecting, str::parse)
            }
        }
    )*};
}

string_serde!(
    Identity: "an identity (fqdn:NAME, address:A.B.C.D, email:USER@DOMAIN or key-id:ID)",
    PfsGroup: "a Diffie-Hellman group (modp2048, ecp256, ecp384, ecp521 or curve25519)",
    IdentityMatch: "an identity match (fqdn-domain:DOMAIN, fqdn:NAME, address:A.B.C.D/LEN, ...)",
    Unnumbered: "an IPv4 address or a tunnel (\"Tunnel1\")"
);

/// IOS `set pfs groupN`: the Diffie-Hellman group of the KE payload in a
/// CHILD_SA rekey (RFC 7296 section 1.3.1), spelled as in the proposals
/// (`ecp256`; `x25519` is another name of `curve25519`). IOS `group14` is
/// `modp2048`, `group19` `ecp256`, `group20` `ecp384`, `group21` `ecp521`,
/// `group31` `curve25519`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PfsGroup {
    Modp2048,
    Ecp256,
    Ecp384,
    Ecp521,
    Curve25519,
}

impl PfsGroup {
    /// The spelling in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modp2048 => "modp2048",
            Self::Ecp256 => "ecp256",
            Self::Ecp384 => "ecp384",
            Self::Ecp521 => "ecp521",
            Self::Curve25519 => "curve25519",
        }
    }
}

impl fmt::Display for PfsGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PfsGroup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "modp2048" => Self::Modp2048,
            "ecp256" => Self::Ecp256,
            "ecp384" => Self::Ecp384,
            "ecp521" => Self::Ecp521,
            "curve25519" | "x25519" => Self::Curve25519,
            _ => {
                return Err(format!(
                    "unknown Diffie-Hellman group \"{s}\", expected one of \"modp2048\", \
                     \"ecp256\", \"ecp384\", \"ecp521\", \"curve25519\" (\"x25519\"); leave \
                     the key out for no PFS"
                ));
            }
        })
    }
}

/// A pre-shared key. Its `Debug` and `Serialize` print `<redacted>`, so the
/// key never reaches a log line or `show running-config`; `expose()` is the
/// one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Where a template's interfaces take their address from (IOS `ip
/// unnumbered`): an address the hub owns (`"10.1.1.1"`, the hub's
/// Loopback100), or a static tunnel (`"Tunnel1"`, a spoke whose Tunnel1 has
/// the address negotiated from the hub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnumbered {
    Address(Ipv4Addr),
    Tunnel(u16),
}

impl fmt::Display for Unnumbered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(a) => a.fmt(f),
            Self::Tunnel(n) => write!(f, "Tunnel{n}"),
        }
    }
}

impl FromStr for Unnumbered {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse() {
            return Ok(Self::Address(a));
        }
        let number = s
            .get(..6)
            .filter(|p| p.eq_ignore_ascii_case("tunnel"))
            .and_then(|_| parse_number(&s[6..]));
        number.map(Self::Tunnel).ok_or_else(|| {
            format!("\"{s}\" is neither an IPv4 address (\"10.1.1.1\") nor a tunnel (\"Tunnel1\")")
        })
    }
}

/// A decimal interface or template number in 1..=65535, without leading zeros
/// (so that "1" and "01" cannot name two tables).
pub(crate) fn parse_number(s: &str) -> Option<u16> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A string choice: an enum spelled in the file as the given strings.
/// Unknown strings and wrong types are reported with the accepted spellings.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(#[$fmeta:meta])* $first:ident = $first_text:literal
            $(, $(#[$vmeta:meta])* $variant:ident = $text:literal)* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $(#[$fmeta])* $first,
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The spelling in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    Self::$first => $first_text,
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const EXPECTED: &str =
                    concat!("one of \"", $first_text, "\"", $(", \"", $text, "\"",)*);
                from_str(d, EXPECTED, |s| match s {
                    $first_text => Ok(Self::$first),
                    $($text => Ok(Self::$variant),)*
                    _ => Err(format!("unknown value \"{s}\", expected {EXPECTED}")),
                })
            }
        }
    };
}

choice! {
    /// `[hub] role`.
    #[derive(Default)]
    pub enum Role {
        #[default]
        Hub = "hub",
        Spoke = "spoke",
    }
}

choice! {
    /// `[hub] datapath`: `auto` picks the kernel datapath when the kernel has
    /// ESP and GRE, the userspace one otherwise.
    #[derive(Default)]
    pub enum Datapath {
        #[default]
        Auto = "auto",
        Kernel = "kernel",
        Userspace = "userspace",
    }
}

choice! {
    /// IOS `authentication local|remote pre-share|rsa-sig|ecdsa-sig`.
    pub enum AuthMethod {
        PreShare = "pre-share",
        RsaSig = "rsa-sig",
        EcdsaSig = "ecdsa-sig",
    }
}

choice! {
    /// IOS `dpd <interval> <retry> on-demand|periodic`; on-demand is the IOS
    /// default.
    #[derive(Default)]
    pub enum DpdMode {
        Periodic = "periodic",
        #[default]
        OnDemand = "on-demand",
    }
}

choice! {
    /// `[xdp] mode`: `auto` tries native (driver) mode and falls back to skb
    /// (generic) mode.
    #[derive(Default)]
    pub enum XdpMode {
        #[default]
        Auto = "auto",
        Native = "native",
        Skb = "skb",
    }
}

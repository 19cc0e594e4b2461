//! Address pools: `show ip local pool`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One lease, for `show ip local pool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReport {
    pub address: Ipv4Addr,
    pub identity: String,
    /// `active` while a session holds the address, `idle` when the spoke
    /// is gone (the address stays bound to its identity).
    pub state: String,
    /// Unix seconds: active since (connected), or idle since (released).
    pub since: u64,
}

/// One pool, for `show ip local pool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReport {
    pub name: String,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    /// Addresses in the pool: `in_use + idle + free`.
    pub size: u64,
    /// Active leases.
    pub in_use: u64,
    /// Idle leases: bound to their identity, reclaimable when the pool runs out.
    pub idle: u64,
    /// Addresses bound to no identity.
    pub free: u64,
    /// In address order.
    pub leases: Vec<LeaseReport>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_what_the_daemon_has_always_sent() {
        let pool = PoolReport {
            name: "FlexSpokes".into(),
            first: Ipv4Addr::new(10, 1, 1, 100),
            last: Ipv4Addr::new(10, 1, 1, 254),
            size: 155,
            in_use: 1,
            idle: 1,
            free: 153,
            leases: vec![
                LeaseReport {
                    address: Ipv4Addr::new(10, 1, 1, 100),
                    identity: "fqdn:spoke1.cisco.com".into(),
                    state: "active".into(),
                    since: 1_767_225_600,
                },
                LeaseReport {
                    address: Ipv4Addr::new(10, 1, 1, 101),
                    identity: "fqdn:spoke2.cisco.com".into(),
                    state: "idle".into(),
                    since: 1_767_225_000,
                },
            ],
        };
        let json = concat!(
            r#"{"name":"FlexSpokes","first":"10.1.1.100","last":"10.1.1.254","#,
            r#""size":155,"in_use":1,"idle":1,"free":153,"leases":["#,
            r#"{"address":"10.1.1.100","identity":"fqdn:spoke1.cisco.com","#,
            r#""state":"active","since":1767225600},"#,
            r#"{"address":"10.1.1.101","identity":"fqdn:spoke2.cisco.com","#,
            r#""state":"idle","since":1767225000}]}"#,
        );
        assert_eq!(serde_json::to_string(&pool).unwrap(), json);
        assert_eq!(serde_json::from_str::<PoolReport>(json).unwrap(), pool);
    }
}

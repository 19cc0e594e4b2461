//! A spoke's tunnels to its hubs: `show interfaces tunnel`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One `[tunnel.N]` of a spoke: its session to the hub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelStatus {
    /// `Tunnel1`.
    pub tunnel: String,
    /// The hub's address (`tunnel destination`).
    pub hub: String,
    /// `down`, `connecting` or `up`.
    pub state: String,
    /// Negotiated from the hub's pool (IOS `ip address negotiated`).
    pub address: Option<Ipv4Addr>,
    /// Prefixes the hub pushed, routed into the tunnel.
    pub routes: Vec<String>,
    pub spi_in: Option<u32>,
    pub spi_out: Option<u32>,
    pub up_seconds: u64,
    /// Dials since the start.
    pub connects: u32,
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_is_what_the_daemon_has_always_sent() {
        let up = TunnelStatus {
            tunnel: "Tunnel1".into(),
            hub: "172.25.1.1".into(),
            state: "up".into(),
            address: Some(Ipv4Addr::new(10, 1, 1, 100)),
            routes: vec!["192.168.0.0/16".into()],
            spi_in: Some(0xc000_0001),
            spi_out: Some(0x1234),
            up_seconds: 42,
            connects: 2,
            last_error: None,
        };
        let json = concat!(
            r#"{"tunnel":"Tunnel1","hub":"172.25.1.1","state":"up","#,
            r#""address":"10.1.1.100","routes":["192.168.0.0/16"],"#,
            r#""spi_in":3221225473,"spi_out":4660,"up_seconds":42,"connects":2,"#,
            r#""last_error":null}"#,
        );
        assert_eq!(serde_json::to_string(&up).unwrap(), json);
        assert_eq!(serde_json::from_str::<TunnelStatus>(json).unwrap(), up);
    }
}

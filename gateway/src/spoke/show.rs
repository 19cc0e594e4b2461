//! `show interfaces tunnel` as text: a spoke's tunnels to its hubs.

use std::fmt::Write as _;

use gateway_report::tunnels::TunnelStatus;

/// `show interfaces tunnel` as text, one block per tunnel.
pub fn render_tunnels(tunnels: &[TunnelStatus]) -> String {
    if tunnels.is_empty() {
        return "No tunnels configured ([tunnel.N] on a spoke).\n".to_owned();
    }
    let mut out = String::new();
    for t in tunnels {
        let line = if t.state == "up" { "up" } else { "down" };
        let _ = writeln!(
            out,
            "{} is up, line protocol is {line} ({})",
            t.tunnel, t.state
        );
        let _ = writeln!(
            out,
            "  Tunnel destination {}, address {} (negotiated)",
            t.hub,
            t.address
                .map_or_else(|| "none".to_owned(), |a| a.to_string())
        );
        if let (Some(i), Some(o)) = (t.spi_in, t.spi_out) {
            let _ = writeln!(
                out,
                "  ESP SPI in {i:08x}, out {o:08x}, up {}s",
                t.up_seconds
            );
        }
        if !t.routes.is_empty() {
            let _ = writeln!(out, "  Routes from the hub: {}", t.routes.join(", "));
        }
        let _ = writeln!(out, "  Connection attempts: {}", t.connects);
        if let Some(e) = &t.last_error {
            let _ = writeln!(out, "  Last error: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn tunnels_render_state_address_routes_and_the_last_error() {
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
            last_error: Some("the hub deleted the session".into()),
        };
        let text = render_tunnels(&[up]);
        assert!(
            text.contains("Tunnel1 is up, line protocol is up (up)"),
            "{text}"
        );
        assert!(text.contains("address 10.1.1.100 (negotiated)"), "{text}");
        assert!(text.contains("in c0000001, out 00001234, up 42s"), "{text}");
        assert!(
            text.contains("Routes from the hub: 192.168.0.0/16"),
            "{text}"
        );
        assert!(
            text.contains("Last error: the hub deleted the session"),
            "{text}"
        );
        let down = TunnelStatus {
            tunnel: "Tunnel1".into(),
            state: "connecting".into(),
            ..TunnelStatus::default()
        };
        assert!(render_tunnels(&[down]).contains("line protocol is down (connecting)"));
        assert!(render_tunnels(&[]).contains("No tunnels"));
    }
}

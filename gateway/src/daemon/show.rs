//! `show version` as text, and `show crypto ipsec sa`: the CHILD_SAs IKE
//! negotiated (the hub's sessions and a spoke's own tunnels) joined with
//! the datapath's per-SA counters, in the IOS layout.

use std::{collections::HashMap, fmt::Write as _, net::Ipv4Addr};

use gateway_report::{
    ike::{ChildReport, IpsecMode, SaReport},
    interfaces::{DatapathReport, SaCounters, VaCounters},
    ipsec::{IpsecInterface, IpsecSa, IpsecSaReport},
    tunnels::TunnelStatus,
    version::VersionInfo,
};

/// One line: the release, the process and how long it has run.
pub fn render_version(v: &VersionInfo) -> String {
    format!(
        "gateway {} (pid {}), up {}s\n",
        v.version, v.pid, v.uptime_s
    )
}

/// `show crypto ipsec sa`: each IKE SA's CHILD_SAs (`ike`, from
/// `ike::show::rows`) and each up tunnel of a spoke (`tunnels`), with the
/// counters of `datapath` (joined by inbound SPI, which also names the
/// interface). Several pairs on one interface are a rekey in progress (the
/// old pair decrypts until its DELETE); all are listed, oldest first.
pub fn ipsec_sa(
    ike: &[SaReport],
    datapath: Option<&DatapathReport>,
    tunnels: &[TunnelStatus],
) -> IpsecSaReport {
    let counters: HashMap<u32, &SaCounters> = datapath
        .map(|d| d.sas.iter().map(|s| (s.spi_in, s)).collect())
        .unwrap_or_default();
    let names: HashMap<u32, &VaCounters> = datapath
        .map(|d| d.virtual_access.iter().map(|v| (v.id, v)).collect())
        .unwrap_or_default();
    let va_of = |spi_in: u32| counters.get(&spi_in).and_then(|c| names.get(&c.va));

    let mut report = IpsecSaReport::default();
    for sa in ike {
        let mut children: Vec<&ChildReport> = sa.children.iter().collect();
        // Oldest first; the newest is the one that sends.
        children.sort_by_key(|c| std::cmp::Reverse(c.active_s));
        let pairs: Vec<IpsecSa> = children
            .iter()
            .filter_map(|c| child_pair(c, &counters))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let va = pairs.iter().find_map(|p| va_of(p.spi_in));
        let (remote, remote_port) = split_endpoint(&sa.remote);
        let Some(remote) = remote else { continue };
        let entry = IpsecInterface {
            interface: va.map(|v| v.name.clone()),
            tunnel_id: Some(sa.tunnel_id),
            local: split_endpoint(&sa.local).0,
            remote,
            remote_port,
            pkts_encaps: 0,
            pkts_decaps: 0,
            pkts_replay_failed: 0,
            pkts_verify_failed: 0,
            current_outbound_spi: None,
            sas: pairs,
        };
        add(&mut report, entry, &counters);
    }
    for t in tunnels {
        let (Some(spi_in), Some(spi_out)) = (t.spi_in, t.spi_out) else {
            continue;
        };
        let Ok(remote) = t.hub.parse::<Ipv4Addr>() else {
            continue;
        };
        if report.spis_in().contains(&spi_in) {
            continue;
        }
        let c = counters.get(&spi_in);
        let remote_port = va_of(spi_in).and_then(|v| split_endpoint(&v.remote_outer).1);
        let pair = IpsecSa {
            spi_in,
            spi_out,
            transform: None,
            mode: None,
            esn: None,
            packets_in: c.map_or(0, |c| c.rx_packets),
            bytes_in: c.map_or(0, |c| c.rx_bytes),
            packets_out: c.map_or(0, |c| c.tx_packets),
            bytes_out: c.map_or(0, |c| c.tx_bytes),
            active_s: None,
            remaining_kb: None,
            remaining_s: None,
            outbound: true,
            status: "ACTIVE".into(),
        };
        let entry = IpsecInterface {
            interface: Some(t.tunnel.clone()),
            tunnel_id: None,
            local: None,
            remote,
            remote_port,
            pkts_encaps: 0,
            pkts_decaps: 0,
            pkts_replay_failed: 0,
            pkts_verify_failed: 0,
            current_outbound_spi: None,
            sas: vec![pair],
        };
        add(&mut report, entry, &counters);
    }
    report
}

/// Adds `entry` to the report, merged into the entry of the same interface
/// if there is one (an IKE SA rekeyed while the old one still has a
/// CHILD_SA), and sums the interface's counters.
fn add(
    report: &mut IpsecSaReport,
    mut entry: IpsecInterface,
    counters: &HashMap<u32, &SaCounters>,
) {
    let sas = std::mem::take(&mut entry.sas);
    let same = entry.interface.as_ref().and_then(|name| {
        report
            .interfaces
            .iter()
            .position(|i| i.interface.as_ref() == Some(name))
    });
    let at = same.unwrap_or_else(|| {
        report.interfaces.push(entry);
        report.interfaces.len() - 1
    });
    let i = &mut report.interfaces[at];
    i.sas.extend(sas);
    i.pkts_encaps = i.sas.iter().map(|s| s.packets_out).sum();
    i.pkts_decaps = i.sas.iter().map(|s| s.packets_in).sum();
    let sum = |f: fn(&SaCounters) -> u64| {
        i.sas
            .iter()
            .filter_map(|s| counters.get(&s.spi_in))
            .map(|c| f(c))
            .sum::<u64>()
    };
    let (replayed, auth_failed) = (sum(|c| c.replayed), sum(|c| c.auth_failed));
    i.pkts_replay_failed = replayed;
    i.pkts_verify_failed = auth_failed;
    // The pair IKE says the datapath sends on; else the newest (the
    // datapath moves outbound to a new pair at once unless told to wait).
    i.current_outbound_spi = i
        .sas
        .iter()
        .rev()
        .find(|s| s.outbound)
        .or_else(|| i.sas.iter().rev().min_by_key(|s| s.active_s.unwrap_or(0)))
        .map(|s| s.spi_out);
}

/// A CHILD_SA of IKE's report with the datapath's counters of its SPI.
fn child_pair(c: &ChildReport, counters: &HashMap<u32, &SaCounters>) -> Option<IpsecSa> {
    let spi_in = parse_spi(&c.spi_in)?;
    let spi_out = parse_spi(&c.spi_out)?;
    let n = counters.get(&spi_in);
    let (packets_in, bytes_in) = n.map_or((0, 0), |n| (n.rx_packets, n.rx_bytes));
    let (packets_out, bytes_out) = n.map_or((0, 0), |n| (n.tx_packets, n.tx_bytes));
    // The kilobyte limit counts both directions (`iface::SaLifetime`).
    let used_kb = (bytes_in + bytes_out) / 1024;
    Some(IpsecSa {
        spi_in,
        spi_out,
        transform: (!c.transform.is_empty()).then(|| c.transform.clone()),
        mode: Some(c.mode),
        esn: Some(c.esn),
        packets_in,
        bytes_in,
        packets_out,
        bytes_out,
        active_s: Some(c.active_s),
        remaining_kb: Some(c.lifetime_kb.saturating_sub(used_kb)),
        remaining_s: Some(c.lifetime_s.saturating_sub(c.active_s)),
        outbound: c.outbound,
        status: "ACTIVE".into(),
    })
}

/// `0xc0000001` as IKE's report writes SPIs.
fn parse_spi(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// `172.25.1.1/4500` (IKE's report) or `172.25.1.1:4500` (the
/// datapath's): the address and the port, if any.
fn split_endpoint(text: &str) -> (Option<Ipv4Addr>, Option<u16>) {
    match text.rsplit_once(['/', ':']) {
        Some((ip, port)) => (ip.parse().ok(), port.parse().ok()),
        None => (text.parse().ok(), None),
    }
}

/// IOS prints an SPI as `0x5B7C1E2A(1534860842)`.
fn spi(spi: u32) -> String {
    format!("0x{spi:08X}({spi})")
}

/// `show crypto ipsec sa`, in the IOS layout (crypto map, ident and
/// compression lines left out: FlexVPN has no crypto map, the traffic
/// selectors are in `show crypto session`).
pub fn render_ipsec_sa(report: &IpsecSaReport) -> String {
    if report.interfaces.is_empty() {
        return "No IPsec SAs.\n".to_owned();
    }
    let mut out = String::new();
    for i in &report.interfaces {
        let name = i
            .interface
            .as_deref()
            .unwrap_or("(not in the datapath yet)");
        let _ = writeln!(out, "interface: {name}");
        if let Some(id) = i.tunnel_id {
            let _ = writeln!(out, "    IKEv2 Tunnel-id: {id}");
        }
        out.push('\n');
        let _ = match i.remote_port {
            Some(port) => writeln!(out, "   current_peer {} port {port}", i.remote),
            None => writeln!(out, "   current_peer {}", i.remote),
        };
        let (e, d) = (i.pkts_encaps, i.pkts_decaps);
        let _ = writeln!(
            out,
            "    #pkts encaps: {e}, #pkts encrypt: {e}, #pkts digest: {e}"
        );
        let _ = writeln!(
            out,
            "    #pkts decaps: {d}, #pkts decrypt: {d}, #pkts verify: {d}"
        );
        let _ = writeln!(
            out,
            "    #pkts replay failed: {}, #pkts verify failed: {}",
            i.pkts_replay_failed, i.pkts_verify_failed
        );
        out.push('\n');
        let _ = match i.local {
            Some(local) => writeln!(
                out,
                "     local crypto endpt.: {local}, remote crypto endpt.: {}",
                i.remote
            ),
            None => writeln!(out, "     remote crypto endpt.: {}", i.remote),
        };
        if let Some(current) = i.current_outbound_spi {
            let _ = writeln!(out, "     current outbound spi: {}", spi(current));
        }
        for (direction, pick) in [
            ("inbound", (|s: &IpsecSa| s.spi_in) as fn(&IpsecSa) -> u32),
            ("outbound", |s: &IpsecSa| s.spi_out),
        ] {
            let _ = writeln!(out, "\n     {direction} esp sas:");
            for sa in &i.sas {
                render_sa(&mut out, pick(sa), sa);
            }
        }
        out.push('\n');
    }
    out
}

fn render_sa(out: &mut String, number: u32, sa: &IpsecSa) {
    let _ = writeln!(out, "      spi: {}", spi(number));
    if let Some(transform) = &sa.transform {
        let _ = writeln!(out, "        transform: {transform} ,");
    }
    if let Some(mode) = sa.mode {
        let mode = match mode {
            IpsecMode::Tunnel => "Tunnel",
            IpsecMode::Transport => "Transport",
        };
        let _ = writeln!(out, "        in use settings ={{{mode}, }}");
    }
    if let (Some(kb), Some(s)) = (sa.remaining_kb, sa.remaining_s) {
        let _ = writeln!(
            out,
            "        sa timing: remaining key lifetime (k/sec): ({kb}/{s})"
        );
    }
    if let Some(esn) = sa.esn {
        let _ = writeln!(
            out,
            "        extended sequence numbers: {}",
            if esn { "Y" } else { "N" }
        );
    }
    let _ = writeln!(out, "        Status: {}", sa.status);
}

#[cfg(test)]
mod tests;

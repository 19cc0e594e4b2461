#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::nhrp::{CIE_NO_BINDING, FLAG_A, FLAG_Q, wire::TrafficIndication};

const HUB_VA: VaId = VaId::tunnel(1);
const SPOKE1_NBMA: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 11);
const SPOKE2_NBMA: Ipv4Addr = Ipv4Addr::new(172, 25, 1, 12);
const SPOKE1_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);
const SPOKE2_TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 101);
const LAN1_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const LAN2_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 10);
const HOLD: u16 = 30;

fn spoke(nbma: Ipv4Addr, tunnel: Ipv4Addr, lan: &str) -> Shortcuts {
    let mut s = Shortcuts::new(SpokeSettings {
        nbma,
        own_prefixes: vec![lan.parse().unwrap()],
        holdtime: HOLD,
        shortcut: true,
        hub_va: HUB_VA,
    });
    s.set_protocol_address(Some(tunnel));
    s
}

fn spoke1() -> Shortcuts {
    spoke(SPOKE1_NBMA, SPOKE1_TUNNEL, "192.168.1.0/24")
}

fn spoke2() -> Shortcuts {
    spoke(SPOKE2_NBMA, SPOKE2_TUNNEL, "192.168.2.0/24")
}

fn traffic_indication(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut data = vec![0u8; 28];
    data[0] = 0x45;
    data[12..16].copy_from_slice(&src.octets());
    data[16..20].copy_from_slice(&dst.octets());
    NhrpRepr {
        hop_count: 16,
        message: Message::TrafficIndication(TrafficIndication {
            code: 0,
            addresses: Addresses {
                src_nbma: Some(Ipv4Addr::new(172, 25, 1, 1)),
                src_protocol: Some(Ipv4Addr::new(10, 1, 1, 1)),
                dst_protocol: Some(src),
            },
            data,
        }),
        extensions: Vec::new(),
    }
    .emit_to_vec()
    .unwrap()
}

/// The packets of the `Send` actions, with where they go.
fn sent(actions: &[Action]) -> Vec<(VaId, NhrpRepr)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { va, packet } => Some((*va, NhrpRepr::parse_bytes(packet).unwrap())),
            _ => None,
        })
        .collect()
}

fn routes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AddRoute(r) => Some(format!("+{} {}", r.prefix, r.va.raw())),
            Action::RemoveRoute(r) => Some(format!("-{} {}", r.prefix, r.va.raw())),
            _ => None,
        })
        .collect()
}

fn tunnel(va: u32, nbma: Ipv4Addr, initiated: bool) -> PeerTunnel {
    PeerTunnel {
        va: VaId::virtual_access(va),
        nbma,
        initiated,
    }
}

/// Spoke 1 is redirected and resolves LAN 2; spoke 2 answers over a
/// tunnel it dials; spoke 1 routes LAN 2 through that tunnel.
#[test]
fn a_redirect_ends_in_a_shortcut_route_through_the_owners_tunnel() {
    let t0 = Instant::now();
    let (mut s1, mut s2) = (spoke1(), spoke2());

    let a = s1.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST));
    let out = sent(&a);
    assert_eq!(out.len(), 1);
    let (va, request) = &out[0];
    assert_eq!(*va, HUB_VA, "resolution goes through the hub");
    let Message::ResolutionRequest(m) = &request.message else {
        panic!("{request:?}")
    };
    assert_eq!(
        m.addresses,
        Addresses {
            src_nbma: Some(SPOKE1_NBMA),
            src_protocol: Some(SPOKE1_TUNNEL),
            dst_protocol: Some(LAN2_HOST),
        }
    );
    // Another redirect for the same destination does not ask again.
    assert!(
        s1.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST))
            .is_empty()
    );

    // Spoke 2 owns it: it dials spoke 1 and answers once the tunnel is up.
    let bytes = request.emit_to_vec().unwrap();
    let a = s2.on_packet(t0, HUB_VA, &bytes);
    assert_eq!(a, [Action::Dial { nbma: SPOKE1_NBMA }]);
    let a = s2.tunnels_now(t0, &[tunnel(1, SPOKE1_NBMA, true)]);
    assert_eq!(routes(&a), ["+10.1.1.100/32 1"]);
    let out = sent(&a);
    assert_eq!(out.len(), 1);
    let (va, reply) = &out[0];
    assert_eq!(
        *va,
        VaId::virtual_access(1),
        "the reply takes the new tunnel"
    );
    let Message::ResolutionReply(r) = &reply.message else {
        panic!("{reply:?}")
    };
    assert_eq!(r.request_id, m.request_id);
    assert_eq!(r.cies[0].code, 0);
    assert_eq!(r.cies[0].prefix_len, 24);
    assert_eq!(r.cies[0].holding_time, HOLD);
    assert_eq!(r.cies[0].nbma, Some(SPOKE2_NBMA));
    assert_eq!(r.cies[0].protocol, Some(SPOKE2_TUNNEL));
    assert_eq!(s2.traffic.resolution_replies_sent, 1);

    // Spoke 1 sees the tunnel (accepted) and the reply on it.
    assert!(
        s1.tunnels_now(t0, &[tunnel(3, SPOKE2_NBMA, false)])
            .is_empty()
    );
    let a = s1.on_packet(t0, VaId::virtual_access(3), &reply.emit_to_vec().unwrap());
    assert_eq!(routes(&a), ["+192.168.2.0/24 3", "+10.1.1.101/32 3"]);
    let view = s1.entries(t0, &|va| va.to_string());
    assert_eq!(view[0].target, "10.1.1.101/32");
    assert_eq!(view[0].flags, ["router", "nhop", "rib", "dynamic"]);
    assert_eq!(view[1].target, "192.168.2.0/24");
    assert_eq!(view[1].via, SPOKE2_TUNNEL);
    assert_eq!(view[1].nbma, SPOKE2_NBMA);
    assert_eq!(view[1].interface, "Virtual-Access3");
    assert_eq!(view[1].expires_s, u64::from(HOLD));
    assert_eq!(view[1].flags, ["router", "rib", "nho", "dynamic"]);
    assert_eq!(s1.traffic.shortcuts_installed, 1);
    // Covered now: no more requests.
    assert!(
        s1.on_packet(
            t0 + Duration::from_secs(10),
            HUB_VA,
            &traffic_indication(LAN1_HOST, LAN2_HOST)
        )
        .is_empty()
    );
}

fn with_shortcut(t0: Instant) -> Shortcuts {
    let mut s1 = spoke1();
    let a = s1.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST));
    let (_, request) = sent(&a).remove(0);
    let Message::ResolutionRequest(m) = request.message else {
        unreachable!()
    };
    s1.tunnels_now(t0, &[tunnel(3, SPOKE2_NBMA, false)]);
    let reply = NhrpRepr {
        hop_count: 16,
        message: Message::ResolutionReply(Mandatory {
            cies: vec![Cie {
                prefix_len: 24,
                holding_time: HOLD,
                nbma: Some(SPOKE2_NBMA),
                protocol: Some(SPOKE2_TUNNEL),
                ..Cie::default()
            }],
            ..m
        }),
        extensions: Vec::new(),
    };
    s1.on_packet(t0, VaId::virtual_access(3), &reply.emit_to_vec().unwrap());
    s1
}

#[test]
fn idle_shortcuts_expire_and_their_tunnel_closes() {
    let t0 = Instant::now();
    let mut s1 = with_shortcut(t0);
    let hold = Duration::from_secs(u64::from(HOLD));
    // No traffic: no refresh, and at the holding time the entries go.
    assert!(s1.tick(t0 + secs(HOLD - 1), &[]).is_empty());
    let a = s1.tick(t0 + hold, &[]);
    assert_eq!(
        routes(&a),
        ["-10.1.1.101/32 3", "-192.168.2.0/24 3"],
        "{a:?}"
    );
    assert!(
        a.contains(&Action::Close {
            va: VaId::virtual_access(3)
        }),
        "{a:?}"
    );
    assert_eq!(s1.traffic.shortcuts_expired, 1);
    // Asked once.
    assert!(s1.tick(t0 + hold + Duration::from_secs(1), &[]).is_empty());
}

#[test]
fn used_shortcuts_are_refreshed_over_their_tunnel_before_they_expire() {
    let t0 = Instant::now();
    let mut s1 = with_shortcut(t0);
    let hold = Duration::from_secs(u64::from(HOLD));
    assert!(
        s1.tick(t0 + Duration::from_secs(5), &[VaId::virtual_access(3)])
            .is_empty()
    );
    let a = s1.tick(t0 + secs(HOLD - 9), &[VaId::virtual_access(3)]);
    let out = sent(&a);
    assert_eq!(out.len(), 1, "{a:?}");
    let (va, request) = &out[0];
    assert_eq!(*va, VaId::virtual_access(3), "straight to the owner");
    let Message::ResolutionRequest(m) = &request.message else {
        panic!()
    };
    assert_eq!(m.addresses.dst_protocol, Some(LAN2_HOST));
    assert_eq!(m.request_id, 2, "each request has its own id");
    // The owner's answer renews the entry.
    let reply = NhrpRepr {
        hop_count: 16,
        message: Message::ResolutionReply(Mandatory {
            cies: vec![Cie {
                prefix_len: 24,
                holding_time: HOLD,
                nbma: Some(SPOKE2_NBMA),
                protocol: Some(SPOKE2_TUNNEL),
                ..Cie::default()
            }],
            ..m.clone()
        }),
        extensions: Vec::new(),
    };
    let t1 = t0 + secs(HOLD - 8);
    assert!(
        routes(&s1.on_packet(t1, VaId::virtual_access(3), &reply.emit_to_vec().unwrap()))
            .is_empty()
    );
    assert!(routes(&s1.tick(t0 + hold + Duration::from_secs(1), &[])).is_empty());
    assert_eq!(
        s1.entries(t0 + hold, &|_| String::new())[1].expires_s,
        u64::from(HOLD) - 8
    );
}

#[test]
fn a_purge_removes_the_entries_it_names_and_is_answered() {
    let t0 = Instant::now();
    let mut s1 = with_shortcut(t0);
    let purge = NhrpRepr {
        hop_count: 16,
        message: Message::PurgeRequest(Mandatory {
            flags: 0,
            request_id: 99,
            addresses: Addresses {
                src_nbma: Some(SPOKE2_NBMA),
                src_protocol: Some(SPOKE2_TUNNEL),
                dst_protocol: Some(SPOKE1_TUNNEL),
            },
            cies: vec![Cie {
                prefix_len: 24,
                protocol: Some(Ipv4Addr::new(192, 168, 2, 0)),
                ..Cie::default()
            }],
        }),
        extensions: Vec::new(),
    };
    let a = s1.on_packet(t0, VaId::virtual_access(3), &purge.emit_to_vec().unwrap());
    // Only what it names: the peer's own address stays until it expires.
    assert_eq!(routes(&a), ["-192.168.2.0/24 3"]);
    let out = sent(&a);
    assert!(matches!(out[0].1.message, Message::PurgeReply(_)));
    assert_eq!(s1.traffic.shortcuts_purged, 1);
}

#[test]
fn clear_purges_the_peers_removes_everything_and_closes_the_tunnels() {
    let t0 = Instant::now();
    let mut s1 = with_shortcut(t0);
    let (a, cleared) = s1.clear();
    assert_eq!((cleared.entries, cleared.tunnels_closed), (2, 1));
    assert_eq!(routes(&a).len(), 2);
    assert!(a.contains(&Action::Close {
        va: VaId::virtual_access(3)
    }));
    let out = sent(&a);
    let (va, purge) = &out[0];
    assert_eq!(*va, VaId::virtual_access(3));
    let Message::PurgeRequest(m) = &purge.message else {
        panic!()
    };
    let named: Vec<_> = m.cies.iter().map(|c| (c.protocol, c.prefix_len)).collect();
    assert_eq!(
        named,
        [
            (Some(Ipv4Addr::new(192, 168, 1, 0)), 24),
            (Some(SPOKE1_TUNNEL), 32)
        ]
    );
    assert!(s1.entries(t0, &|_| String::new()).is_empty());
}

#[test]
fn when_both_spokes_dial_the_lower_address_keeps_its_tunnel() {
    let t0 = Instant::now();
    let later = t0 + IDLE_TUNNEL_GRACE;
    let both = |low_initiated: u32, high_initiated: u32, nbma| {
        [
            tunnel(low_initiated, nbma, true),
            tunnel(high_initiated, nbma, false),
        ]
    };
    // Spoke 1 (lower) keeps the one it dialled.
    let mut s1 = spoke1();
    s1.tunnels_now(t0, &both(1, 2, SPOKE2_NBMA));
    assert!(
        s1.tunnels_now(later, &both(1, 2, SPOKE2_NBMA))
            .iter()
            .all(|a| !matches!(a, Action::Close { .. }))
    );
    // Spoke 2 (higher) closes the one it dialled, once it is not brand new.
    let mut s2 = spoke2();
    assert!(s2.tunnels_now(t0, &both(5, 6, SPOKE1_NBMA)).is_empty());
    assert_eq!(
        s2.tunnels_now(later, &both(5, 6, SPOKE1_NBMA)),
        [Action::Close {
            va: VaId::virtual_access(5)
        }]
    );
    assert!(
        s2.tunnels_now(later, &both(5, 6, SPOKE1_NBMA)).is_empty(),
        "asked once"
    );
}

#[test]
fn a_request_for_someone_elses_prefix_gets_a_negative_reply() {
    let t0 = Instant::now();
    let mut s2 = spoke2();
    let request = NhrpRepr {
        hop_count: 15,
        message: Message::ResolutionRequest(Mandatory {
            flags: FLAG_Q,
            request_id: 5,
            addresses: Addresses {
                src_nbma: Some(SPOKE1_NBMA),
                src_protocol: Some(SPOKE1_TUNNEL),
                dst_protocol: Some(Ipv4Addr::new(192, 168, 3, 10)),
            },
            cies: Vec::new(),
        }),
        extensions: Vec::new(),
    };
    let a = s2.on_packet(t0, HUB_VA, &request.emit_to_vec().unwrap());
    assert!(!a.iter().any(|a| matches!(a, Action::Dial { .. })));
    let out = sent(&a);
    let Message::ResolutionReply(r) = &out[0].1.message else {
        panic!()
    };
    assert_eq!(out[0].0, HUB_VA);
    assert_eq!(r.cies[0].code, CIE_NO_BINDING);
}

#[test]
fn nothing_is_asked_before_the_tunnel_address_is_known_or_with_shortcuts_off() {
    let t0 = Instant::now();
    let mut s1 = spoke1();
    s1.set_protocol_address(None);
    assert!(
        s1.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST))
            .is_empty()
    );
    let mut off = Shortcuts::new(SpokeSettings {
        shortcut: false,
        ..spoke1().settings
    });
    off.set_protocol_address(Some(SPOKE1_TUNNEL));
    assert!(
        off.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST))
            .is_empty()
    );
    assert_eq!(off.traffic.redirects_received, 1);
    // Malformed input is counted.
    assert!(s1.on_packet(t0, HUB_VA, &[1, 2, 3]).is_empty());
    assert_eq!(s1.traffic.malformed, 1);
}

fn secs(n: u16) -> Duration {
    Duration::from_secs(u64::from(n))
}

fn request_from(nbma: Ipv4Addr, tunnel: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    NhrpRepr {
        hop_count: 15,
        message: Message::ResolutionRequest(Mandatory {
            flags: FLAG_Q,
            request_id: 11,
            addresses: Addresses {
                src_nbma: Some(nbma),
                src_protocol: Some(tunnel),
                dst_protocol: Some(dst),
            },
            cies: Vec::new(),
        }),
        extensions: Vec::new(),
    }
    .emit_to_vec()
    .unwrap()
}

/// Traffic both ways: each spoke resolves the other's LAN and owns what
/// the other asks. Only the lower address dials at once; the higher one
/// answers over that tunnel once the peer has spoken over it.
#[test]
fn when_both_resolve_the_higher_address_waits_for_the_lower_ones_tunnel() {
    let t0 = Instant::now();
    let mut s2 = spoke2();
    // Spoke 2 is resolving LAN 1 itself ...
    s2.on_packet(t0, HUB_VA, &traffic_indication(LAN2_HOST, LAN1_HOST));
    // ... when spoke 1's request for LAN 2 arrives: no dial yet.
    let a = s2.on_packet(
        t0,
        HUB_VA,
        &request_from(SPOKE1_NBMA, SPOKE1_TUNNEL, LAN2_HOST),
    );
    assert!(a.is_empty(), "{a:?}");
    // Spoke 1's tunnel arrives; nothing goes over it before spoke 1 is heard.
    assert!(
        s2.tunnels_now(t0, &[tunnel(4, SPOKE1_NBMA, false)])
            .is_empty()
    );
    // Spoke 1's own reply (for LAN 1) comes over it: now ours goes too.
    let reply_for_lan1 = NhrpRepr {
        hop_count: 16,
        message: Message::ResolutionReply(Mandatory {
            flags: FLAG_A,
            request_id: 1,
            addresses: Addresses {
                src_nbma: Some(SPOKE2_NBMA),
                src_protocol: Some(SPOKE2_TUNNEL),
                dst_protocol: Some(LAN1_HOST),
            },
            cies: vec![Cie {
                prefix_len: 24,
                holding_time: HOLD,
                nbma: Some(SPOKE1_NBMA),
                protocol: Some(SPOKE1_TUNNEL),
                ..Cie::default()
            }],
        }),
        extensions: Vec::new(),
    };
    let a = s2.on_packet(
        t0,
        VaId::virtual_access(4),
        &reply_for_lan1.emit_to_vec().unwrap(),
    );
    let out = sent(&a);
    assert_eq!(out.len(), 1, "{a:?}");
    assert_eq!(out[0].0, VaId::virtual_access(4));
    assert!(matches!(out[0].1.message, Message::ResolutionReply(_)));
    assert!(routes(&a).contains(&"+192.168.1.0/24 4".to_owned()));
    assert!(!a.iter().any(|a| matches!(a, Action::Dial { .. })));
}

#[test]
fn a_deferred_dial_happens_when_the_peer_opens_no_tunnel() {
    let t0 = Instant::now();
    let mut s2 = spoke2();
    s2.on_packet(t0, HUB_VA, &traffic_indication(LAN2_HOST, LAN1_HOST));
    assert!(
        s2.on_packet(
            t0,
            HUB_VA,
            &request_from(SPOKE1_NBMA, SPOKE1_TUNNEL, LAN2_HOST)
        )
        .is_empty()
    );
    assert!(s2.tick(t0 + Duration::from_secs(1), &[]).is_empty());
    assert_eq!(
        s2.tick(t0 + DEFER_DIAL, &[]),
        [Action::Dial { nbma: SPOKE1_NBMA }]
    );
    // The lower address, or a spoke not resolving anything, dials at once.
    let mut s1 = spoke1();
    s1.on_packet(t0, HUB_VA, &traffic_indication(LAN1_HOST, LAN2_HOST));
    assert_eq!(
        s1.on_packet(
            t0,
            HUB_VA,
            &request_from(SPOKE2_NBMA, SPOKE2_TUNNEL, LAN1_HOST)
        ),
        [Action::Dial { nbma: SPOKE2_NBMA }]
    );
}

#[test]
fn a_tunnel_the_peer_dialled_is_used_after_it_settles() {
    let t0 = Instant::now();
    let mut s1 = spoke1();
    s1.tunnels_now(t0, &[tunnel(4, SPOKE2_NBMA, false)]);
    // A request over the brand-new tunnel: answered over it, since the
    // peer has spoken over it.
    let a = s1.on_packet(
        t0,
        VaId::virtual_access(4),
        &request_from(SPOKE2_NBMA, SPOKE2_TUNNEL, LAN1_HOST),
    );
    assert_eq!(sent(&a)[0].0, VaId::virtual_access(4));
    // Through the hub instead, while the tunnel is new: after it settles.
    let mut s1 = spoke1();
    s1.tunnels_now(t0, &[tunnel(4, SPOKE2_NBMA, false)]);
    let a = s1.on_packet(
        t0,
        HUB_VA,
        &request_from(SPOKE2_NBMA, SPOKE2_TUNNEL, LAN1_HOST),
    );
    assert!(sent(&a).is_empty(), "{a:?}");
    let a = s1.tick(t0 + ACCEPTED_SETTLE, &[]);
    assert_eq!(sent(&a)[0].0, VaId::virtual_access(4));
}

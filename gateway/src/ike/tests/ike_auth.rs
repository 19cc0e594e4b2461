//! IKE_AUTH: authentication, the configuration payload (`route set`, `route accept any`), the CHILD_SA and its selectors.

use super::*;
use crate::ike::{
    policy::MAX_PEER_ROUTES,
    sa::subnet_attribute,
    wire::{ConfigAttribute, ConfigAttributeType},
};

#[test]
fn route_set_prefixes_go_to_the_spoke_as_internal_ip4_subnet() {
    let mut engine = hub("route_set = [\"192.168.0.0/16\", \"10.1.2.0/24\"]");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        51,
    );
    let est = result.unwrap();
    let pushed = vec![prefix("192.168.0.0/16"), prefix("10.1.2.0/24")];
    assert_eq!(est.routes, pushed);
    // The spoke routes them via its tunnel; the hub has nothing from the spoke.
    assert_eq!(est.child.unwrap().peer_routes, pushed);
    assert!(child_up(&actions).peer_routes.is_empty());
}

#[test]
fn gre_selectors_with_use_transport_mode_give_a_transport_child() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes128-sha1", Mode::Transport),
        3,
    );
    let est = result.unwrap();
    let child = est.child.unwrap();
    assert_eq!(
        child.mode,
        Mode::Transport,
        "the hub answered USE_TRANSPORT_MODE"
    );
    let hub_child = actions
        .iter()
        .find_map(|a| {
            if let Action::ChildUp(c) = a {
                Some(c.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(hub_child.mode, Mode::Transport);
    assert_eq!(hub_child.ts_remote[0].ip_protocol, 47);
    assert_eq!(
        hub_child.ts_remote[0].as_ipv4(),
        Some((*SPOKE.ip(), *SPOKE.ip()))
    );
    assert_eq!(
        hub_child.ts_local[0].as_ipv4(),
        Some((*HUB.ip(), *HUB.ip()))
    );
}

#[test]
fn wrong_psk_and_unknown_identities_are_refused() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.psk_local = b"guess".to_vec();
    let (result, actions) = dial(&mut engine, &mut pools, config, 11);
    assert!(
        matches!(
            result,
            Err(InitiatorError::Refused(NotifyType::AuthenticationFailed))
        ),
        "{result:?}"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Refused { reason, .. } if reason.contains("pre-shared key does not match"))));
    assert!(engine.report(Instant::now()).is_empty());

    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.identity = Identity::Fqdn("spoke.juniper.net".into());
    let (result, _) = dial(&mut engine, &mut pools, config, 12);
    assert!(matches!(
        result,
        Err(InitiatorError::Refused(NotifyType::AuthenticationFailed))
    ));

    // The hub's AUTH is checked by the initiator too.
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.psk_remote = b"not-the-hub".to_vec();
    let (result, _) = dial(&mut engine, &mut pools, config, 13);
    assert!(
        matches!(result, Err(InitiatorError::AuthFailed)),
        "{result:?}"
    );
}

#[test]
fn an_exhausted_pool_gives_internal_address_failure() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 0,
        ..MemPools::default()
    };
    let (result, actions) = dial(
        &mut engine,
        &mut pools,
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        21,
    );
    let est = result.unwrap();
    assert_eq!(est.address, None);
    assert!(est.child.is_none(), "no CHILD_SA without an address");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Refused { reason, .. } if reason.contains("FlexSpokes")))
    );
    let auth_reply = sends(&actions).pop().unwrap();
    assert!(Message::parse(&auth_reply).is_ok());
}

#[test]
fn certificate_profiles_are_refused_at_start_until_supported() {
    let mut config = hub_config("");
    config
        .ikev2
        .profile
        .get_mut("Flex")
        .unwrap()
        .authentication_remote = config::AuthMethod::RsaSig;
    let err = Policy::from_config(&config).unwrap_err().to_string();
    assert!(
        err.contains("ikev2.profile.Flex.authentication_remote") && err.contains("not implemented"),
        "{err}"
    );
}

// ----- `route set` / `route accept any` (INTERNAL_IP4_SUBNET) -----

/// The hub's tunnel id of its one session.
fn session_tunnel_id(actions: &[Action]) -> u32 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SessionUp { tunnel_id, .. } => Some(*tunnel_id),
            _ => None,
        })
        .expect("SessionUp")
}

#[test]
fn route_accept_installs_the_spokes_subnets_and_refuses_the_dangerous_ones() {
    let mut engine = hub("route_accept = true");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Transport);
    config.request_address = true;
    config.route_set = [
        "192.168.101.0/24",
        "0.0.0.0/0",        // a default route
        "10.1.0.0/16",      // holds the pool 10.1.1.100-254
        "10.1.1.254/32",    // in the pool
        "172.25.0.0/16",    // holds the hub's and the spoke's outer addresses
        "192.168.101.0/24", // again
        "192.168.102.128/25",
    ]
    .iter()
    .map(|p| prefix(p))
    .collect();
    let (result, actions) = dial(&mut engine, &mut pools, config, 91);
    let est = result.unwrap();
    assert_eq!(est.address, Some(Ipv4Addr::new(10, 1, 1, 100)));
    let child = child_up(&actions);
    assert_eq!(
        child.peer_routes,
        [prefix("192.168.101.0/24"), prefix("192.168.102.128/25")]
    );
    // What the datapath builds the virtual-access from.
    assert_eq!(child.peer_inner, Some(Ipv4Addr::new(10, 1, 1, 100)));
    assert_eq!(child.tunnel_id, session_tunnel_id(&actions));
    assert_eq!(child.profile, "Flex");
    assert_eq!(child.virtual_template, Some(1));
    // The spoke's own view: no inner address for the hub, what it pushed.
    let ours = est.child.unwrap();
    assert_eq!(
        (ours.peer_inner, ours.tunnel_id, ours.profile.as_str()),
        (None, 1, "Flex_IKEv2")
    );
    assert!(ours.peer_routes.is_empty());
}

#[test]
fn without_route_accept_the_spokes_subnets_are_ignored() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.route_set = vec![prefix("192.168.101.0/24")];
    let (result, actions) = dial(&mut engine, &mut pools, config, 92);
    assert_eq!(result.unwrap().address, Some(Ipv4Addr::new(10, 1, 1, 100)));
    assert!(child_up(&actions).peer_routes.is_empty());
}

#[test]
fn a_cfg_request_with_subnets_only_asks_for_no_address() {
    let mut engine = hub("route_accept = true");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let mut config = spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel);
    config.request_address = false;
    config.route_set = vec![prefix("192.168.101.0/24")];
    let (result, actions) = dial(&mut engine, &mut pools, config, 93);
    let est = result.unwrap();
    assert_eq!(est.address, None);
    assert!(est.child.is_some(), "no INTERNAL_ADDRESS_FAILURE");
    let child = child_up(&actions);
    assert_eq!(child.peer_inner, None);
    assert_eq!(child.peer_routes, [prefix("192.168.101.0/24")]);
    assert!(
        pools.released.is_empty() && !actions.iter().any(|a| matches!(a, Action::Refused { .. }))
    );
}

#[test]
fn subnet_attributes_are_address_and_contiguous_mask() {
    let v = |a: [u8; 4], m: [u8; 4]| [a, m].concat();
    let ok = |value: &[u8]| subnet_attribute(value).unwrap().to_string();
    assert_eq!(
        ok(&v([192, 168, 1, 0], [255, 255, 255, 0])),
        "192.168.1.0/24"
    );
    assert_eq!(ok(&v([10, 0, 0, 1], [255; 4])), "10.0.0.1/32");
    assert_eq!(ok(&v([0; 4], [0; 4])), "0.0.0.0/0");
    let err = |value: &[u8]| subnet_attribute(value).unwrap_err();
    for len in [0, 1, 4, 7, 9, 17] {
        assert!(
            err(&vec![255; len]).contains("octets instead of 8"),
            "{len}"
        );
    }
    assert!(err(&v([10, 0, 0, 0], [255, 0, 255, 0])).contains("not contiguous"));
    assert!(err(&v([10, 0, 0, 0], [0, 0, 0, 255])).contains("not contiguous"));
    assert!(err(&v([10, 1, 1, 1], [255, 255, 255, 0])).contains("host bits"));
}

#[test]
fn route_accept_takes_only_well_formed_safe_prefixes() {
    let attribute = |value: Vec<u8>| ConfigAttribute {
        kind: ConfigAttributeType::InternalIp4Subnet,
        value,
    };
    let subnet = |p: &str| {
        let p: Ipv4Prefix = p.parse().unwrap();
        attribute([p.addr.octets(), p.netmask().octets()].concat())
    };
    let mut profile = example_hub().policy().profiles[0].clone();
    assert_eq!(
        profile.pool_range,
        Some((Ipv4Addr::new(10, 1, 1, 100), Ipv4Addr::new(10, 1, 1, 254)))
    );
    let (hub, peer) = addrs();
    let id = Identity::Fqdn("spoke1.cisco.com".into());
    let mut attributes = vec![
        ConfigAttribute {
            kind: ConfigAttributeType::InternalIp4Address,
            value: vec![],
        },
        attribute(vec![]),                 // a question, not a route
        attribute(vec![10, 9, 0, 0, 255]), // short
        attribute(vec![1; 300]),           // long
        attribute(vec![10, 9, 0, 0, 255, 0, 255, 0]),
        attribute(vec![10, 9, 0, 1, 255, 255, 0, 0]),
        subnet("0.0.0.0/0"),
        subnet("10.1.1.128/25"),   // inside the pool
        subnet("10.0.0.0/8"),      // around it
        subnet("192.0.2.0/24"),    // holds the hub's address
        subnet("198.51.100.7/32"), // the peer's outer address
        subnet("192.168.101.0/24"),
        subnet("10.1.1.0/26"),      // below the pool: 10.1.1.0-63
        subnet("192.168.101.0/24"), // twice
    ];
    assert!(
        profile
            .accepted_routes(*hub.ip(), peer, &id, &attributes)
            .is_empty(),
        "route_accept is off in the example"
    );
    profile.route_accept = true;
    let routes = profile.accepted_routes(*hub.ip(), peer, &id, &attributes);
    let shown: Vec<String> = routes.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["192.168.101.0/24", "10.1.1.0/26"]);
    // A flood is cut at MAX_PEER_ROUTES.
    attributes = (0..1000u32)
        .map(|i| {
            let a = Ipv4Addr::from(0xac10_0000 + (i << 8));
            attribute([a.octets(), [255, 255, 255, 0]].concat())
        })
        .collect();
    let routes = profile.accepted_routes(*hub.ip(), peer, &id, &attributes);
    assert_eq!(routes.len(), MAX_PEER_ROUTES);
}

/// Once IKE_AUTH is done the SA keeps neither IKE_SA_INIT message (they
/// were for the AUTH payloads), and a stale retransmission of the
/// IKE_SA_INIT request is no longer answered (RFC 7296 section 2.1: only
/// the most recent request's response is resent).
#[test]
fn an_established_sa_holds_no_ike_sa_init_messages() {
    let mut engine = hub("");
    let mut pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let config = spoke("aes256-sha256-x25519", "aes256gcm16", Mode::Tunnel);
    let first = Initiator::new(config.clone(), Box::new(SeededRng(71)))
        .start()
        .unwrap();
    let (result, _) = dial(&mut engine, &mut pools, config, 71);
    result.unwrap();
    let sa = engine.sas.values().next().expect("one SA");
    assert!(sa.init_request.is_empty() && sa.init_response.is_empty());
    let actions = engine
        .handle(Instant::now(), HUB, SPOKE, &first, &mut pools)
        .unwrap();
    assert!(
        sends(&actions).is_empty(),
        "a stale IKE_SA_INIT is not answered"
    );
    assert_eq!(engine.sas.len(), 1, "nor taken for a new SA");
}

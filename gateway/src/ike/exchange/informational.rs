//! INFORMATIONAL (RFC 7296 section 1.4): liveness checks (dead peer
//! detection, section 2.4: an empty request, an empty response) and
//! DELETE of CHILD_SAs and of the IKE SA (section 1.4.1), both ways. The
//! responder half answers a spoke's requests and sends the hub's own
//! (liveness checks, DELETE when a session ends); the initiator half is the
//! spoke's side of the same.

use std::time::Instant;

use super::{Answer, InitiatorError};
use crate::{
    ike::{
        sa::{Action, ChildSpis, IkeSa, InitiatedSa, Request, SaState},
        wire::{self, Delete, ExchangeType, Message, Payload, ProtocolId},
    },
    ipsec::Rng,
};

// ----- responder -----

/// Answers a request on an established SA: deleted CHILD_SAs are answered
/// with ours (section 1.4.1); a Delete of the IKE SA ends it; an empty
/// request is a liveness check, and the empty response is the answer.
pub(crate) fn respond(
    sa: &mut IkeSa,
    child_spis: &mut ChildSpis,
    inner: &[Payload],
    now: Instant,
) -> Answer {
    let mut payloads = Vec::new();
    let mut actions = Vec::new();
    for p in inner {
        let Payload::Delete(d) = p else { continue };
        match d.protocol {
            // Deleting the IKE SA deletes its children too (section 1.4.1).
            ProtocolId::Ike => {
                return Answer {
                    actions,
                    end_sa: true,
                    ..Answer::default()
                };
            }
            ProtocolId::Esp | ProtocolId::Ah => {
                let mut ours = Vec::new();
                for peer_spi in &d.spis {
                    let Ok(bytes) = <[u8; 4]>::try_from(peer_spi.as_slice()) else {
                        continue;
                    };
                    let spi_out = u32::from_be_bytes(bytes);
                    if let Some(pos) = sa.children.iter().position(|c| c.params.spi_out == spi_out)
                    {
                        let spi_in = sa.children[pos].params.spi_in;
                        sa.pending_delete.retain(|spi| *spi != spi_in);
                        ours.push(spi_in.to_be_bytes().to_vec());
                        let down = sa.retire_child(pos, now);
                        if matches!(down, Action::ChildDown { .. }) {
                            child_spis.release(spi_in);
                        }
                        actions.push(down);
                    }
                }
                if !ours.is_empty() {
                    payloads.push(Payload::Delete(Delete {
                        protocol: d.protocol,
                        spi_size: 4,
                        spis: ours,
                    }));
                }
            }
            ProtocolId::None | ProtocolId::Unknown(_) => {}
        }
    }
    Answer {
        payloads,
        actions,
        ..Answer::default()
    }
}

/// RFC 7296 section 2.4: a peer silent for the profile's DPD interval (no
/// IKE message, no ESP) gets an empty INFORMATIONAL request, resent every
/// retry interval; after `REQUEST_TRIES` unanswered the SA is deleted, as
/// IOS does with `dpd INTERVAL RETRY`. Only when no other request of ours
/// is in flight (which is as good a liveness check).
pub(crate) fn liveness(sa: &mut IkeSa, rng: &mut dyn Rng, now: Instant) -> Option<Vec<u8>> {
    let (interval, _) = sa.dpd.filter(|_| sa.state == SaState::Ready)?;
    // On demand (IOS's default, RFC 7296 section 2.4's "only when
    // there is traffic to send"): a peer we sent nothing to since
    // it was last heard is not asked.
    let wanted = !sa.dpd_on_demand || sa.last_sent.is_some_and(|t| t > sa.last_heard);
    if sa.outstanding.is_some() || !wanted || now.duration_since(sa.last_heard) < interval {
        return None;
    }
    Some(sa.start_request(
        rng,
        now,
        ExchangeType::Informational,
        &[],
        Request::Liveness,
    ))
}

/// A DELETE of the CHILD_SAs with inbound SPIs `children` (section 1.4.1),
/// kept in flight until answered.
pub(crate) fn delete_children(
    sa: &mut IkeSa,
    rng: &mut dyn Rng,
    now: Instant,
    children: Vec<u32>,
) -> Vec<u8> {
    let delete = Payload::Delete(Delete {
        protocol: ProtocolId::Esp,
        spi_size: 4,
        spis: children.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
    });
    sa.start_request(
        rng,
        now,
        ExchangeType::Informational,
        &[delete],
        Request::Delete {
            children,
            ike: false,
        },
    )
}

/// A DELETE of the IKE SA with its CHILD_SAs (section 1.4.1).
pub(crate) fn delete_ike(sa: &mut IkeSa, rng: &mut dyn Rng, now: Instant) -> Vec<u8> {
    let delete = Payload::Delete(Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    sa.start_request(
        rng,
        now,
        ExchangeType::Informational,
        &[delete],
        Request::Delete {
            children: Vec::new(),
            ike: true,
        },
    )
}

// ----- initiator -----

/// An INFORMATIONAL request on the established SA: empty for a liveness
/// check, or with Delete payloads.
pub(crate) fn request(rng: &mut dyn Rng, sa: &mut InitiatedSa, payloads: &[Payload]) -> Vec<u8> {
    let id = sa.next_message_id;
    sa.next_message_id += 1;
    sa.keymat
        .seal(rng, ExchangeType::Informational, id, false, payloads)
}

/// Answers an INFORMATIONAL request from the responder (its liveness
/// check, or a Delete when the hub goes away): returns our response and
/// the request's payloads. A Delete of the IKE SA is acknowledged with an
/// empty response (section 1.4.1).
pub(crate) fn answer(
    rng: &mut dyn Rng,
    sa: &InitiatedSa,
    datagram: &[u8],
) -> Result<(Vec<u8>, Vec<Payload>), InitiatorError> {
    let message = Message::parse(datagram).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
    if message.header.flags.response
        || message.header.exchange != ExchangeType::Informational
        || message.header.spi_i != sa.keymat.spi_i
    {
        return Err(InitiatorError::Unexpected(
            "not an INFORMATIONAL request for us",
        ));
    }
    let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
        return Err(InitiatorError::Malformed("INFORMATIONAL without SK".into()));
    };
    let plaintext = sa.keymat.open(datagram, &sk.body)?;
    let payloads = wire::parse_payloads(sk.first_inner, &plaintext)
        .map_err(|e| InitiatorError::Malformed(e.to_string()))?;
    // Deleted CHILD_SAs are answered with ours (section 1.4.1); the
    // caller tears the tunnel down either way.
    let reply: Vec<Payload> = payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Delete(d) if d.protocol == ProtocolId::Esp => sa.child_spi.map(|spi| {
                Payload::Delete(Delete {
                    protocol: ProtocolId::Esp,
                    spi_size: 4,
                    spis: vec![spi.to_be_bytes().to_vec()],
                })
            }),
            _ => None,
        })
        .collect();
    let response = sa.keymat.seal(
        rng,
        ExchangeType::Informational,
        message.header.message_id,
        true,
        &reply,
    );
    Ok((response, payloads))
}

/// The payloads of the response to one of our INFORMATIONAL requests.
pub(crate) fn response(sa: &InitiatedSa, datagram: &[u8]) -> Result<Vec<Payload>, InitiatorError> {
    let message = Message::parse(datagram).map_err(|e| InitiatorError::Malformed(e.to_string()))?;
    if !message.header.flags.response || message.header.exchange != ExchangeType::Informational {
        return Err(InitiatorError::Unexpected("not an INFORMATIONAL response"));
    }
    let Some(Payload::Encrypted(sk)) = message.payloads.last() else {
        return Err(InitiatorError::Malformed("INFORMATIONAL without SK".into()));
    };
    let plaintext = sa.keymat.open(datagram, &sk.body)?;
    wire::parse_payloads(sk.first_inner, &plaintext)
        .map_err(|e| InitiatorError::Malformed(e.to_string()))
}

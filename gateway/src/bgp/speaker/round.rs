//! One round's UPDATEs on their way to the peers: each encoded once, all of
//! them into one buffer, and each peer given the runs of that buffer it
//! gets ([`Slices`]), in order, with one message to its writer.
//!
//! A round's UPDATEs go to whole update groups but for a few peers each
//! (the peer a route came from is not sent it back), so a peer's share is
//! one or a few runs of the buffer, found in O(group + exceptions) per run
//! of messages with the same recipients, not O(messages x peers). Sent one
//! by one, the N^2 reflected routes of N clients cost a channel send, a
//! task wake-up and most often a write syscall each: three quarters of the
//! hub's CPU at 4,000 dynamic neighbors (perf).
//!
//! And when rounds go ([`RoundClock`]): at most [`ROUND_GAP`] apart, and
//! while sessions are exchanging OPENs, up to [`SETUP_HOLD`] later. Setting
//! up a session is a few small messages; a round is a table's worth to
//! every peer, and it queued ahead of the OPENs stalled the spokes still
//! connecting (4,000 of them: 2.8 s to all Established, 0.4 s with the
//! hold). When many spokes dial at once (a hub's restart) they come up
//! first and each gets one full table, not a table and then increments.

use std::{
    collections::HashMap,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::bgp::{
    events::Slices,
    rib::{Outbound, PeerId},
    types::Message,
    wire,
};

/// A round's UPDATEs encoded, and each recipient's share of them.
pub(super) struct Round {
    pub(super) shares: Vec<(PeerId, Slices)>,
}

impl Round {
    /// Encodes `outbound` (in its order) and works out every recipient's
    /// runs.
    pub(super) fn build(outbound: &[Outbound]) -> Round {
        let mut buf = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(outbound.len());
        for out in outbound {
            let start = buf.len();
            if let Err(e) = wire::encode(&Message::Update((*out.update).clone()), &mut buf) {
                tracing::error!(error = %e, "BGP: an UPDATE the RIB built does not encode");
                buf.truncate(start);
            }
            spans.push(start..buf.len());
        }
        let bytes: Arc<[u8]> = buf.into();
        let mut shares: HashMap<PeerId, Share> = HashMap::new();
        let mut order: Vec<PeerId> = Vec::new();
        let mut i = 0;
        while i < outbound.len() {
            let to = &outbound[i].to;
            let mut j = i + 1;
            while j < outbound.len() && Arc::ptr_eq(&outbound[j].to, to) {
                j += 1;
            }
            // Messages i..j share their recipients; who is left out of which.
            let mut left_out: HashMap<PeerId, Vec<usize>> = HashMap::new();
            for (k, out) in outbound.iter().enumerate().take(j).skip(i) {
                for &peer in &out.except {
                    left_out.entry(peer).or_default().push(k);
                }
            }
            for &peer in to.iter() {
                let share = shares.entry(peer).or_insert_with(|| {
                    order.push(peer);
                    Share::default()
                });
                // The messages between the ones it is left out of, as runs.
                let mut from = i;
                let skips = left_out.get(&peer).map_or(&[][..], Vec::as_slice);
                for &skip in skips.iter().chain(std::iter::once(&j)) {
                    if skip > from {
                        share.add(spans[from].start..spans[skip - 1].end, skip - from);
                    }
                    from = skip + 1;
                }
            }
            i = j;
        }
        let shares = order
            .into_iter()
            .filter_map(|peer| {
                let share = shares.remove(&peer)?;
                (share.messages > 0).then(|| {
                    (
                        peer,
                        Slices {
                            bytes: Arc::clone(&bytes),
                            ranges: share.ranges,
                            messages: share.messages,
                        },
                    )
                })
            })
            .collect();
        Round { shares }
    }
}

/// The least time between two rounds, per peer: a round costs each peer a
/// writer wake-up and a write, about 10 µs here, so sending takes at most
/// about 40% of the time. A few peers: rounds as fast as events come.
const GAP_PER_PEER: Duration = Duration::from_micros(25);
/// ... and at most this.
pub(super) const ROUND_GAP: Duration = Duration::from_millis(50);
/// The most a round waits for sessions exchanging OPENs. A session stuck
/// there (a peer that sends no OPEN) delays rounds by this much at most.
pub(super) const SETUP_HOLD: Duration = Duration::from_secs(1);
/// How long after the last session exchanging OPENs a held round still
/// waits, per peer and at most: spokes dialling in waves (as many at once
/// as they allow themselves) leave moments with none between two waves.
const SETTLE_PER_PEER: Duration = Duration::from_micros(10);
pub(super) const SETTLE: Duration = Duration::from_millis(20);

/// `per_peer` times `peers`, at most `most`.
fn scaled(per_peer: Duration, peers: usize, most: Duration) -> Duration {
    per_peer
        .saturating_mul(u32::try_from(peers).unwrap_or(u32::MAX))
        .min(most)
}

/// When the next round goes.
pub(super) struct RoundClock {
    last: Option<Instant>,
    due: Option<Instant>,
    /// When sessions were last seen exchanging OPENs.
    opening: Option<Instant>,
    /// The neighbors: what a round costs.
    peers: usize,
}

impl RoundClock {
    pub(super) fn new() -> Self {
        RoundClock {
            last: None,
            due: None,
            opening: None,
            peers: 0,
        }
    }

    /// How many neighbors there are.
    pub(super) fn peers(&mut self, peers: usize) {
        self.peers = peers;
    }

    /// The RIB changed at `now`: a round is due, a gap after the last one.
    pub(super) fn changed(&mut self, now: Instant) {
        if self.due.is_none() {
            let gap = scaled(GAP_PER_PEER, self.peers, ROUND_GAP);
            self.due = Some(self.last.map_or(now, |t| (t + gap).max(now)));
        }
    }

    /// Sessions are exchanging OPENs at `now`.
    pub(super) fn opening(&mut self, now: Instant) {
        self.opening = Some(now);
    }

    /// When the round goes (`None`: nothing to send); `opening`: sessions
    /// are exchanging OPENs now.
    pub(super) fn at(&self, opening: bool) -> Option<Instant> {
        let due = self.due?;
        let held = match (opening, self.opening) {
            (true, _) => due + SETUP_HOLD,
            (false, Some(seen)) => seen + scaled(SETTLE_PER_PEER, self.peers, SETTLE),
            (false, None) => due,
        };
        Some(held.clamp(due, due + SETUP_HOLD))
    }

    /// The round went at `now`.
    pub(super) fn sent(&mut self, now: Instant) {
        self.due = None;
        self.last = Some(now);
    }
}

/// One peer's runs, merged where they touch.
#[derive(Default)]
struct Share {
    ranges: Vec<Range<usize>>,
    messages: u64,
}

impl Share {
    fn add(&mut self, range: Range<usize>, messages: usize) {
        self.messages += messages as u64;
        if range.is_empty() {
            return;
        }
        match self.ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.ranges.push(range),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        bgp::{
            rib::Changes,
            types::{Origin, PathAttributes, Update},
            wire::encode_to_vec,
        },
        net::Ipv4Prefix,
    };

    /// An UPDATE announcing 10.0.`n`.0/24.
    fn update(n: u8) -> Arc<Update> {
        Arc::new(Update {
            withdrawn: vec![],
            attributes: Some(PathAttributes {
                origin: Origin::Igp,
                as_path: vec![],
                next_hop: Ipv4Addr::new(10, 9, 0, n),
                med: None,
                local_pref: Some(100),
                atomic_aggregate: false,
                aggregator: None,
                communities: vec![],
                originator_id: None,
                cluster_list: vec![],
                other: vec![],
            }),
            nlri: vec![Ipv4Prefix::new(Ipv4Addr::new(10, 0, n, 0), 24).unwrap()],
        })
    }

    fn peers(ids: &[u32]) -> Arc<[PeerId]> {
        ids.iter().copied().map(PeerId).collect()
    }

    /// A group of four reflecting three routes (each not back to the
    /// peer it came from), one peer's own message, and a full table to two
    /// peers that came up: the round's shape in `Rib::take_changes`.
    fn round() -> Changes {
        let group = peers(&[1, 2, 3, 4]);
        let joiners = peers(&[5, 6]);
        let out = |n: u8, to: &Arc<[PeerId]>, except: &[u32]| Outbound {
            update: update(n),
            to: Arc::clone(to),
            except: except.iter().copied().map(PeerId).collect(),
        };
        Changes {
            outbound: vec![
                out(1, &group, &[1]),
                out(2, &group, &[2]),
                out(3, &group, &[]),
                out(4, &peers(&[2]), &[]),
                out(5, &joiners, &[]),
                out(6, &joiners, &[6]),
            ],
            fib: vec![],
        }
    }

    fn received(slices: &Slices) -> Vec<u8> {
        slices
            .ranges
            .iter()
            .flat_map(|r| slices.bytes[r.clone()].iter().copied())
            .collect()
    }

    #[test]
    fn each_peer_gets_its_updates_in_order_and_nothing_else() {
        let changes = round();
        let built = Round::build(&changes.outbound);
        let got: HashMap<PeerId, &Slices> = built.shares.iter().map(|(p, s)| (*p, s)).collect();
        assert_eq!(got.len(), 6);
        for peer in (1..=6).map(PeerId) {
            let want: Vec<u8> = changes
                .for_peer(peer)
                .into_iter()
                .flat_map(|u| encode_to_vec(&Message::Update(u.clone())).unwrap())
                .collect();
            let slices = got[&peer];
            assert_eq!(received(slices), want, "{peer}");
            assert_eq!(slices.messages, changes.for_peer(peer).len() as u64);
        }
    }

    #[test]
    fn a_peer_left_out_of_nothing_gets_one_run_per_recipient_set() {
        let changes = round();
        let built = Round::build(&changes.outbound);
        let ranges = |id: u32| {
            built
                .shares
                .iter()
                .find(|(p, _)| *p == PeerId(id))
                .map(|(_, s)| s.ranges.len())
                .unwrap()
        };
        assert_eq!(ranges(3), 1, "messages 1 to 3 in one run");
        assert_eq!(ranges(1), 1, "messages 2 and 3");
        // 1, then 3 and 4 (its own message follows the group's).
        assert_eq!(ranges(2), 2);
        assert_eq!(ranges(6), 1);
        // All recipients share one buffer.
        let first = &built.shares[0].1.bytes;
        assert!(
            built
                .shares
                .iter()
                .all(|(_, s)| Arc::ptr_eq(&s.bytes, first))
        );
    }

    #[test]
    fn rounds_are_spaced_and_wait_for_sessions_exchanging_opens() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut clock = RoundClock::new();
        clock.peers(4000);
        assert_eq!(clock.at(false), None, "nothing changed");
        // The first change goes at once; the next waits out the gap.
        clock.changed(t0);
        assert_eq!(clock.at(false), Some(t0));
        clock.sent(t0);
        clock.changed(ms(5));
        assert_eq!(clock.at(false), Some(t0 + ROUND_GAP));
        // Later changes join the round already due.
        clock.changed(ms(20));
        assert_eq!(clock.at(false), Some(t0 + ROUND_GAP));
        // Sessions exchanging OPENs hold it, for a bounded time, and a
        // moment more once none is.
        assert_eq!(clock.at(true), Some(t0 + ROUND_GAP + SETUP_HOLD));
        clock.opening(ms(300));
        assert_eq!(clock.at(false), Some(ms(300) + SETTLE));
        clock.opening(ms(2000));
        assert_eq!(clock.at(false), Some(t0 + ROUND_GAP + SETUP_HOLD));
        clock.sent(ms(400));
        assert_eq!(clock.at(true), None);
        // Long after the last round, a change goes at once.
        clock.changed(ms(3000));
        assert_eq!(clock.at(false), Some(ms(3000)));
    }

    /// A round costs each peer about the same: with few peers, rounds may
    /// come closer and hold for less.
    #[test]
    fn gaps_and_holds_shrink_with_the_neighbors() {
        let t0 = Instant::now();
        let mut clock = RoundClock::new();
        clock.peers(100);
        clock.changed(t0);
        clock.sent(t0);
        clock.changed(t0);
        assert_eq!(clock.at(false), Some(t0 + Duration::from_micros(2500)));
        clock.opening(t0 + Duration::from_millis(10));
        assert_eq!(
            clock.at(false),
            Some(t0 + Duration::from_millis(10) + Duration::from_millis(1))
        );
        assert_eq!(
            scaled(GAP_PER_PEER, 2000, ROUND_GAP),
            ROUND_GAP,
            "2,000 peers: the most"
        );
    }

    #[test]
    fn a_peer_left_out_of_everything_it_was_named_for_gets_nothing() {
        let only = peers(&[7]);
        let outbound = vec![Outbound {
            update: update(1),
            to: only,
            except: vec![PeerId(7)],
        }];
        assert!(Round::build(&outbound).shares.is_empty());
    }
}

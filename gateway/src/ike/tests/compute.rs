//! Offload (`Engine::set_offload`): the handshakes' jobs leave as
//! `Action::Compute` and their answers come with `Engine::computed`.

use super::*;
use crate::ike::job::{Computed, Job};

/// The one job among `actions`, which must be all there is.
fn only_job(actions: Vec<Action>) -> Job {
    match <[Action; 1]>::try_from(actions) {
        Ok([Action::Compute(job)]) => job,
        Ok([other]) => panic!("expected a job, got {other:?}"),
        Err(actions) => panic!("expected one job, got {actions:?}"),
    }
}

fn run(job: Job, seed: u64) -> Computed {
    job.run(&mut SeededRng(seed))
}

fn offloaded() -> (Engine, MemPools, Initiator) {
    let mut engine = hub("");
    engine.set_offload(true);
    let pools = MemPools {
        size: 10,
        ..MemPools::default()
    };
    let initiator = Initiator::new(
        spoke("aes256-sha256-ecp256", "aes256gcm16", Mode::Tunnel),
        Box::new(SeededRng(41)),
    );
    (engine, pools, initiator)
}

/// Each handshake step answers once its job is done; a retransmission that
/// arrives meanwhile starts no second job and gets no answer yet (RFC 7296
/// section 2.1), one that arrives after gets the cached answer.
#[test]
fn an_offloaded_handshake_answers_when_its_job_comes_back() {
    let (mut engine, mut pools, mut initiator) = offloaded();
    let now = Instant::now();
    let init = initiator.start().unwrap();
    let job = only_job(engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
    let again = engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap();
    assert!(again.is_empty(), "no second job, no answer: {again:?}");
    assert!(engine.report(now).is_empty(), "no SA before its keys");
    let done = engine.computed(now, run(job, 5), &mut pools);
    let response = sends(&done);
    assert_eq!(response.len(), 1, "{done:?}");
    assert_eq!(
        sends(&engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap()),
        response,
        "answered from the cache now"
    );
    let Step::Send(auth) = initiator.handle(&response[0]).unwrap() else {
        panic!()
    };
    let job = only_job(engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap());
    let again = engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap();
    assert!(again.is_empty(), "no second job, no answer: {again:?}");
    let done = engine.computed(now, run(job, 6), &mut pools);
    assert!(done.iter().any(|a| matches!(a, Action::SessionUp { .. })));
    child_up(&done);
    let response = sends(&done);
    assert_eq!(response.len(), 1, "{done:?}");
    assert!(matches!(
        initiator.handle(&response[0]).unwrap(),
        Step::Established(_)
    ));
    assert_eq!(
        sends(&engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap()),
        response,
        "answered from the cache now"
    );
}

/// A job the workers had no room for is abandoned: its request is
/// forgotten, and the peer's retransmission makes a new job.
#[test]
fn an_abandoned_job_leaves_room_for_the_retransmission() {
    let (mut engine, mut pools, mut initiator) = offloaded();
    let now = Instant::now();
    let init = initiator.start().unwrap();
    let job = only_job(engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
    engine.abandon(&job);
    let job = only_job(engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
    let response = sends(&engine.computed(now, run(job, 5), &mut pools));
    let Step::Send(auth) = initiator.handle(&response[0]).unwrap() else {
        panic!()
    };
    let job = only_job(engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap());
    engine.abandon(&job);
    let job = only_job(engine.handle(now, HUB, SPOKE, &auth, &mut pools).unwrap());
    let response = sends(&engine.computed(now, run(job, 6), &mut pools));
    assert!(matches!(
        initiator.handle(&response[0]).unwrap(),
        Step::Established(_)
    ));
}

/// A request still computing when its half-open SA's time is up goes as
/// the SA would: the late result answers nothing and leaves nothing.
#[test]
fn a_request_still_computing_expires_like_its_half_open_sa() {
    let (mut engine, mut pools, mut initiator) = offloaded();
    let t0 = Instant::now();
    let late = t0 + Duration::from_secs(31);
    let init = initiator.start().unwrap();
    let job = only_job(engine.handle(t0, HUB, SPOKE, &init, &mut pools).unwrap());
    engine.tick(late, &mut pools);
    assert!(engine.computed(late, run(job, 5), &mut pools).is_empty());
    assert!(engine.report(late).is_empty());
    // Forgotten: the same request again is new.
    let job = only_job(engine.handle(late, HUB, SPOKE, &init, &mut pools).unwrap());

    let response = sends(&engine.computed(late, run(job, 5), &mut pools));
    let Step::Send(auth) = initiator.handle(&response[0]).unwrap() else {
        panic!()
    };
    let job = only_job(engine.handle(late, HUB, SPOKE, &auth, &mut pools).unwrap());
    let later = late + Duration::from_secs(31);
    engine.tick(later, &mut pools);
    assert!(engine.report(later).is_empty(), "the half-open SA expired");
    assert!(engine.computed(later, run(job, 6), &mut pools).is_empty());
    assert!(engine.report(later).is_empty());
    assert!(pools.bound.is_empty(), "no address leased");
}

/// The workers refuse what they have no room for, and count it; the
/// engine forgets the refused request.
#[test]
fn saturated_workers_refuse_jobs_and_the_engine_forgets_them() {
    let (mut engine, mut pools, mut initiator) = offloaded();
    let now = Instant::now();
    let (mut workers, _results) = Workers::start(0, 0).unwrap();
    let init = initiator.start().unwrap();
    let actions = engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap();
    assert!(workers.take_jobs(actions, &mut engine).is_empty());
    assert_eq!(workers.refused(), 1);
    only_job(engine.handle(now, HUB, SPOKE, &init, &mut pools).unwrap());
}

/// Jobs beyond what the workers run and queue are refused, and every job
/// taken comes back.
#[test]
fn workers_take_what_they_have_room_for_and_give_every_result_back() {
    let mut engine = hub("");
    engine.set_offload(true);
    let (local, remote) = addrs();
    let jobs: Vec<Job> = (1..=50)
        .map(|spi| {
            let init = modp_init(spi);
            only_job(
                engine
                    .handle(Instant::now(), local, remote, &init, &mut NoPools)
                    .unwrap(),
            )
        })
        .collect();
    let (mut workers, mut results) = Workers::start(1, 1).unwrap();
    let taken = jobs
        .into_iter()
        .filter_map(|job| workers.submit(job).ok())
        .count();
    // One running and one queued, and what the worker finished while the
    // jobs went in (milliseconds each): far from fifty.
    assert!((1..50).contains(&taken), "{taken} taken");
    assert_eq!(workers.refused(), 50 - taken as u64);
    for _ in 0..taken {
        let done = results.blocking_recv().expect("a result per job taken");
        assert_eq!(
            sends(&engine.computed(Instant::now(), done, &mut NoPools)).len(),
            1
        );
    }
}

//! The handshakes' expensive steps (`ike::job`), run here or handed out:
//! with offload off (the default, and what tests and benchmarks drive) a
//! job runs at once on the engine's RNG; with it on, it leaves as
//! `Action::Compute` and its result comes back through
//! [`Engine::computed`], while the engine serves other SAs. In between the
//! engine keeps the request, and drops its retransmissions (RFC 7296
//! section 2.1: the answer comes once it is computed).

use std::time::{Duration, Instant};

use super::{Asked, Engine};
use crate::ike::{
    exchange::{self, ike_auth, ike_sa_init},
    job::{Computed, Done, Job, Work},
    sa::{Action, AddressPools, SaState},
    wire::Payload,
};

/// An IKE_AUTH request whose AUTH is being checked.
pub(super) struct Verifying {
    pub(super) asked: Asked,
    pub(super) inner: Vec<Payload>,
    pub(super) identified: ike_auth::Identified,
}

impl Engine {
    /// With `on`, jobs go out as `Action::Compute` for the caller to run
    /// (on other threads: `ike::workers`) and hand back with
    /// [`Engine::computed`]; without, the engine runs them itself.
    pub fn set_offload(&mut self, on: bool) {
        self.offload = on;
    }

    /// The job's result: the answer to the request it was for, unless that
    /// went meanwhile (its half-open SA expired or was deleted).
    pub fn computed(
        &mut self,
        now: Instant,
        computed: Computed,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        match computed.0 {
            Done::Init { spi_r, result } => {
                let Some(accepted) = self.computing_init.remove(&spi_r) else {
                    return Vec::new();
                };
                let (remote, spi_i) = (accepted.remote, accepted.spi_i);
                match ike_sa_init::respond(
                    &mut *self.rng,
                    accepted,
                    result,
                    self.forced_encapsulation,
                    self.next_tunnel_id,
                ) {
                    Ok((sa, actions)) => {
                        self.next_tunnel_id = self.next_tunnel_id.wrapping_add(1).max(1);
                        self.sas.insert(spi_r, sa);
                        actions
                    }
                    Err(refused) => {
                        self.by_initiator.remove(&(remote, spi_i));
                        refused
                    }
                }
            }
            Done::Auth { spi, our_auth } => {
                let Some(verifying) = self.computing_auth.remove(&spi) else {
                    return Vec::new();
                };
                let Some(mut sa) = self
                    .sas
                    .remove(&spi)
                    .filter(|sa| sa.state == SaState::HalfOpen)
                else {
                    return Vec::new();
                };
                let mut ctx = exchange::Context {
                    policy: &self.policy,
                    rng: &mut *self.rng,
                    child_spis: &mut self.child_spis,
                    now,
                };
                let Verifying {
                    asked,
                    inner,
                    identified,
                } = verifying;
                let answer =
                    ike_auth::respond(&mut sa, &mut ctx, pools, &inner, identified, our_auth);
                self.answer(spi, sa, &asked, answer, now, pools)
            }
        }
    }

    /// The job will not run (the workers are saturated): its request is
    /// forgotten, so that the peer's retransmission starts it afresh.
    pub fn abandon(&mut self, job: &Job) {
        match &*job.0 {
            Work::Init(j) => {
                if let Some(accepted) = self.computing_init.remove(&j.spi_r) {
                    self.by_initiator.remove(&(accepted.remote, accepted.spi_i));
                }
            }
            Work::Auth(j) => {
                self.computing_auth.remove(&j.spi);
            }
        }
    }

    /// Runs `job` now, or hands it out.
    pub(super) fn dispatch(
        &mut self,
        job: Job,
        now: Instant,
        pools: &mut dyn AddressPools,
    ) -> Vec<Action> {
        if self.offload {
            return vec![Action::Compute(job)];
        }
        let done = job.run(&mut *self.rng);
        self.computed(now, done, pools)
    }

    /// Forgets IKE_SA_INITs computing for longer than `timeout`, as their
    /// half-open SAs would have expired by now.
    pub(super) fn expire_computing(&mut self, now: Instant, timeout: Duration) {
        let by_initiator = &mut self.by_initiator;
        self.computing_init.retain(|_, a| {
            let keep = now.duration_since(a.received) <= timeout;
            if !keep {
                by_initiator.remove(&(a.remote, a.spi_i));
            }
            keep
        });
    }
}

//! The crypto workers: threads that run the handshakes' jobs (`ike::job`:
//! IKE_SA_INIT's Diffie-Hellman and key derivation, IKE_AUTH's AUTH) for
//! the IKE task, so that concurrent handshakes use every core while the
//! task goes on answering established SAs (liveness checks, DELETEs)
//! between them.
//!
//! Message passing only: a job goes into one worker's channel, its result
//! into the task's. Bounded: each worker queues at most `queue` jobs; when
//! every queue is full the job is refused and counted, and the engine
//! forgets its request (`Engine::abandon`) as if the datagram had been
//! lost, so that a flood of IKE_SA_INITs cannot pile up work: the peers
//! that matter retransmit.

use std::{
    sync::mpsc::{self as std_mpsc, SyncSender, TrySendError},
    thread,
};

use tokio::sync::mpsc;

use crate::{
    ike::{
        engine::Engine,
        job::{Computed, Job},
        sa::Action,
    },
    ipsec::SystemRng,
};

/// Jobs each worker queues: at some 50-100 us a job, a few milliseconds of
/// work, against the seconds a peer waits before it retransmits.
pub const QUEUE: usize = 64;

/// One worker per core (the task and the datapath threads preempt them as
/// the scheduler sees fit).
pub fn default_threads() -> usize {
    thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

pub struct Workers {
    queues: Vec<SyncSender<Job>>,
    /// The queue the next job tries first (round robin).
    next: usize,
    refused: u64,
    /// Kept so that the results channel stays open with no worker.
    _results: mpsc::UnboundedSender<Computed>,
}

impl Workers {
    /// Starts `threads` workers (none: everything is refused) and returns
    /// the receiver of their results. Unbounded, as what is in flight is
    /// bounded by the queues.
    pub fn start(
        threads: usize,
        queue: usize,
    ) -> std::io::Result<(Workers, mpsc::UnboundedReceiver<Computed>)> {
        let (results, computed) = mpsc::unbounded_channel();
        let mut queues = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = std_mpsc::sync_channel::<Job>(queue);
            let results = results.clone();
            // Ends when the task drops the workers (the channel closes).
            thread::Builder::new()
                .name(format!("ike-crypto{i}"))
                .spawn(move || {
                    let mut rng = SystemRng;
                    while let Ok(job) = rx.recv() {
                        if results.send(job.run(&mut rng)).is_err() {
                            return;
                        }
                    }
                })?;
            queues.push(tx);
        }
        let workers = Workers {
            queues,
            next: 0,
            refused: 0,
            _results: results,
        };
        Ok((workers, computed))
    }

    pub fn threads(&self) -> usize {
        self.queues.len()
    }

    /// Jobs refused so far because every queue was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Queues `job` on the first worker with room, from the next in turn;
    /// gives it back when there is none.
    pub fn submit(&mut self, mut job: Job) -> Result<(), Job> {
        let n = self.queues.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            match self.queues[i].try_send(job) {
                Ok(()) => {
                    self.next = (i + 1) % n;
                    return Ok(());
                }
                Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => job = j,
            }
        }
        self.refused += 1;
        Err(job)
    }

    /// Takes the jobs out of `actions` and queues them; those refused are
    /// abandoned on `engine`. Returns the other actions.
    pub fn take_jobs(&mut self, actions: Vec<Action>, engine: &mut Engine) -> Vec<Action> {
        let mut rest = Vec::with_capacity(actions.len());
        for action in actions {
            match action {
                Action::Compute(job) => {
                    if let Err(job) = self.submit(job) {
                        tracing::debug!(?job, "crypto workers saturated: handshake dropped");
                        engine.abandon(&job);
                    }
                }
                other => rest.push(other),
            }
        }
        rest
    }
}

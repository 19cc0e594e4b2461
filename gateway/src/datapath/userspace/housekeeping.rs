//! SA lifetimes in the userspace datapath (RFC 4301 section 4.4.2.1): once
//! a second, off the per-packet path, a thread compares every SA's byte
//! counters, age and outbound sequence number with its limits, removes the
//! SAs past a hard limit and reports soft and hard expiries to the control
//! plane. The packet path only counts; a hard limit can thus be overrun by
//! up to a second of traffic, which is what the kernel's XFRM timer does
//! for time limits too.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use super::{counters::GlobalStats, process::send_event, tables::Master};
use crate::iface::DatapathEvent;

/// How often lifetimes are checked.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What the housekeeping thread works on (shared with the datapath).
pub struct Housekeeping {
    pub master: Arc<Mutex<Master>>,
    pub events: Option<mpsc::Sender<DatapathEvent>>,
    pub global: Arc<GlobalStats>,
}

impl Housekeeping {
    /// One pass at `now`: expired SAs leave the tables before their hard
    /// expiry is reported, so the control plane never hears of an SA
    /// gone that still carries traffic. Events are never waited for (a
    /// full queue loses them, counted).
    pub fn tick(&self, now: Instant) {
        let expiry = {
            let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
            let expiry = master.expire(now);
            master.publish();
            expiry
        };
        for event in expiry.events {
            if let DatapathEvent::SaExpired { va, spi_in, hard } = &event {
                tracing::info!(%va, spi_in = format_args!("{spi_in:#010x}"), hard, "SA lifetime reached");
            }
            send_event(self.events.as_ref(), &self.global, event);
        }
    }

    /// Runs `run` on its own thread.
    pub fn spawn(self, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("datapath-housekeeping".into())
            .spawn(move || self.run(&stop))
    }

    /// Ticks every `INTERVAL` until `stop` is set (the thread is unparked
    /// then, so it stops at once).
    pub fn run(self, stop: &AtomicBool) {
        let mut next = Instant::now() + INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now < next {
                std::thread::park_timeout(next - now);
                continue;
            }
            self.tick(now);
            next = now + INTERVAL;
        }
    }
}

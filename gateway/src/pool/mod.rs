//! Address pools: IOS `ip local pool NAME FIRST LAST`, handed out to spokes in
//! the IKEv2 configuration payload (INTERNAL_IP4_ADDRESS).
//!
//! A spoke identity keeps its address: its lease stays bound to it while it
//! is away (idle) and across hub restarts, so it gets the same address back.
//! A new identity gets the lowest address never leased; when every address is
//! bound, the idle lease released longest ago is reclaimed; when every address
//! is in use, the pool is exhausted and the spoke is refused.
//!
//! Every change is written to `STATE_DIR/pool-leases.json` (see [`store`])
//! before the call returns; a change that cannot be written is not made, so
//! the hub never hands out an address it could not record.
//!
//! The bookkeeping ([`leases`]) does no I/O and costs O(log n) per call. The
//! file, though, is rewritten whole on every change, O(leases): measured on
//! the development machines (release build), encoding 5,000 leases (540 KB)
//! takes about 1 ms and the write with its two fsyncs about 4 ms, so one
//! change costs ~5 ms at 5,000 leases and ~7 ms at 10,000, i.e. ~150-200
//! leases recorded per second. A reconnect to an already active lease writes
//! nothing. That suits spokes arriving at normal rates; a mass reconnect
//! after a hub restart at IKE setup rates (hundreds per second) would wait on
//! it, so if the scale benchmark shows that, batch the changes of one tick
//! into one write (answering the spokes after it) or move to an append-only
//! journal.

mod leases;
pub mod show;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use gateway_report::pool::{LeaseReport, PoolReport};
use serde::{Deserialize, Serialize};

use crate::config;
use leases::{Grant, Lease, LoadProblem, PoolLeases, Released};
pub use store::LEASE_FILE;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The profile names a pool that is not configured.
    #[error("no pool named \"{pool}\"")]
    UnknownPool { pool: String },
    /// Every address of the pool is in use by a connected spoke. The caller
    /// answers INTERNAL_ADDRESS_FAILURE.
    #[error("pool \"{pool}\" is exhausted: every address is in use")]
    Exhausted { pool: String },
    #[error("{}: cannot create the state directory: {source}", .dir.display())]
    StateDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read the lease file: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The lease file is not what this gateway writes. Never discarded
    /// silently: that would hand one spoke's address to another.
    #[error(
        "{}: the lease file is corrupt ({reason}); it was left as it is, since starting with \
         empty pools could give one spoke's address to another. Move it aside (mv {0} {0}.bad) \
         to start with empty pools anyway (spokes may then get different addresses), or repair it",
        .path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{}: lease file version {found} is not supported (this gateway reads version {}); it \
         was written by another release of the gateway. Run that release, or move the file \
         aside (mv {0} {0}.bad) to start with empty pools",
        .path.display(),
        store::VERSION
    )]
    Version { path: PathBuf, found: u32 },
    /// The change could not be recorded; it was not made (acquire) or is
    /// only in memory (release).
    #[error("{}: cannot save the leases: {source}", .path.display())]
    Persist {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A lease's state: `Active` while a session holds the address, `Idle` when
/// the spoke is gone (the address stays bound to its identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    Active,
    Idle,
}

impl LeaseState {
    /// As the lease file and `show ip local pool --json` spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Idle => "idle",
        }
    }
}

/// The configured pools and their leases, persisted in the state directory.
#[derive(Debug)]
pub struct Pools {
    dir: PathBuf,
    path: PathBuf,
    by_name: BTreeMap<String, PoolLeases>,
    /// The latest `now` seen, written as the file's `saved_at`.
    saved_at: u64,
}

impl Pools {
    /// Opens the pools of the configuration with the leases recorded in
    /// `state_dir` (created, mode 0700, if missing).
    ///
    /// Leases that no longer fit the configuration (address outside its
    /// pool's range, or pool removed) are dropped with a warning; they leave
    /// the file on the next change. Leases that were active become idle: no
    /// session survives a restart, and each spoke gets its address back when
    /// it reconnects.
    pub fn open(
        state_dir: &Path,
        pools: &BTreeMap<String, config::Pool>,
    ) -> Result<Self, PoolError> {
        store::create_dir(state_dir).map_err(|source| PoolError::StateDir {
            dir: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(LEASE_FILE);
        let mut this = Self {
            dir: state_dir.to_owned(),
            path,
            by_name: pools
                .iter()
                .map(|(name, p)| (name.clone(), PoolLeases::new(p.first, p.last)))
                .collect(),
            saved_at: 0,
        };
        match std::fs::read(&this.path) {
            Ok(bytes) => this.load(&bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PoolError::Read {
                    path: this.path,
                    source,
                });
            }
        }
        // A crash between writing and renaming leaves the temporary file.
        let _ = std::fs::remove_file(store::temp_path(&this.path));
        Ok(this)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), PoolError> {
        let file = store::decode(bytes).map_err(|e| match e {
            store::DecodeError::Corrupt(reason) => PoolError::Corrupt {
                path: self.path.clone(),
                reason,
            },
            store::DecodeError::Version(found) => PoolError::Version {
                path: self.path.clone(),
                found,
            },
        })?;
        self.saved_at = file.saved_at;
        let path = self.path.clone();
        let corrupt = |reason: String| PoolError::Corrupt {
            path: path.clone(),
            reason,
        };
        for (name, leases) in file.pools {
            let Some(pool) = self.by_name.get_mut(&name) else {
                for l in &leases {
                    tracing::warn!(
                        pool = %name,
                        identity = %l.identity,
                        address = %l.address,
                        "lease dropped: pool {name} is no longer configured"
                    );
                }
                continue;
            };
            for l in leases {
                let lease = Lease {
                    sessions: u32::from(l.state == LeaseState::Active),
                    identity: l.identity,
                    since: l.since,
                };
                match pool.load(l.address, lease.clone()) {
                    Ok(()) => {}
                    Err(LoadProblem::OutOfRange) => tracing::warn!(
                        pool = %name,
                        identity = %lease.identity,
                        address = %l.address,
                        "lease dropped: {} is outside pool {name} ({}..{}) since the \
                         configuration changed; the spoke gets a new address",
                        l.address,
                        pool.first(),
                        pool.last()
                    ),
                    Err(LoadProblem::DuplicateAddress { identity }) => {
                        return Err(corrupt(format!(
                            "pool \"{name}\": {} is leased to both \"{identity}\" and \"{}\"",
                            l.address, lease.identity
                        )));
                    }
                    Err(LoadProblem::DuplicateIdentity { address }) => {
                        return Err(corrupt(format!(
                            "pool \"{name}\": \"{}\" holds both {address} and {}",
                            lease.identity, l.address
                        )));
                    }
                }
            }
        }
        let at = self.saved_at;
        let was_active: u64 = self.by_name.values_mut().map(|p| p.idle_all(at)).sum();
        if was_active > 0 {
            tracing::info!(
                leases = was_active,
                "leases active at the last stop are idle until their spokes reconnect"
            );
        }
        Ok(())
    }

    /// An address from `pool` for the spoke `identity` at `now` (unix
    /// seconds), recorded before it returns:
    ///
    /// - the identity's own address, whether its lease is idle or still
    ///   active (a reconnect before the old session died: the address then
    ///   stays active until both sessions released it);
    /// - else the lowest address never leased (or whose lease was dropped);
    /// - else, every address being bound, the idle lease released longest
    ///   ago, taken from its identity (logged);
    /// - else [`PoolError::Exhausted`].
    pub fn acquire(&mut self, pool: &str, identity: &str, now: u64) -> Result<Ipv4Addr, PoolError> {
        let leases = self.by_name.get_mut(pool).ok_or_else(|| unknown(pool))?;
        let Some((address, grant)) = leases.acquire(identity, now) else {
            return Err(PoolError::Exhausted {
                pool: pool.to_owned(),
            });
        };
        if grant == Grant::Reconnect {
            tracing::debug!(pool, identity, %address, "lease still active: a reconnect");
            return Ok(address);
        }
        let saved_at = self.saved_at;
        self.saved_at = saved_at.max(now);
        if let Err(e) = self.persist() {
            self.saved_at = saved_at;
            if let Some(leases) = self.by_name.get_mut(pool) {
                leases.revert(address, &grant);
            }
            return Err(e);
        }
        match &grant {
            Grant::Reclaimed { previous } => tracing::warn!(
                pool,
                old_identity = %previous.identity,
                %address,
                new_identity = identity,
                "pool {pool} full: reclaimed {address}, idle since {}, from {} for {identity}",
                previous.since,
                previous.identity
            ),
            Grant::Fresh | Grant::Returning { .. } => {
                tracing::debug!(pool, identity, %address, "lease active");
            }
            Grant::Reconnect => {}
        }
        Ok(address)
    }

    /// A session on `address` ended at `now`: once no session holds it, the
    /// lease becomes idle, still bound to its identity. Recorded before it
    /// returns; on a [`PoolError::Persist`] the lease is idle in memory and
    /// the next change records it.
    pub fn release(&mut self, pool: &str, address: Ipv4Addr, now: u64) -> Result<(), PoolError> {
        let leases = self.by_name.get_mut(pool).ok_or_else(|| unknown(pool))?;
        match leases.release(address, now) {
            Released::Idle => {
                tracing::debug!(pool, %address, "lease idle");
                self.saved_at = self.saved_at.max(now);
                self.persist()
            }
            Released::StillHeld => {
                tracing::debug!(pool, %address, "lease still held by another session");
                Ok(())
            }
            Released::AlreadyIdle => {
                tracing::debug!(pool, %address, "lease already idle");
                Ok(())
            }
            Released::NotLeased => {
                tracing::warn!(pool, %address, "release of an address that is not leased");
                Ok(())
            }
        }
    }

    /// The pools and their leases, by pool name and address.
    pub fn report(&self) -> Vec<PoolReport> {
        self.by_name
            .iter()
            .map(|(name, p)| PoolReport {
                name: name.clone(),
                first: p.first(),
                last: p.last(),
                size: p.size(),
                in_use: p.in_use(),
                idle: p.idle(),
                free: p.free(),
                leases: p
                    .leases()
                    .map(|(address, l)| LeaseReport {
                        address,
                        identity: l.identity.clone(),
                        state: if l.is_active() {
                            LeaseState::Active
                        } else {
                            LeaseState::Idle
                        }
                        .as_str()
                        .to_owned(),
                        since: l.since,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn persist(&self) -> Result<(), PoolError> {
        let bytes = store::encode(
            self.saved_at,
            self.by_name.iter().map(|(name, p)| (name.as_str(), p)),
        );
        store::write_atomic(&self.dir, &self.path, &bytes).map_err(|source| PoolError::Persist {
            path: self.path.clone(),
            source,
        })
    }
}

fn unknown(pool: &str) -> PoolError {
    PoolError::UnknownPool {
        pool: pool.to_owned(),
    }
}

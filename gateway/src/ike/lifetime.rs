//! Lifetimes (RFC 7296 section 2.8): each end keeps its own, nothing is
//! negotiated, and the end whose lifetime runs out first rekeys. Jittered,
//! so that a thousand spokes that came up together do not rekey together.

use std::time::Instant;

use crate::{
    iface::SaLifetime,
    ike::{
        policy::{Policy, Rekey},
        sa::IkeSa,
    },
    ipsec::Rng,
};

/// The profile's lifetimes, or the IOS defaults for an SA without one.
pub(crate) fn rekey_of(policy: &Policy, sa: &IkeSa) -> Rekey {
    sa.profile
        .as_ref()
        .and_then(|name| policy.profiles.iter().find(|p| p.name == *name))
        .map(|p| p.rekey)
        .unwrap_or_default()
}

/// A fraction in [0.85, 0.95): where in its lifetime an SA is rekeyed, so
/// that a thousand spokes that came up together do not rekey together.
fn jitter(rng: &mut dyn Rng) -> f64 {
    let mut b = [0u8; 2];
    rng.fill(&mut b);
    0.85 + f64::from(u16::from_be_bytes(b)) / f64::from(u16::MAX) * 0.1
}

/// A CHILD_SA's limits for the datapath: hard at the profile's lifetime
/// (seconds and kilobytes), soft somewhat before (jittered).
pub(crate) fn child_lifetime(rekey: &Rekey, rng: &mut dyn Rng) -> SaLifetime {
    let f = jitter(rng);
    let hard_seconds = rekey.ipsec_lifetime.as_secs();
    let hard_bytes = rekey.ipsec_kilobytes.saturating_mul(1024);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let scale = |v: u64| ((v as f64) * f) as u64;
    SaLifetime {
        soft_bytes: Some(scale(hard_bytes)),
        hard_bytes: Some(hard_bytes),
        soft_seconds: Some(scale(hard_seconds).max(1)),
        hard_seconds: Some(hard_seconds),
    }
}

/// Sets when the IKE SA is rekeyed (jittered) and when it must be gone.
pub(crate) fn schedule_ike_rekey(sa: &mut IkeSa, rekey: &Rekey, rng: &mut dyn Rng, now: Instant) {
    let life = rekey.ike_lifetime;
    sa.rekey_at = Some(now + life.mul_f64(jitter(rng)));
    sa.expire_at = Some(now + life);
}

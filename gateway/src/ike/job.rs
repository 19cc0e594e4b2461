//! The expensive part of answering a handshake, as data in and data out so
//! that it can run on another thread (`ike::workers`) while the engine goes
//! on with other SAs: IKE_SA_INIT's Diffie-Hellman and key derivation (RFC
//! 7296 section 2.14), IKE_AUTH's AUTH payloads (section 2.15). A job
//! carries copies of what it needs and names its IKE SA by our SPI; the
//! engine keeps the rest of the request until the result comes back
//! (`Engine::computed`).

use crate::{
    ike::{
        crypto::{self, CryptoError, IkeKeys, Prf},
        proposal::IkeChoice,
    },
    ipsec::{Rng, Secret},
};

/// Work for the crypto workers, from `Action::Compute`.
#[derive(Clone)]
pub struct Job(pub(crate) Box<Work>);

#[derive(Clone)]
pub(crate) enum Work {
    Init(InitJob),
    Auth(AuthJob),
}

/// A job's result, for `Engine::computed`.
pub struct Computed(pub(crate) Done);

pub(crate) enum Done {
    Init {
        spi_r: u64,
        result: Result<InitKeys, InitFailed>,
    },
    /// Our AUTH data, or `None`: the initiator's AUTH does not verify.
    Auth { spi: u64, our_auth: Option<Vec<u8>> },
}

impl std::fmt::Debug for Job {
    /// Which exchange and SA; never the secrets inside.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            Work::Init(_) => "IKE_SA_INIT",
            Work::Auth(_) => "IKE_AUTH",
        };
        write!(f, "Job({kind}, {:016x})", self.spi())
    }
}

impl Job {
    /// Our SPI of the IKE SA the job belongs to.
    pub fn spi(&self) -> u64 {
        match &*self.0 {
            Work::Init(j) => j.spi_r,
            Work::Auth(j) => j.spi,
        }
    }

    /// Does the work. `rng` draws our Diffie-Hellman private value.
    pub fn run(self, rng: &mut dyn Rng) -> Computed {
        Computed(match *self.0 {
            Work::Init(j) => Done::Init {
                spi_r: j.spi_r,
                result: j.run(rng),
            },
            Work::Auth(j) => Done::Auth {
                spi: j.spi,
                our_auth: j.run(),
            },
        })
    }
}

/// The responder's keys for a new IKE SA: our KE, and SKEYSEED's keys.
#[derive(Clone)]
pub(crate) struct InitJob {
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) choice: IkeChoice,
    /// The initiator's Key Exchange Data.
    pub(crate) peer_ke: Vec<u8>,
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
}

pub(crate) struct InitKeys {
    /// Our Key Exchange Data.
    pub(crate) public: Vec<u8>,
    pub(crate) keys: IkeKeys,
}

/// Which step failed: ours (no private value) or the peer's (its KE).
pub(crate) enum InitFailed {
    Generate(CryptoError),
    PeerKe(CryptoError),
}

impl InitJob {
    fn run(self, rng: &mut dyn Rng) -> Result<InitKeys, InitFailed> {
        let dh = self.choice.dh.generate(rng).map_err(InitFailed::Generate)?;
        let shared = dh
            .shared_secret(&self.peer_ke)
            .map_err(InitFailed::PeerKe)?;
        let c = self.choice;
        let keys = IkeKeys::derive(
            c.prf, c.encr, c.integ, &self.ni, &self.nr, &shared, self.spi_i, self.spi_r,
        );
        Ok(InitKeys {
            public: dh.public_key().to_vec(),
            keys,
        })
    }
}

/// What one side's AUTH covers (section 2.15): its IKE_SA_INIT message,
/// the other side's nonce, and `prf(SK_px, IDx')`.
#[derive(Clone)]
pub(crate) struct Signed {
    pub(crate) message: Vec<u8>,
    pub(crate) nonce: Vec<u8>,
    pub(crate) sk_p: Secret,
    pub(crate) id_body: Vec<u8>,
}

impl Signed {
    fn octets(&self, prf: Prf) -> Vec<u8> {
        crypto::signed_octets(&self.message, &self.nonce, prf, &self.sk_p, &self.id_body)
    }
}

/// The initiator's pre-shared-key AUTH checked, and ours made.
#[derive(Clone)]
pub(crate) struct AuthJob {
    pub(crate) spi: u64,
    pub(crate) prf: Prf,
    pub(crate) theirs: Signed,
    pub(crate) their_auth: Vec<u8>,
    pub(crate) psk_remote: Secret,
    pub(crate) ours: Signed,
    pub(crate) psk_local: Secret,
}

impl AuthJob {
    fn run(self) -> Option<Vec<u8>> {
        let theirs = self.theirs.octets(self.prf);
        if !crypto::psk_auth_verify(self.prf, &self.psk_remote, &theirs, &self.their_auth) {
            return None;
        }
        Some(crypto::psk_auth(
            self.prf,
            &self.psk_local,
            &self.ours.octets(self.prf),
        ))
    }
}

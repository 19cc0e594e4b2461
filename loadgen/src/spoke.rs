//! One simulated spoke: its sockets, its dial (IKE_SA_INIT and IKE_AUTH
//! with retransmissions, RFC 7296 section 2.1), answers to the hub's
//! requests while up, a leave and redial in the steady phase, and its
//! DELETE at the end (section 1.4.1).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use gateway::{
    config::Identity,
    ike::{
        exchange::{Initiator, InitiatorConfig, Step},
        policy::Rekey,
        proposal::{EspProposal, IkeProposal},
        wire::{Delete, Payload, ProtocolId, TrafficSelector},
    },
    ipsec::{Mode, SystemRng},
    net::{IKE_PORT, NATT_PORT},
};
use tokio::{
    net::UdpSocket,
    sync::{Semaphore, mpsc, watch},
};

use crate::{Args, report::Tally};

/// What every spoke shares: the hub, the proposals, the schedule.
pub struct SpokeSetup {
    hub: Ipv4Addr,
    source_first: u32,
    domain: String,
    psk: Vec<u8>,
    mode: Mode,
    ike: Vec<IkeProposal>,
    esp: Vec<EspProposal>,
    encap: bool,
    retransmit: Duration,
    tries: u32,
}

impl SpokeSetup {
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        let mode = match args.mode.as_str() {
            "transport" => Mode::Transport,
            "tunnel" => Mode::Tunnel,
            other => bail!("--mode: `transport` or `tunnel`, not `{other}`"),
        };
        let ike = split(&args.ike)
            .map(|p| IkeProposal::parse(p).with_context(|| format!("--ike: `{p}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let esp = split(&args.esp)
            .map(|p| EspProposal::parse(p).with_context(|| format!("--esp: `{p}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if ike.is_empty() || esp.is_empty() {
            bail!("--ike and --esp need at least one proposal each");
        }
        if !(args.retransmit > 0.0 && args.retransmit.is_finite()) || args.tries == 0 {
            bail!("--retransmit must be positive and --tries at least 1");
        }
        let first = u32::from(args.source_first);
        if first.checked_add(args.spokes).is_none() {
            bail!(
                "--source-first {} leaves no room for {} spokes",
                args.source_first,
                args.spokes
            );
        }
        Ok(SpokeSetup {
            hub: args.hub,
            source_first: first,
            domain: args.domain.clone(),
            psk: args.psk.as_bytes().to_vec(),
            mode,
            ike,
            esp,
            encap: args.encap,
            retransmit: Duration::from_secs_f64(args.retransmit),
            tries: args.tries,
        })
    }

    pub fn source(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.source_first + index)
    }

    fn initiator(&self, index: u32) -> Initiator {
        let any = TrafficSelector::ipv4(0, 0..=65535, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        let config = InitiatorConfig {
            local: SocketAddrV4::new(self.source(index), IKE_PORT),
            remote: SocketAddrV4::new(self.hub, IKE_PORT),
            identity: Identity::Fqdn(format!("spoke-{index}.{}", self.domain)),
            remote_identity: None,
            psk_local: self.psk.clone(),
            psk_remote: self.psk.clone(),
            ike: self.ike.clone(),
            esp: self.esp.clone(),
            request_address: true,
            mode: self.mode,
            ts_remote: match self.mode {
                Mode::Transport => Vec::new(),
                Mode::Tunnel => vec![any],
            },
            fragment_len: None,
            force_encapsulation: self.encap,
            route_set: Vec::new(),
            tunnel_id: index + 1,
            profile: "loadgen".to_owned(),
            virtual_template: None,
            rekey: Rekey::default(),
        };
        Initiator::new(config, Box::new(SystemRng))
    }
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// Where the run is; spokes watch it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    Dialling,
    Steady(Instant),
    /// Send a DELETE and end.
    Leave,
    /// End without a DELETE.
    Stop,
}

/// Which spokes leave and dial again in the steady phase, and when.
pub struct Plan {
    churn_at: Vec<Option<Duration>>,
}

impl Plan {
    pub fn new(spokes: u32, steady_secs: u64, fraction: f64) -> Self {
        let mut churn_at = vec![None; spokes as usize];
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let leaving = (f64::from(spokes) * fraction).round() as usize;
        if steady_secs == 0 || leaving == 0 {
            return Plan { churn_at };
        }
        let mut rng = XorShift::seeded();
        let mut order: Vec<usize> = (0..churn_at.len()).collect();
        for i in (1..order.len()).rev() {
            // Below i + 1, a usize: no truncation.
            #[allow(clippy::cast_possible_truncation)]
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let window_ms = steady_secs * 1000;
        for &i in order.iter().take(leaving) {
            churn_at[i] = Some(Duration::from_millis(rng.below(window_ms)));
        }
        Plan { churn_at }
    }

    pub fn churn_at(&self, index: u32) -> Option<Duration> {
        self.churn_at[index as usize]
    }
}

/// Enough randomness to pick who leaves; not for keys.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        #[allow(clippy::cast_possible_truncation)]
        XorShift((nanos as u64) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// How one spoke's first dial ended.
#[derive(Debug)]
pub struct DialOutcome {
    pub setup: Duration,
    pub established: bool,
    /// The address the hub gave, if it gave one.
    pub address: Option<Ipv4Addr>,
    pub failure: Option<String>,
}

pub async fn bind(source: Ipv4Addr, port: u16) -> anyhow::Result<UdpSocket> {
    UdpSocket::bind(SocketAddrV4::new(source, port))
        .await
        .with_context(|| {
            format!("binding {source}:{port} (is the source range routed `local` to lo here?)")
        })
}

/// The four zero bytes in front of IKE on UDP 4500 (RFC 3948 section 2.2).
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// A spoke's socket: on UDP 500, then on 4500 once NAT-T is in use (RFC
/// 7296 section 2.23: nothing comes to 500 after the float). One at a
/// time, so ten thousand spokes fit in the file descriptor limit.
struct Link {
    source: Ipv4Addr,
    socket: UdpSocket,
    port: u16,
}

impl Link {
    /// Moves to the port the initiator sends from (4500 after the float,
    /// 500 again for a new dial).
    async fn use_port(&mut self, port: u16) -> bool {
        if self.port == port {
            return true;
        }
        match bind(self.source, port).await {
            Ok(socket) => {
                self.socket = socket;
                self.port = port;
                true
            }
            Err(e) => {
                eprintln!("loadgen: {e:#}");
                false
            }
        }
    }

    async fn send(&mut self, endpoints: (SocketAddrV4, SocketAddrV4), packet: &[u8]) {
        let (local, remote) = endpoints;
        if !self.use_port(local.port()).await {
            return;
        }
        let sent = if self.port == NATT_PORT {
            let mut framed = Vec::with_capacity(packet.len() + NON_ESP_MARKER.len());
            framed.extend_from_slice(&NON_ESP_MARKER);
            framed.extend_from_slice(packet);
            self.socket.send_to(&framed, remote).await
        } else {
            self.socket.send_to(packet, remote).await
        };
        if let Err(e) = sent {
            eprintln!("loadgen: sending from {local} to {remote}: {e}");
        }
    }

    /// The next IKE message for this spoke (ESP on 4500 is skipped). No
    /// buffer is kept between messages: thousands of spokes wait here.
    async fn recv(&mut self) -> Vec<u8> {
        loop {
            if self.socket.readable().await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65536];
            let Ok(len) = self.socket.try_recv(&mut buf) else {
                continue;
            };
            buf.truncate(len);
            if self.port != NATT_PORT {
                return buf;
            }
            if buf.starts_with(&NON_ESP_MARKER) {
                buf.drain(..NON_ESP_MARKER.len());
                return buf;
            }
        }
    }
}

/// The IKE header fields a spoke checks (RFC 7296 section 3.1).
fn header(message: &[u8]) -> Option<(u64, u8, bool, u32)> {
    if message.len() < 28 {
        return None;
    }
    let spi_i = u64::from_be_bytes(message[0..8].try_into().ok()?);
    let exchange = message[18];
    let response = message[19] & 0x20 != 0;
    let id = u32::from_be_bytes(message[20..24].try_into().ok()?);
    Some((spi_i, exchange, response, id))
}

fn exchange_name(exchange: u8) -> &'static str {
    match exchange {
        34 => "IKE_SA_INIT",
        35 => "IKE_AUTH",
        36 => "CREATE_CHILD_SA",
        37 => "INFORMATIONAL",
        _ => "request",
    }
}

/// Sends `request` (all its fragments) and waits for its response,
/// resending every `retransmit` for `tries` in all. Requests from the hub
/// meanwhile are answered when `up` is given.
async fn exchange(
    link: &mut Link,
    setup: &SpokeSetup,
    initiator: &mut Initiator,
    request: &[Vec<u8>],
    tally: &Tally,
    answer_hub: bool,
) -> Result<Vec<u8>, String> {
    let first = request.first().ok_or("nothing to send")?;
    let (spi_i, kind, _, id) = header(first).ok_or("a malformed request")?;
    let endpoints = initiator.endpoints();
    for attempt in 0..setup.tries {
        if attempt > 0 {
            tally.retransmits.fetch_add(1, Ordering::Relaxed);
        }
        for part in request {
            link.send(endpoints, part).await;
        }
        let deadline = tokio::time::Instant::now() + setup.retransmit;
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, link.recv()).await else {
                break;
            };
            match header(&message) {
                Some((spi, _, true, got)) if spi == spi_i && got == id => return Ok(message),
                Some((spi, _, false, _)) if spi == spi_i && answer_hub => {
                    answer(link, initiator, &message, tally).await;
                }
                _ => {}
            }
        }
    }
    Err(format!(
        "no answer to {} after {} tries",
        exchange_name(kind),
        setup.tries
    ))
}

/// IKE_SA_INIT and IKE_AUTH: the initiator and the address the hub gave.
async fn dial(
    link: &mut Link,
    setup: &SpokeSetup,
    index: u32,
    tally: &Tally,
) -> Result<(Initiator, Option<Ipv4Addr>), String> {
    let mut initiator = setup.initiator(index);
    let first = initiator.start().map_err(|e| format!("IKE_SA_INIT: {e}"))?;
    let mut request = vec![first];
    loop {
        let response = exchange(link, setup, &mut initiator, &request, tally, false).await?;
        match initiator.handle(&response) {
            Ok(Step::Send(next)) => request = vec![next],
            Ok(Step::SendAll(parts)) => request = parts,
            Ok(Step::Established(established)) => return Ok((initiator, established.address)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Answers a request of the hub (a liveness check, a DELETE).
async fn answer(link: &mut Link, initiator: &mut Initiator, message: &[u8], tally: &Tally) -> bool {
    let Ok((response, payloads)) = initiator.respond(message) else {
        return false;
    };
    link.send(initiator.endpoints(), &response).await;
    tally.hub_requests_answered.fetch_add(1, Ordering::Relaxed);
    let deleted = payloads
        .iter()
        .any(|p| matches!(p, Payload::Delete(d) if d.protocol == ProtocolId::Ike));
    if deleted {
        tally.deleted_by_hub.fetch_add(1, Ordering::Relaxed);
    }
    deleted
}

/// Deletes the IKE SA (and with it the CHILD_SA, RFC 7296 section 1.4.1).
async fn leave(
    link: &mut Link,
    setup: &SpokeSetup,
    initiator: &mut Initiator,
    tally: &Tally,
) -> bool {
    let delete = Payload::Delete(Delete {
        protocol: ProtocolId::Ike,
        spi_size: 0,
        spis: vec![],
    });
    let Ok(request) = initiator.informational(&[delete]) else {
        return false;
    };
    match exchange(link, setup, initiator, &[request], tally, true).await {
        Ok(response) => initiator.informational_response(&response).is_ok(),
        Err(_) => false,
    }
}

enum Event {
    Phase,
    Churn,
    Message(Vec<u8>),
}

/// One spoke, from its first IKE_SA_INIT to its DELETE.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    index: u32,
    socket: UdpSocket,
    setup: Arc<SpokeSetup>,
    mut churn_at: Option<Duration>,
    mut phase: watch::Receiver<Phase>,
    dialled: mpsc::Sender<DialOutcome>,
    gate: Arc<Semaphore>,
    tally: Arc<Tally>,
) {
    let mut link = Link {
        source: setup.source(index),
        socket,
        port: IKE_PORT,
    };
    let permit = gate.acquire().await;
    let started = Instant::now();
    let result = dial(&mut link, &setup, index, &tally).await;
    drop(permit);
    let setup_time = started.elapsed();
    let mut up = match result {
        Ok((initiator, address)) => {
            let _ = dialled
                .send(DialOutcome {
                    setup: setup_time,
                    established: true,
                    address,
                    failure: None,
                })
                .await;
            Some(initiator)
        }
        Err(failure) => {
            let _ = dialled
                .send(DialOutcome {
                    setup: setup_time,
                    established: false,
                    address: None,
                    failure: Some(failure),
                })
                .await;
            None
        }
    };
    drop(dialled);
    // Up (or failed): answer the hub until told to end.
    let end = loop {
        let current = *phase.borrow_and_update();
        let churn_deadline = match (current, churn_at) {
            (Phase::Leave | Phase::Stop, _) => break current,
            (Phase::Steady(start), Some(at)) if up.is_some() => Some(start + at),
            _ => None,
        };
        let event = tokio::select! {
            changed = phase.changed() => if changed.is_err() { break Phase::Stop } else { Event::Phase },
            () = sleep_until(churn_deadline), if churn_deadline.is_some() => Event::Churn,
            message = link.recv() => Event::Message(message),
        };
        match event {
            Event::Phase => {}
            Event::Churn => {
                churn_at = None;
                up = churn(&mut link, &setup, index, up, &gate, &tally).await;
            }
            Event::Message(message) => {
                if let Some(initiator) = &mut up
                    && matches!(header(&message), Some((spi, _, false, _)) if spi == initiator.spi_i())
                    && answer(&mut link, initiator, &message, &tally).await
                {
                    up = None;
                }
            }
        }
    };
    if end == Phase::Leave
        && let Some(mut initiator) = up
    {
        let _permit = gate.acquire().await;
        if leave(&mut link, &setup, &mut initiator, &tally).await {
            tally.left.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// Leaves and dials again, as a spoke that reboots cleanly.
async fn churn(
    link: &mut Link,
    setup: &SpokeSetup,
    index: u32,
    up: Option<Initiator>,
    gate: &Semaphore,
    tally: &Tally,
) -> Option<Initiator> {
    let mut initiator = up?;
    let _permit = gate.acquire().await;
    leave(link, setup, &mut initiator, tally).await;
    let started = Instant::now();
    match dial(link, setup, index, tally).await {
        Ok((initiator, _)) => {
            tally.redialled(started.elapsed());
            Some(initiator)
        }
        Err(failure) => {
            tally.redial_failed(failure);
            None
        }
    }
}

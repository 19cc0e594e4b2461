//! IKE fragmentation (RFC 7383): a request that arrives as SKF fragments is
//! reassembled, each fragment decrypted and checked on its own, and a
//! message we send may be cut into SKF fragments. Both ends announce
//! support with IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT
//! (`ike_sa_init`); only messages protected with SK are fragmented.

use crate::{
    ike::{
        sa::{Dropped, IkeSa, Keymat, Reassembly, header},
        wire::{self, EncryptedFragment, ExchangeType, Message, Payload, PayloadType},
    },
    ipsec::Rng,
};

/// Most fragments one message may come in (RFC 7383 leaves the limit to
/// the receiver; 64 x 1280 bytes is far above any IKE_AUTH with certificates).
const MAX_FRAGMENTS: u16 = 64;

/// The SKF header after the generic payload header: fragment number and
/// total (RFC 7383 section 2.5).
const SKF_HEADER_LEN: usize = 8;

impl Reassembly {
    /// Adds a decrypted fragment; returns the whole plaintext when complete.
    pub(crate) fn add(
        &mut self,
        message_id: u32,
        f: &EncryptedFragment,
        part: Vec<u8>,
    ) -> Option<(PayloadType, Vec<u8>)> {
        if f.total == 0 || f.total > MAX_FRAGMENTS || f.number == 0 || f.number > f.total {
            return None;
        }
        // A new message, or the peer re-fragmented with another total
        // (section 2.6.1): start over.
        if self.message_id != message_id || self.parts.len() != usize::from(f.total) {
            *self = Reassembly {
                message_id,
                first_inner: None,
                parts: vec![None; usize::from(f.total)],
            };
        }
        if f.number == 1 {
            self.first_inner = Some(f.first_inner);
        }
        self.parts[usize::from(f.number) - 1] = Some(part);
        if self.parts.iter().any(Option::is_none) {
            return None;
        }
        let first = self.first_inner?;
        let whole = self.parts.drain(..).flatten().flatten().collect();
        *self = Reassembly::default();
        Some((first, whole))
    }
}

/// Whether a retransmitted request is to be answered again: a fragmented
/// one is answered once, on its first fragment (RFC 7383 section 2.6.1).
pub(crate) fn answers_retransmission(message: &Message) -> bool {
    !matches!(message.payloads.last(), Some(Payload::EncryptedFragment(f)) if f.number != 1)
}

/// Decrypts a request's SK payload, or adds an SKF fragment to the SA's
/// reassembly (RFC 7383 section 2.6: each fragment is protected on its own;
/// the message is whole when every fragment has arrived). `None`: waiting
/// for more fragments.
pub(crate) fn open_request(
    sa: &mut IkeSa,
    message: &Message,
    datagram: &[u8],
) -> Result<Option<(PayloadType, Vec<u8>)>, Dropped> {
    match message.payloads.last() {
        Some(Payload::Encrypted(sk)) => {
            let plaintext = sa
                .keymat
                .open(datagram, &sk.body)
                .map_err(|_| Dropped::Integrity)?;
            Ok(Some((sk.first_inner, plaintext)))
        }
        Some(Payload::EncryptedFragment(f)) => {
            let part = sa
                .keymat
                .open(datagram, &f.body)
                .map_err(|_| Dropped::Integrity)?;
            Ok(sa.fragments.add(message.header.message_id, f, part))
        }
        _ => Err(Dropped::Malformed),
    }
}

/// Builds an encrypted message as SKF fragments of at most `fragment_len`
/// plaintext bytes each (RFC 7383 section 2.5): every fragment carries its
/// own header, SKF header and protection; only the first names the first
/// inner payload.
pub(crate) fn seal_fragments(
    rng: &mut dyn Rng,
    keymat: &Keymat,
    exchange: ExchangeType,
    message_id: u32,
    payloads: &[Payload],
    fragment_len: usize,
) -> Vec<Vec<u8>> {
    let (first, plaintext) = wire::emit_payloads(payloads);
    let chunks: Vec<&[u8]> = plaintext.chunks(fragment_len.max(1)).collect();
    let total = u16::try_from(chunks.len()).expect("fragment count fits in 16 bits");
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let number = u16::try_from(i + 1).expect("fragment count fits in 16 bits");
            let body_len = keymat.tx.sealed_len(chunk.len());
            // Requests only: we fragment what we initiate.
            let mut header = header(
                keymat.spi_i,
                keymat.spi_r,
                exchange,
                message_id,
                keymat.flags(false),
            );
            header.next_payload = PayloadType::EncryptedFragment;
            header.length =
                u32::try_from(wire::HEADER_LEN + SKF_HEADER_LEN + body_len).expect("small");
            let mut packet = vec![0u8; wire::HEADER_LEN + SKF_HEADER_LEN];
            header.emit(&mut packet[..wire::HEADER_LEN]);
            packet[wire::HEADER_LEN] = if number == 1 { u8::from(first) } else { 0 };
            let skf_len = u16::try_from(SKF_HEADER_LEN + body_len).expect("fragment below 64 KiB");
            packet[wire::HEADER_LEN + 2..wire::HEADER_LEN + 4]
                .copy_from_slice(&skf_len.to_be_bytes());
            packet[wire::HEADER_LEN + 4..wire::HEADER_LEN + 6]
                .copy_from_slice(&number.to_be_bytes());
            packet[wire::HEADER_LEN + 6..wire::HEADER_LEN + 8]
                .copy_from_slice(&total.to_be_bytes());
            let body = keymat.tx.seal(&packet, chunk, rng);
            packet.extend_from_slice(&body);
            packet
        })
        .collect()
}

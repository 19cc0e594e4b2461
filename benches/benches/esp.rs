//! ESP protection per packet, in place (no allocation): seal and open for
//! each cipher at 64, 512 and 1400 bytes of payload.
#![allow(clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gateway::{
    esp::sa::{EspCipher, InboundSa, OutboundSa},
    ipsec::{Encr, Integ, Rng, SystemRng},
};

struct Cheap(u64);
impl Rng for Cheap {
    fn fill(&mut self, buf: &mut [u8]) {
        // The CBC IV source is not what is measured here.
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            *b = (self.0 >> 56) as u8;
        }
    }
}

fn esp(c: &mut Criterion) {
    let ciphers: [(&str, Encr, Option<Integ>); 4] = [
        ("aes128gcm16", Encr::AesGcm16 { key_bits: 128 }, None),
        ("aes256gcm16", Encr::AesGcm16 { key_bits: 256 }, None),
        (
            "aes128-sha1",
            Encr::AesCbc { key_bits: 128 },
            Some(Integ::HmacSha1_96),
        ),
        (
            "aes256-sha256",
            Encr::AesCbc { key_bits: 256 },
            Some(Integ::HmacSha256_128),
        ),
    ];
    let mut key_rng = SystemRng;
    for (name, encr, integ) in ciphers {
        let mut ek = vec![0u8; encr.key_len()];
        let mut ik = vec![0u8; integ.map_or(0, Integ::key_len)];
        key_rng.fill(&mut ek);
        key_rng.fill(&mut ik);
        let mut group = c.benchmark_group(format!("esp/{name}"));
        for size in [64usize, 512, 1400] {
            group.throughput(Throughput::Bytes(size as u64));
            let out = OutboundSa::new(0x100, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            let at = out.cipher().payload_offset();
            let len = at + size + out.cipher().overhead_after(size);
            let mut buf = vec![0u8; len];
            let mut rng = Cheap(1);
            group.bench_with_input(BenchmarkId::new("seal", size), &size, |b, &size| {
                b.iter(|| out.seal(&mut buf, size, 4, &mut rng).unwrap());
            });
            // Open: one inbound SA, fed freshly sealed packets in sequence
            // order (the replay window refuses a packet opened twice).
            let sealer = OutboundSa::new(0x200, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            let mut inb = InboundSa::new(0x200, EspCipher::new(encr, integ, &ek, &ik).unwrap());
            group.bench_with_input(BenchmarkId::new("open", size), &size, |b, &size| {
                b.iter_batched_ref(
                    || {
                        let mut p = vec![0u8; len];
                        sealer.seal(&mut p, size, 4, &mut rng).unwrap();
                        p
                    },
                    |p| inb.open(p).unwrap().payload.len(),
                    criterion::BatchSize::SmallInput,
                );
            });
        }
        group.finish();
    }
}

criterion_group!(benches, esp);
criterion_main!(benches);

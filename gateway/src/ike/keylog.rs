//! An opt-in IKE key log, in the spirit of `SSLKEYLOGFILE`: one line per IKE
//! SA with its SK_e and SK_a keys, in the format of Wireshark's IKEv2
//! decryption table (the `ikev2_decryption_table` UAT), so that a capture of
//! the hub's IKE traffic can be decrypted and checked by an independent
//! decoder:
//!
//! ```text
//! tshark -r hub.pcap -o "uat:ikev2_decryption_table:$(head -1 keylog)" -V
//! ```
//!
//! The file itself is a valid `ikev2_decryption_table` UAT file: copied into
//! a Wireshark profile directory under that name, it decrypts every SA it
//! lists. The CHILD_SAs' ESP keys go next to it, to `PATH.esp_sa`, two lines
//! per CHILD_SA (inbound and outbound) in the format of Wireshark's `esp_sa`
//! UAT (with `-o esp.enable_encryption_decode:TRUE`).
//!
//! The daemon turns it on when its environment has [`KEYLOG_ENV`]. The
//! engine and the initiator write nothing: they hand out the keys they
//! derive (`Action::KeysDerived`, `Initiator::take_derived_keys`), and the
//! socket task (`ike::task`, for the responder and for dialling spokes)
//! writes them to the open [`KeyLog`]. Anyone who can read the files can
//! decrypt the IKE SAs and the ESP traffic they list: for debugging and
//! tests, never for production (the daemon says so in a warning at
//! start-up).

use std::{
    ffi::OsString,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use crate::{
    ike::sa::{DerivedKeys, EspSecrets, IkeSaSecrets},
    ipsec::{Encr, Integ},
};

/// The environment variable the daemon reads: the path of the key log.
pub const KEYLOG_ENV: &str = "GATEWAY_IKE_KEYLOG";

/// Wireshark's name for an encryption algorithm in the IKEv2 decryption
/// table (`vs_ikev2_encr_algs` in `epan/dissectors/packet-isakmp.c`). The
/// GCM keys Wireshark expects include the 4-byte salt, as ours do.
pub fn wireshark_encr_name(encr: Encr) -> String {
    match encr {
        Encr::AesCbc { key_bits } => format!("AES-CBC-{key_bits} [RFC3602]"),
        Encr::AesGcm16 { key_bits } => format!("AES-GCM-{key_bits} with 16 octet ICV [RFC5282]"),
    }
}

/// Wireshark's name for an integrity algorithm in the IKEv2 decryption
/// table (`vs_ikev2_auth_algs`); `NONE` with an AEAD cipher.
pub fn wireshark_integ_name(integ: Option<Integ>) -> &'static str {
    match integ {
        None => "NONE [RFC4306]",
        Some(Integ::HmacSha1_96) => "HMAC_SHA1_96 [RFC2404]",
        Some(Integ::HmacSha256_128) => "HMAC_SHA2_256_128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC_SHA2_384_192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC_SHA2_512_256 [RFC4868]",
    }
}

/// One record of Wireshark's `ikev2_decryption_table` UAT, without the line
/// end: `ispi,rspi,sk_ei,sk_er,"encr",sk_ai,sk_ar,"integ"`, SPIs and keys in
/// lowercase hex (byte fields are unquoted, algorithm names quoted). With an
/// AEAD cipher the SK_a fields are empty.
pub fn uat_line(ike: &IkeSaSecrets) -> String {
    let mut line = format!("{:016x},{:016x},", ike.spi_i, ike.spi_r);
    let integ_keys: [&[u8]; 2] = if ike.integ.is_some() {
        [&ike.sk_ai, &ike.sk_ar]
    } else {
        [&[], &[]]
    };
    hex_into(&mut line, &ike.sk_ei);
    line.push(',');
    hex_into(&mut line, &ike.sk_er);
    let _ = write!(line, ",\"{}\",", wireshark_encr_name(ike.encr));
    hex_into(&mut line, integ_keys[0]);
    line.push(',');
    hex_into(&mut line, integ_keys[1]);
    let _ = write!(line, ",\"{}\"", wireshark_integ_name(ike.integ));
    line
}

/// Wireshark's name for an ESP encryption algorithm in the `esp_sa` UAT
/// (`esp_encryption_type_vals` in `packet-esp.c`); the key length follows
/// from the key, which for GCM includes the salt.
pub fn wireshark_esp_encr_name(encr: Encr) -> &'static str {
    match encr {
        Encr::AesCbc { .. } => "AES-CBC [RFC3602]",
        Encr::AesGcm16 { .. } => "AES-GCM with 16 octet ICV [RFC4106]",
    }
}

/// Wireshark's name for an ESP authentication algorithm in the `esp_sa` UAT
/// (`esp_authentication_type_vals`); `NULL` with an AEAD cipher.
pub fn wireshark_esp_integ_name(integ: Option<Integ>) -> &'static str {
    match integ {
        None => "NULL",
        Some(Integ::HmacSha1_96) => "HMAC-SHA-1-96 [RFC2404]",
        Some(Integ::HmacSha256_128) => "HMAC-SHA-256-128 [RFC4868]",
        Some(Integ::HmacSha384_192) => "HMAC-SHA-384-192 [RFC4868]",
        Some(Integ::HmacSha512_256) => "HMAC-SHA-512-256 [RFC4868]",
    }
}

/// One record of Wireshark's `esp_sa` UAT: `"IPv4","src","dst","0xSPI",
/// "encr","0xkey","auth","0xkey"` (every field quoted; the authentication
/// key is `""` with an AEAD cipher). Wireshark matches on the outer
/// addresses, so this also decrypts ESP in UDP.
pub fn esp_sa_line(sa: &EspSecrets) -> String {
    let mut line = format!(
        "\"IPv4\",\"{}\",\"{}\",\"0x{:08x}\",\"{}\",\"0x",
        sa.src,
        sa.dst,
        sa.spi,
        wireshark_esp_encr_name(sa.esp.encr)
    );
    hex_into(&mut line, &sa.encr);
    let _ = write!(line, "\",\"{}\",\"", wireshark_esp_integ_name(sa.esp.integ));
    if sa.esp.integ.is_some() {
        line.push_str("0x");
        hex_into(&mut line, &sa.integ);
    }
    line.push('"');
    line
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// Where the key lines go: a file opened for appending (see [`KeyLog::open`])
/// and its `.esp_sa` sibling, or, in tests, any writers.
pub struct KeyLog {
    path: PathBuf,
    sink: Box<dyn Write + Send>,
    esp_sink: Box<dyn Write + Send>,
    /// Set after the first write error, so that a full disk logs one warning.
    failed: bool,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyLog {
    /// Opens (creating them with mode 0600 if needed) `path` and
    /// [`KeyLog::esp_path_for`]`(path)` for appending. Existing files keep
    /// their mode (see [`KeyLog::readable_by_others`]).
    pub fn open(path: &Path) -> io::Result<Self> {
        let open = |p: &Path| -> io::Result<File> {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(p)
        };
        let ike = open(path)?;
        let esp = open(&Self::esp_path_for(path))?;
        Ok(KeyLog {
            path: path.to_owned(),
            sink: Box::new(ike),
            esp_sink: Box::new(esp),
            failed: false,
        })
    }

    /// Where the ESP keys of the key log `path` go: `PATH.esp_sa`.
    pub fn esp_path_for(path: &Path) -> PathBuf {
        let mut name = OsString::from(path.as_os_str());
        name.push(".esp_sa");
        PathBuf::from(name)
    }

    /// A key log that writes IKE lines to `sink` and ESP lines to `esp_sink`
    /// (tests); `path` only names it.
    pub fn to_writers(
        path: impl Into<PathBuf>,
        sink: Box<dyn Write + Send>,
        esp_sink: Box<dyn Write + Send>,
    ) -> Self {
        KeyLog {
            path: path.into(),
            sink,
            esp_sink,
            failed: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether group or others have any permission on one of the files (an
    /// existing file that was not created by [`KeyLog::open`]).
    pub fn readable_by_others(&self) -> bool {
        [self.path.clone(), Self::esp_path_for(&self.path)]
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0))
    }

    /// Appends the keys of a new SA: one `ikev2_decryption_table` line for
    /// an IKE SA, two `esp_sa` lines (inbound, outbound) for a CHILD_SA.
    pub fn record(&mut self, keys: &DerivedKeys) {
        let result = match keys {
            DerivedKeys::IkeSa(ike) => {
                let mut line = zeroize::Zeroizing::new(uat_line(ike));
                line.push('\n');
                write_line(&mut self.sink, &line)
            }
            DerivedKeys::ChildSa { inbound, outbound } => {
                let [inbound, outbound] =
                    [inbound, outbound].map(|sa| zeroize::Zeroizing::new(esp_sa_line(sa)));
                let lines = zeroize::Zeroizing::new(format!("{}\n{}\n", *inbound, *outbound));
                write_line(&mut self.esp_sink, &lines)
            }
        };
        self.check(result);
    }

    /// A failure is logged once and otherwise ignored: the key log never stops IKE.
    fn check(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failed = false,
            Err(e) => {
                if !self.failed {
                    tracing::warn!(path = %self.path.display(), error = %e, "IKE key log: write failed");
                }
                self.failed = true;
            }
        }
    }
}

/// One `write` call per record, so that the lines of concurrent writers to
/// the same file (O_APPEND) do not interleave.
fn write_line(sink: &mut Box<dyn Write + Send>, text: &str) -> io::Result<()> {
    sink.write_all(text.as_bytes())?;
    sink.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use std::net::Ipv4Addr;

    use crate::{ike::proposal::EspChoice, ipsec::Secret};

    /// An IKE SA's keys: 0xe1.../0xe2... SK_e, 0xa1.../0xa2... SK_a.
    fn keys(
        (spi_i, spi_r): (u64, u64),
        encr: Encr,
        integ: Option<Integ>,
        e_len: usize,
        a_len: usize,
    ) -> IkeSaSecrets {
        let fill = |byte: u8, len: usize| Secret::new(vec![byte; len]);
        IkeSaSecrets {
            spi_i,
            spi_r,
            encr,
            integ,
            sk_ei: fill(0xe1, e_len),
            sk_er: fill(0xe2, e_len),
            sk_ai: fill(0xa1, a_len),
            sk_ar: fill(0xa2, a_len),
        }
    }

    fn esp_secrets(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        spi: u32,
        esp: EspChoice,
        encr: &[u8],
        integ: &[u8],
    ) -> EspSecrets {
        EspSecrets {
            src,
            dst,
            spi,
            esp,
            encr: Secret::new(encr.to_vec()),
            integ: Secret::new(integ.to_vec()),
        }
    }

    fn hex(byte: &str, len: usize) -> String {
        byte.repeat(len)
    }

    /// The line keys2tshark.py (shared/vectors) builds from strongSwan's log
    /// for the captured aes256-sha256-x25519 exchange: same SPIs and keys,
    /// same bytes out.
    #[test]
    fn matches_the_line_of_the_captured_strongswan_exchange() {
        let from_hex = |s: &str| {
            Secret::new(
                (0..s.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                    .collect(),
            )
        };
        let sk_ei = "3f4280cf42424746213440e04eaa331b70f452026484f09655dba198c9ea5891";
        let sk_er = "ba9dd3835f209cd51017b40176b8863202b673ba7c897158b72a8291e3924f41";
        let sk_ai = "97e1de26762ea94e510e582c395362ccbc290849aaf0c47671a24498d8ddf422";
        let sk_ar = "6aad11aaacfaff816ce77ec2e37cbf2cf5b2c86a2f5c2844baaab2972a807b53";
        let keys = IkeSaSecrets {
            spi_i: 0xcb74_6d6b_ba53_ff11,
            spi_r: 0xcbd6_cf6a_e18d_11fe,
            encr: Encr::AesCbc { key_bits: 256 },
            integ: Some(Integ::HmacSha256_128),
            sk_ei: from_hex(sk_ei),
            sk_er: from_hex(sk_er),
            sk_ai: from_hex(sk_ai),
            sk_ar: from_hex(sk_ar),
        };
        assert_eq!(
            uat_line(&keys),
            format!(
                "cb746d6bba53ff11,cbd6cf6ae18d11fe,{sk_ei},{sk_er},\"AES-CBC-256 [RFC3602]\",{sk_ai},{sk_ar},\"HMAC_SHA2_256_128 [RFC4868]\""
            )
        );
    }

    #[test]
    fn cbc_lines_name_the_key_size_and_the_integrity_algorithm() {
        for (integ, name, a_len) in [
            (Integ::HmacSha1_96, "HMAC_SHA1_96 [RFC2404]", 20),
            (Integ::HmacSha256_128, "HMAC_SHA2_256_128 [RFC4868]", 32),
            (Integ::HmacSha384_192, "HMAC_SHA2_384_192 [RFC4868]", 48),
            (Integ::HmacSha512_256, "HMAC_SHA2_512_256 [RFC4868]", 64),
        ] {
            let line = uat_line(&keys(
                (1, 0x0102_0304_0506_0708),
                Encr::AesCbc { key_bits: 128 },
                Some(integ),
                16,
                a_len,
            ));
            assert_eq!(
                line,
                format!(
                    "0000000000000001,0102030405060708,{},{},\"AES-CBC-128 [RFC3602]\",{},{},\"{name}\"",
                    hex("e1", 16),
                    hex("e2", 16),
                    hex("a1", a_len),
                    hex("a2", a_len)
                )
            );
        }
    }

    /// With AES-GCM the SK_e keys carry the 4-byte salt (Wireshark's key
    /// length for AES-GCM-128 is 20 octets) and the SK_a fields are empty.
    #[test]
    fn gcm_lines_carry_the_salt_and_no_integrity_keys() {
        for (bits, e_len) in [(128u16, 20usize), (256, 36)] {
            let line = uat_line(&keys(
                (0xffff_ffff_ffff_ffff, 0x10),
                Encr::AesGcm16 { key_bits: bits },
                None,
                e_len,
                0,
            ));
            assert_eq!(
                line,
                format!(
                    "ffffffffffffffff,0000000000000010,{},{},\"AES-GCM-{bits} with 16 octet ICV [RFC5282]\",,,\"NONE [RFC4306]\"",
                    hex("e1", e_len),
                    hex("e2", e_len)
                )
            );
        }
    }

    /// keys2tshark.py's `esp_sa` line for the captured exchange (spoke to
    /// hub, aes256gcm16): the same bytes from the same key.
    #[test]
    fn esp_lines_match_the_captured_strongswan_exchange() {
        let key = "b5e5e95518c55dadf902c7b6bb09a6b7a7f9289d0b35a6435001f62a08d91b000fd35bf1";
        let bytes: Vec<u8> = (0..key.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&key[i..i + 2], 16).unwrap())
            .collect();
        let esp = EspChoice {
            encr: Encr::AesGcm16 { key_bits: 256 },
            integ: None,
            esn: false,
        };
        let line = esp_sa_line(&esp_secrets(
            Ipv4Addr::new(172, 25, 1, 2),
            Ipv4Addr::new(172, 25, 1, 1),
            0x2a7e_fad3,
            esp,
            &bytes,
            &[],
        ));
        assert_eq!(
            line,
            format!(
                "\"IPv4\",\"172.25.1.2\",\"172.25.1.1\",\"0x2a7efad3\",\"AES-GCM with 16 octet ICV [RFC4106]\",\"0x{key}\",\"NULL\",\"\""
            )
        );
    }

    #[test]
    fn esp_cbc_lines_carry_the_integrity_key() {
        for (integ, name) in [
            (Integ::HmacSha1_96, "HMAC-SHA-1-96 [RFC2404]"),
            (Integ::HmacSha256_128, "HMAC-SHA-256-128 [RFC4868]"),
            (Integ::HmacSha384_192, "HMAC-SHA-384-192 [RFC4868]"),
            (Integ::HmacSha512_256, "HMAC-SHA-512-256 [RFC4868]"),
        ] {
            let esp = EspChoice {
                encr: Encr::AesCbc { key_bits: 128 },
                integ: Some(integ),
                esn: false,
            };
            let line = esp_sa_line(&esp_secrets(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                0x100,
                esp,
                &[0xe1; 16],
                &[0xa1; 20],
            ));
            assert_eq!(
                line,
                format!(
                    "\"IPv4\",\"10.0.0.1\",\"10.0.0.2\",\"0x00000100\",\"AES-CBC [RFC3602]\",\"0x{}\",\"{name}\",\"0x{}\"",
                    hex("e1", 16),
                    hex("a1", 20)
                )
            );
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn record_appends_one_line_per_sa() {
        let out = Shared::default();
        let mut log = KeyLog::to_writers("mem", Box::new(out.clone()), Box::new(io::sink()));
        let gcm = Encr::AesGcm16 { key_bits: 256 };
        log.record(&DerivedKeys::IkeSa(keys((1, 2), gcm, None, 36, 0)));
        log.record(&DerivedKeys::IkeSa(keys((3, 4), gcm, None, 36, 0)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            lines[0].starts_with("0000000000000001,0000000000000002,"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("0000000000000003,0000000000000004,"),
            "{text}"
        );
    }

    #[test]
    fn record_appends_two_esp_lines_per_child_sa() {
        let (ike, esp) = (Shared::default(), Shared::default());
        let mut log = KeyLog::to_writers("mem", Box::new(ike.clone()), Box::new(esp.clone()));
        let gcm = EspChoice {
            encr: Encr::AesGcm16 { key_bits: 128 },
            integ: None,
            esn: false,
        };
        let (hub, spoke) = (Ipv4Addr::new(172, 25, 1, 1), Ipv4Addr::new(172, 25, 1, 2));
        log.record(&DerivedKeys::ChildSa {
            inbound: esp_secrets(spoke, hub, 0x1000, gcm, &[0xe1; 20], &[]),
            outbound: esp_secrets(hub, spoke, 0x2000, gcm, &[0xe2; 20], &[]),
        });
        let text = String::from_utf8(esp.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            lines[0].starts_with("\"IPv4\",\"172.25.1.2\",\"172.25.1.1\",\"0x00001000\","),
            "{text}"
        );
        assert!(
            lines[1].starts_with("\"IPv4\",\"172.25.1.1\",\"172.25.1.2\",\"0x00002000\","),
            "{text}"
        );
        assert!(ike.0.lock().unwrap().is_empty(), "no IKE line");
    }

    #[test]
    fn the_file_is_created_0600_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let cbc = Encr::AesCbc { key_bits: 256 };
        let sha = Some(Integ::HmacSha256_128);
        let mut log = KeyLog::open(&path).unwrap();
        log.record(&DerivedKeys::IkeSa(keys((1, 2), cbc, sha, 32, 32)));
        drop(log);
        let mut log = KeyLog::open(&path).unwrap();
        assert!(!log.readable_by_others());
        log.record(&DerivedKeys::IkeSa(keys((3, 4), cbc, sha, 32, 32)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let esp = KeyLog::esp_path_for(&path);
        assert_eq!(esp, dir.path().join("keys.esp_sa"));
        assert_eq!(
            std::fs::metadata(&esp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyLog::open(&path).unwrap().readable_by_others());
    }
}

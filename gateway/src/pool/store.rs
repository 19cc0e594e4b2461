//! The lease file, `pool-leases.json` in the state directory, and its atomic
//! replacement.
//!
//! ```text
//! {
//!   "version": 2,
//!   "saved_at": 1767225600,
//!   "journal_seq": 42,
//!   "pools": {
//!     "FlexSpokes": [
//!       {"address":"10.1.1.100","identity":"fqdn:spoke1.cisco.com","state":"active","since":1767225600},
//!       {"address":"10.1.1.101","identity":"fqdn:spoke2.cisco.com","state":"idle","since":1767225000}
//!     ]
//!   }
//! }
//! ```
//!
//! One lease per line, in address order, so an operator can read and diff
//! it. `saved_at` is the latest `now` the pools were given: on open, leases
//! that were active become idle as of then. `journal_seq` is the last line of
//! the journal (see `journal`) the file includes. `version` changes whenever
//! the meaning of the file changes; a gateway refuses a version it does not
//! know (version 1, without the journal, is read as well).

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::LeaseState;
use super::leases::{Lease, PoolLeases};

/// The lease file's name in the state directory.
pub const LEASE_FILE: &str = "pool-leases.json";

/// The format version this gateway writes; it reads it and version 1.
pub const VERSION: u32 = 2;

/// Just enough to read the version before trusting the rest.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeaseFile {
    #[allow(dead_code)]
    pub version: u32,
    #[serde(default)]
    pub saved_at: u64,
    #[serde(default)]
    pub journal_seq: u64,
    pub pools: BTreeMap<String, Vec<FileLease>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLease {
    pub address: Ipv4Addr,
    pub identity: String,
    pub state: LeaseState,
    pub since: u64,
}

/// Why the file could not be decoded.
pub(crate) enum DecodeError {
    Corrupt(String),
    Version(u32),
}

/// Decodes the lease file.
pub(crate) fn decode(bytes: &[u8]) -> Result<LeaseFile, DecodeError> {
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if !(1..=VERSION).contains(&header.version) {
        return Err(DecodeError::Version(header.version));
    }
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))
}

/// Encodes every pool's leases.
pub(crate) fn encode<'a>(
    saved_at: u64,
    journal_seq: u64,
    pools: impl ExactSizeIterator<Item = (&'a str, &'a PoolLeases)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let _ = write!(
        out,
        "{{\n  \"version\": {VERSION},\n  \"saved_at\": {saved_at},\n  \"journal_seq\": {journal_seq},\n  \"pools\": {{"
    );
    let n = pools.len();
    for (i, (name, pool)) in pools.enumerate() {
        out.extend_from_slice(b"\n    ");
        serde_json::to_writer(&mut out, name).expect("strings always encode");
        out.extend_from_slice(b": [");
        let mut empty = true;
        for (address, lease) in pool.leases() {
            out.extend_from_slice(if empty { b"\n      " } else { b",\n      " });
            empty = false;
            encode_lease(&mut out, address, lease);
        }
        out.extend_from_slice(if empty { b"]" } else { b"\n    ]" });
        if i + 1 < n {
            out.push(b',');
        }
    }
    out.extend_from_slice(if n == 0 { b"}\n}\n" } else { b"\n  }\n}\n" });
    out
}

/// One lease as a JSON object on one line. Written by hand: this runs for
/// every lease on every change, and the generic paths (serde, `write!`) are
/// several times slower. [`FileLease`] is the schema; the tests read back
/// what this writes.
pub(crate) fn encode_lease(out: &mut Vec<u8>, address: Ipv4Addr, lease: &Lease) {
    out.extend_from_slice(b"{\"address\":\"");
    for (i, octet) in address.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        decimal(out, u64::from(octet));
    }
    out.extend_from_slice(b"\",\"identity\":");
    let plain = lease
        .identity
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f);
    if plain {
        out.push(b'"');
        out.extend_from_slice(lease.identity.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, &lease.identity).expect("strings always encode");
    }
    out.extend_from_slice(if lease.is_active() {
        b",\"state\":\"active\",\"since\":"
    } else {
        b",\"state\":\"idle\",\"since\":"
    });
    decimal(out, lease.since);
    out.push(b'}');
}

fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + u8::try_from(n % 10).expect("a digit");
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Creates the state directory (and its parents) mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The temporary file `write_atomic` writes before renaming it over `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "leases".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces `path` (in `dir`) with `bytes` so that a crash at any point leaves
/// either the old file or the new one: write a temporary file in the same
/// directory, fsync it, rename it over `path`, fsync the directory. The
/// temporary file is removed on failure.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

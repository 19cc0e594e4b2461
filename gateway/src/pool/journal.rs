//! The lease journal, `pool-leases.journal` beside the lease file: one line
//! per change, appended and synced before the change is acknowledged, so
//! that recording a lease costs the same at 10 leases or 10,000.
//!
//! ```text
//! {"seq":42,"at":1767225607,"pool":"FlexSpokes","lease":{"address":"10.1.1.100","identity":"fqdn:spoke1.cisco.com","state":"idle","since":1767225607}}
//! ```
//!
//! A line holds the whole new state of one address (so replaying it twice
//! changes nothing) and a sequence number. The lease file records the last
//! sequence number it includes (`journal_seq`): lines up to it are already
//! in it. The journal is folded into the lease file (compaction) once it is
//! longer than the lease file, on open and on a clean stop, then removed.
//!
//! A crash while a line is written leaves it without its newline: that
//! change was never acknowledged, and the line is skipped on open. Any other
//! line that does not parse is corruption, reported like a corrupt lease
//! file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::Deserialize;

use super::leases::Lease;
use super::store::{FileLease, encode_lease};

/// The journal's name in the state directory.
pub const JOURNAL_FILE: &str = "pool-leases.journal";

/// One change as read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    pub seq: u64,
    /// The `now` of the change (the lease file's `saved_at` after it).
    pub at: u64,
    pub pool: String,
    pub lease: FileLease,
}

/// `line` (no newline) for the change of `address` in `pool` to `lease`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    at: u64,
    pool: &str,
    address: Ipv4Addr,
    lease: &Lease,
) {
    out.clear();
    out.extend_from_slice(format!("{{\"seq\":{seq},\"at\":{at},\"pool\":").as_bytes());
    serde_json::to_writer(&mut *out, pool).expect("strings always encode");
    out.extend_from_slice(b",\"lease\":");
    encode_lease(out, address, lease);
    out.extend_from_slice(b"}\n");
}

/// The records of `bytes`, in order. A last line without its newline (a
/// write cut short by a crash) is skipped and counted; the error names the
/// 1-based line that does not parse.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Vec<Record>, bool), (usize, String)> {
    let mut records = Vec::new();
    let mut torn = false;
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            torn = true;
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let record: Record = serde_json::from_slice(line).map_err(|e| (line_no, e.to_string()))?;
        records.push(record);
    }
    Ok((records, torn))
}

/// Appends `line` to the journal at `path` and syncs it; a new file also
/// needs its directory entry synced. (`exists`: whether the file was there.) A write cut short is cut off again, so that the next line does
/// not follow half a line.
pub(crate) fn append(dir: &Path, path: &Path, line: &[u8], exists: bool) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let before = file.metadata()?.len();
    if let Err(e) = file.write_all(line).and_then(|()| file.sync_data()) {
        let _ = file.set_len(before);
        return Err(e);
    }
    if !exists {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

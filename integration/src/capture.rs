//! Packet captures in lab namespaces (tcpdump) and decoding them with an
//! independent dissector (tshark), to check what our daemons put on the wire.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use integration::{Lab, capture::{Capture, tshark_verbose}};
//! let lab = Lab::new("cap")?;
//! let ns = lab.netns("hub")?;
//! let pcap = lab.temp_dir().join("hub.pcap");
//! let capture = Capture::start(&ns, "lo", "udp port 500", &pcap)?;
//! // ... traffic ...
//! capture.stop()?;
//! let text = tshark_verbose(&pcap, &[])?;
//! # let _ = text; Ok(()) }
//! ```

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

use crate::{Netns, Proc, cmd};

/// How long tcpdump gets to open the interface, and to flush and exit.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for one tshark run over a test capture.
const TSHARK_TIMEOUT: Duration = Duration::from_mins(1);

/// A `tcpdump -w` running in a namespace. Dropping it without [`Capture::stop`]
/// kills it (the file may then miss its last packets).
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    path: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i INTERFACE --immediate-mode -U -n -w PATH FILTER`
    /// in `netns` and waits until it captures (it has printed `listening
    /// on`). Without `--immediate-mode`, packets wait in the kernel's ring
    /// (TPACKET_V3) and those still there at SIGINT are never written;
    /// `-U` writes each packet as it comes; `-Z root` keeps tcpdump from
    /// dropping to a user that may not write into the lab's directory.
    pub fn start(netns: &Netns, interface: &str, filter: &str, path: &Path) -> Result<Self> {
        let mut command = Command::new("tcpdump");
        command
            .args([
                "-i",
                interface,
                "--immediate-mode",
                "-U",
                "-n",
                "-Z",
                "root",
                "-w",
            ])
            .arg(path)
            .arg(filter);
        let proc = netns.spawn(&command)?;
        proc.wait_for_output("listening on", CAPTURE_TIMEOUT)
            .with_context(|| format!("tcpdump on {interface} in netns {}", netns.name()))?;
        Ok(Capture {
            proc,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops tcpdump with SIGINT (it then flushes the file and prints its
    /// counters), waits for it to exit, and returns the file.
    pub fn stop(self) -> Result<PathBuf> {
        self.proc.signal(libc::SIGINT)?;
        let status = self.proc.wait_timeout(CAPTURE_TIMEOUT)?;
        let log = self.proc.stderr_text();
        if !status.success() {
            bail!("tcpdump exited with {status}: {log}");
        }
        if !log.contains(" captured") {
            bail!("tcpdump did not report its counters on exit: {log}");
        }
        Ok(self.path)
    }
}

/// `tshark -r PCAP -V` with the given options (e.g. `-o`, `-Y`), run outside
/// the lab's namespaces with a fresh, empty configuration directory (so the
/// user's Wireshark profile cannot change the result). Returns stdout; fails
/// if tshark does.
pub fn tshark_verbose(pcap: &Path, options: &[OsString]) -> Result<String> {
    let config = tempfile::tempdir().context("a temporary Wireshark configuration directory")?;
    tshark_verbose_in(pcap, config.path(), options)
}

/// Like [`tshark_verbose`], with Wireshark's personal configuration
/// directory (`WIRESHARK_CONFIG_DIR`, where the `ikev2_decryption_table` and
/// `esp_sa` UAT files are read from) set to `config_dir`.
pub fn tshark_verbose_in(pcap: &Path, config_dir: &Path, options: &[OsString]) -> Result<String> {
    let mut command = Command::new("tshark");
    command
        .env("WIRESHARK_CONFIG_DIR", config_dir)
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .arg("-V")
        .args(options);
    let output = cmd::run_checked(&mut command, TSHARK_TIMEOUT)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// pcap link type of Ethernet frames (a veth).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// pcap link type of bare IP packets (a TUN device).
pub const LINKTYPE_RAW: u32 = 101;
/// pcap link type of Linux "cooked" captures (`-i any`), version 1.
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// pcap link type of Linux "cooked" captures, version 2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Ethertypes [`PcapPacket::network_layer`] reports.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;

/// One packet of a pcap file (the classic format `tcpdump -w` writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapPacket {
    /// The file's link type ([`LINKTYPE_ETHERNET`], ...).
    pub linktype: u32,
    /// The bytes captured (all of them with tcpdump's default snap length).
    pub data: Vec<u8>,
    /// The packet's length on the wire.
    pub orig_len: u32,
}

impl PcapPacket {
    /// The ethertype and the network-layer bytes (IP header onwards), for
    /// the link types tcpdump uses on Linux; `None` for a truncated frame
    /// or an unknown link type. A raw-IP capture reports IPv4 or IPv6 from
    /// the version nibble.
    pub fn network_layer(&self) -> Option<(u16, &[u8])> {
        let d = &self.data;
        let be16 = |at: usize| Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]));
        match self.linktype {
            LINKTYPE_ETHERNET => {
                let mut ethertype = be16(12)?;
                let mut offset = 14;
                while ethertype == ETHERTYPE_VLAN {
                    ethertype = be16(offset + 2)?;
                    offset += 4;
                }
                Some((ethertype, d.get(offset..)?))
            }
            LINKTYPE_LINUX_SLL => Some((be16(14)?, d.get(16..)?)),
            LINKTYPE_LINUX_SLL2 => Some((be16(0)?, d.get(20..)?)),
            LINKTYPE_RAW => match d.first()? >> 4 {
                4 => Some((ETHERTYPE_IPV4, d)),
                6 => Some((ETHERTYPE_IPV6, d)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Reads a classic pcap file (microsecond or nanosecond timestamps, either
/// byte order). pcapng is not supported: `tcpdump -w` does not write it.
pub fn read_pcap(path: &Path) -> Result<Vec<PcapPacket>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_pcap(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// [`read_pcap`] on bytes in memory.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<PcapPacket>> {
    const GLOBAL_HEADER: usize = 24;
    const RECORD_HEADER: usize = 16;
    let Some(magic) = bytes.get(..4) else {
        bail!("{} bytes: too short for a pcap header", bytes.len());
    };
    let big_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => false,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => true,
        [0x0a, 0x0d, 0x0d, 0x0a] => bail!("a pcapng file; only classic pcap is read here"),
        other => bail!("not a pcap file (magic {other:02x?})"),
    };
    let u32_at = |at: usize| -> Result<u32> {
        let b: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .with_context(|| format!("truncated at byte {at}"))?;
        Ok(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    if bytes.len() < GLOBAL_HEADER {
        bail!("{} bytes: too short for a pcap header", bytes.len());
    }
    let linktype = u32_at(20)? & 0x0fff_ffff;
    let mut packets = Vec::new();
    let mut at = GLOBAL_HEADER;
    while at < bytes.len() {
        // tcpdump killed while writing may leave a partial last record.
        if bytes.len() - at < RECORD_HEADER {
            break;
        }
        let incl = usize::try_from(u32_at(at + 8)?)?;
        let orig_len = u32_at(at + 12)?;
        let start = at + RECORD_HEADER;
        let Some(data) = bytes.get(start..start + incl) else {
            break;
        };
        packets.push(PcapPacket {
            linktype,
            data: data.to_vec(),
            orig_len,
        });
        at = start + incl;
    }
    Ok(packets)
}

/// A classic pcap file (little endian, microseconds) holding `frames` of
/// link type `linktype`: for tests of code that reads captures.
pub fn write_pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&u32::try_from(i).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::frame;

    #[test]
    fn pcap_round_trip_and_network_layer() {
        let a = Ipv4Addr::new(172, 25, 1, 2);
        let b = Ipv4Addr::new(172, 25, 1, 1);
        let udp = frame::ethernet_ipv4_udp(a, b, 4500, 4500, &[0xff]);
        let bytes = write_pcap(LINKTYPE_ETHERNET, &[udp.clone(), udp[..10].to_vec()]);
        let packets = parse_pcap(&bytes).unwrap();
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].data, udp);
        let (ethertype, l3) = packets[0].network_layer().unwrap();
        assert_eq!(ethertype, ETHERTYPE_IPV4);
        assert_eq!(l3.len(), 20 + 8 + 1);
        assert_eq!(packets[1].network_layer(), None, "truncated frame");
        // A partial last record (tcpdump killed mid-write) is left out.
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(parse_pcap(cut).unwrap().len(), 1);
    }

    #[test]
    fn pcap_refuses_other_formats() {
        assert!(parse_pcap(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]).is_err());
        assert!(parse_pcap(b"hello world, not a capture").is_err());
        assert!(parse_pcap(&[]).is_err());
    }

    #[test]
    fn cooked_and_raw_link_types() {
        let ip = frame::Ipv4Frame::udp(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            1,
            2,
            &[],
        )
        .build_ipv4();
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        let p = PcapPacket {
            linktype: LINKTYPE_LINUX_SLL,
            data: sll,
            orig_len: 0,
        };
        assert_eq!(p.network_layer(), Some((ETHERTYPE_IPV4, &ip[..])));
        let raw = PcapPacket {
            linktype: LINKTYPE_RAW,
            data: ip.clone(),
            orig_len: 0,
        };
        assert_eq!(raw.network_layer(), Some((ETHERTYPE_IPV4, &ip[..])));
    }
}

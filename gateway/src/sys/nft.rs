//! TCP MSS clamping for the kernel datapath (IOS `ip tcp adjust-mss`) with
//! nftables, through the `nft` binary (package `nftables`).
//!
//! All our rules live in one table of our own, `inet gateway`, in one
//! chain hooked on forward at mangle priority: per clamped link one rule
//! for SYNs leaving through it and one for SYNs entering through it (SYN
//! and SYN/ACK alike), lowering the MSS option to the link's value when it
//! is larger (with a counter, for `nft list table inet gateway`). Every change lays the whole table again in one `nft -f`
//! transaction (created if missing, deleted, written anew), so applying is
//! idempotent, atomic, and replaces whatever a previous run left; with no
//! clamps left the table is deleted.

use std::{
    fmt::Write as _,
    io::{self, Write as _},
    process::{Command, Stdio},
};

/// The `nft` binary.
pub const NFT: &str = "nft";
/// Our table (family `inet`).
pub const TABLE: &str = "gateway";
/// Our chain in it.
pub const CHAIN: &str = "mss_clamp";

/// One link's clamp: SYNs through `link` get an MSS of at most `mss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MssClamp {
    pub link: String,
    pub mss: u16,
}

/// The nft script that leaves exactly `clamps` in our table (and no table
/// when there are none).
pub fn ruleset(clamps: &[MssClamp]) -> String {
    let mut s = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    if clamps.is_empty() {
        return s;
    }
    let _ = write!(
        s,
        "table inet {TABLE} {{\n\tchain {CHAIN} {{\n\t\ttype filter hook forward priority mangle; policy accept;\n"
    );
    for c in clamps {
        for dir in ["oifname", "iifname"] {
            let _ = writeln!(
                s,
                "\t\t{dir} \"{link}\" tcp flags & syn == syn tcp option maxseg size > {mss} counter tcp option maxseg size set {mss}",
                link = c.link,
                mss = c.mss,
            );
        }
    }
    s.push_str("\t}\n}\n");
    s
}

/// Whether `name` is safe to quote in an nft script (an interface name).
fn valid_link(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Runs `nft -f -` with `script`.
fn run(script: &str, what: &str) -> io::Result<()> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (install the nftables package: the kernel datapath clamps TCP MSS with it)"
            } else {
                ""
            };
            super::context(e, format!("{what}: running `{NFT}`{hint}"))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| super::context(e, format!("{what}: writing to `{NFT} -f -`")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| super::context(e, format!("{what}: waiting for `{NFT}`")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what}: `{NFT} -f -` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Lays our table with exactly `clamps` (deleting it when there are none).
pub fn apply(clamps: &[MssClamp]) -> io::Result<()> {
    if let Some(bad) = clamps.iter().find(|c| !valid_link(&c.link)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("clamping TCP MSS: {:?} is not an interface name", bad.link),
        ));
    }
    let what = if clamps.is_empty() {
        format!("removing nftables table inet {TABLE}")
    } else {
        format!("clamping TCP MSS in nftables table inet {TABLE}")
    };
    run(&ruleset(clamps), &what)
}

/// Whether the `nft` binary runs (`nft --version`).
pub fn available() -> bool {
    Command::new(NFT)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sys::tests::in_netns;

    #[test]
    fn no_clamps_delete_the_table_idempotently() {
        assert_eq!(
            ruleset(&[]),
            "add table inet gateway\ndelete table inet gateway\n"
        );
    }

    #[test]
    fn a_clamp_covers_both_directions_of_its_link() {
        let script = ruleset(&[
            MssClamp {
                link: "va1".into(),
                mss: 1360,
            },
            MssClamp {
                link: "tunnel1".into(),
                mss: 1300,
            },
        ]);
        assert_eq!(
            script,
            "add table inet gateway\n\
             delete table inet gateway\n\
             table inet gateway {\n\
             \tchain mss_clamp {\n\
             \t\ttype filter hook forward priority mangle; policy accept;\n\
             \t\toifname \"va1\" tcp flags & syn == syn tcp option maxseg size > 1360 counter tcp option maxseg size set 1360\n\
             \t\tiifname \"va1\" tcp flags & syn == syn tcp option maxseg size > 1360 counter tcp option maxseg size set 1360\n\
             \t\toifname \"tunnel1\" tcp flags & syn == syn tcp option maxseg size > 1300 counter tcp option maxseg size set 1300\n\
             \t\tiifname \"tunnel1\" tcp flags & syn == syn tcp option maxseg size > 1300 counter tcp option maxseg size set 1300\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn link_names_are_checked_before_quoting() {
        assert!(valid_link("va12") && valid_link("tunnel1") && valid_link("gw-tun0"));
        assert!(
            !valid_link("")
                && !valid_link("va\"; flush ruleset")
                && !valid_link("x".repeat(16).as_str())
        );
        let err = apply(&[MssClamp {
            link: "a b".into(),
            mss: 1360,
        }])
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// `nft list table inet gateway`, or `None` when there is no table.
    fn listed() -> Option<String> {
        let out = Command::new(NFT)
            .args(["list", "table", "inet", TABLE])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn the_table_is_laid_idempotently_and_removed_in_a_namespace() {
        if !available() {
            eprintln!("SKIPPED: no `{NFT}` binary (package nftables)");
            return;
        }
        in_netns("nftmss", || {
            let clamps = [MssClamp {
                link: "va7".into(),
                mss: 1360,
            }];
            if let Err(e) = apply(&clamps) {
                crate::sys::tests::skip("nft table", "nf_tables", &e);
                return;
            }
            apply(&clamps).unwrap();
            let table = listed().unwrap();
            assert_eq!(table.matches("maxseg size set 1360").count(), 2, "{table}");
            assert!(table.contains("oifname \"va7\"") && table.contains("iifname \"va7\""));
            assert!(table.contains("hook forward priority mangle"), "{table}");
            apply(&[]).unwrap();
            assert_eq!(listed(), None);
            apply(&[]).unwrap();
        });
    }
}

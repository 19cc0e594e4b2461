//! Command line: `gateway run`, `gateway show ...`, `gateway sa ...`,
//! `gateway config check`. `--socket` may stand before or after the
//! subcommand.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use gateway_report::{
    ike::SaReport,
    interfaces::DatapathReport,
    ipsec::IpsecSaReport,
    nhrp::{NhrpCleared, NhrpTraffic, NhrpView},
    pool::PoolReport,
    tunnels::TunnelStatus,
    version::VersionInfo,
    xdp::XdpReport,
};

use crate::{
    bgp::show::{Summary, TableView, render_summary, render_table},
    config,
    control::{self, DEFAULT_SOCKET, Request, Response},
    ike::show::{render_crypto_session, render_ikev2_sa},
};

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "FlexVPN-style hub gateway",
    propagate_version = true
)]
pub struct Cli {
    /// Control socket of the running daemon [default: /run/gateway/gateway.sock].
    #[arg(long, global = true, env = "GATEWAY_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground until SIGINT/SIGTERM.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show state of the running daemon (names follow IOS `show`).
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Manage SAs by hand (for tests and labs until IKE installs them).
    Sa {
        #[command(subcommand)]
        action: SaCommand,
    },
    /// Clear state of the running daemon: `clear ip nhrp`.
    Clear {
        #[command(subcommand)]
        what: Clear,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum Show {
    /// XDP uplink filter: verdict counters and per-SA counters.
    Xdp(JsonFlag),
    /// Version, pid and uptime of the running daemon.
    Version(JsonFlag),
    /// Crypto state: `show crypto ikev2 sa`, `show crypto session`, `show
    /// crypto ipsec sa`.
    Crypto {
        #[command(subcommand)]
        what: ShowCrypto,
    },
    /// BGP: `show bgp` (the table), `show bgp summary` (the neighbors).
    Bgp(ShowBgpArgs),
    /// IP state: `show ip local pool`, `show ip bgp [summary]`.
    Ip {
        #[command(subcommand)]
        what: ShowIp,
    },
    /// Interfaces: `show interfaces virtual-access`.
    Interfaces {
        #[command(subcommand)]
        what: ShowInterfaces,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShowInterfaces {
    /// Per-spoke virtual-access interfaces, their SAs and the datapath's
    /// drop counters.
    VirtualAccess(JsonFlag),
    /// A spoke's tunnels to its hub: state, negotiated address, routes.
    Tunnel(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ShowCrypto {
    /// IKEv2 SAs.
    Ikev2 {
        #[command(subcommand)]
        what: ShowIkev2,
    },
    /// Sessions: peer, identity, assigned address, CHILD_SAs.
    Session(JsonFlag),
    /// IPsec: `show crypto ipsec sa`.
    Ipsec {
        #[command(subcommand)]
        what: ShowIpsec,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShowIpsec {
    /// The CHILD_SAs per interface in the IOS layout: SPIs, transform,
    /// packets encrypted and decrypted, remaining lifetime (KB/s).
    Sa(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ShowIkev2 {
    /// IKEv2 SAs in the IOS layout.
    Sa(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ShowIp {
    /// Local address pools.
    Local {
        #[command(subcommand)]
        what: ShowIpLocal,
    },
    /// The same as `show bgp [summary]` (IOS accepts both).
    Bgp(ShowBgpArgs),
    /// The NHRP cache (a spoke's shortcuts), or `traffic`: its counters.
    Nhrp(ShowNhrpArgs),
}

/// `show ip nhrp [traffic]`.
#[derive(Debug, Args)]
pub struct ShowNhrpArgs {
    #[command(subcommand)]
    pub what: Option<ShowNhrp>,
    #[command(flatten)]
    pub flag: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum ShowNhrp {
    /// Redirects, resolutions, purges and shortcuts counted.
    Traffic(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum Clear {
    /// IP state: `clear ip nhrp`.
    Ip {
        #[command(subcommand)]
        what: ClearIp,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClearIp {
    /// On a hub: forget the redirect limits (sessions stay up). On a
    /// spoke: purge its shortcuts and close its spoke-to-spoke tunnels.
    Nhrp(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ShowIpLocal {
    /// Pools, their use and their leases.
    Pool(JsonFlag),
}

/// `show bgp [summary]`: the table without a subcommand.
#[derive(Debug, Args)]
pub struct ShowBgpArgs {
    #[command(subcommand)]
    pub what: Option<ShowBgp>,
    #[command(flatten)]
    pub flag: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum ShowBgp {
    /// Neighbors with their state and message counts, and the listen ranges.
    Summary(JsonFlag),
}

impl ShowBgpArgs {
    /// The request to send, and whether to print JSON (`--json` may stand
    /// before or after `summary`).
    pub fn request(&self) -> (Request, bool) {
        match &self.what {
            None => (Request::ShowBgp, self.flag.json),
            Some(ShowBgp::Summary(flag)) => (Request::ShowBgpSummary, flag.json || self.flag.json),
        }
    }
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SaCommand {
    /// Install an inbound SPI in the XDP filter (decimal or 0x-hex).
    AddSpi {
        #[arg(value_parser = parse_spi)]
        spi: u32,
    },
    /// Remove an inbound SPI from the XDP filter.
    RemoveSpi {
        #[arg(value_parser = parse_spi)]
        spi: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Parse and validate a config file; print every problem found.
    Check { file: PathBuf },
}

/// An SPI as operators write it: `0xc0ffee01` or `3237998081`.
pub fn parse_spi(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(0) => Err("SPI 0 is reserved (RFC 4303 section 2.1)".into()),
        Ok(spi) => Ok(spi),
        Err(e) => Err(format!(
            "{text:?} is not an SPI (a 32-bit number, decimal or 0x-hex): {e}"
        )),
    }
}

/// Runs a parsed command line.
#[allow(clippy::too_many_lines, reason = "one arm per command")]
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    match cli.command {
        Command::Run { config } => {
            init_logging();
            runtime()?.block_on(crate::daemon::run(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            action: ConfigCommand::Check { file },
        } => match config::load(&file) {
            Ok(_) => {
                println!("{}: OK", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Show {
            what: Show::Xdp(flag),
        } => ask(&socket, &Request::ShowXdp, flag.json, |body| {
            let report: XdpReport =
                serde_json::from_value(body).context("decoding the XDP report")?;
            Ok(crate::xdp::show::render_xdp(&report))
        }),
        Command::Show {
            what: Show::Version(flag),
        } => ask(&socket, &Request::Version, flag.json, |body| {
            let v: VersionInfo = serde_json::from_value(body).context("decoding the version")?;
            Ok(crate::daemon::show::render_version(&v))
        }),
        Command::Show {
            what:
                Show::Crypto {
                    what:
                        ShowCrypto::Ikev2 {
                            what: ShowIkev2::Sa(flag),
                        },
                },
        } => ask(&socket, &Request::ShowCryptoIkev2Sa, flag.json, |body| {
            let rows: Vec<SaReport> =
                serde_json::from_value(body).context("decoding the IKEv2 SAs")?;
            Ok(render_ikev2_sa(&rows))
        }),
        Command::Show {
            what: Show::Crypto {
                what: ShowCrypto::Session(flag),
            },
        } => ask(&socket, &Request::ShowCryptoSession, flag.json, |body| {
            let rows: Vec<SaReport> =
                serde_json::from_value(body).context("decoding the sessions")?;
            Ok(render_crypto_session(&rows))
        }),
        Command::Show {
            what:
                Show::Crypto {
                    what:
                        ShowCrypto::Ipsec {
                            what: ShowIpsec::Sa(flag),
                        },
                },
        } => ask(&socket, &Request::ShowCryptoIpsecSa, flag.json, |body| {
            let report: IpsecSaReport =
                serde_json::from_value(body).context("decoding the IPsec SAs")?;
            Ok(crate::daemon::show::render_ipsec_sa(&report))
        }),
        Command::Show {
            what:
                Show::Ip {
                    what:
                        ShowIp::Local {
                            what: ShowIpLocal::Pool(flag),
                        },
                },
        } => ask(&socket, &Request::ShowIpLocalPool, flag.json, |body| {
            let pools: Vec<PoolReport> =
                serde_json::from_value(body).context("decoding the pools")?;
            Ok(crate::pool::show::render_pools(&pools))
        }),
        Command::Show {
            what: Show::Interfaces { what },
        } => show_interfaces(&socket, &what),
        Command::Show {
            what:
                Show::Bgp(args)
                | Show::Ip {
                    what: ShowIp::Bgp(args),
                },
        } => show_bgp(&socket, &args),
        Command::Show {
            what: Show::Ip {
                what: ShowIp::Nhrp(args),
            },
        } => show_nhrp(&socket, &args),
        Command::Clear {
            what: Clear::Ip {
                what: ClearIp::Nhrp(flag),
            },
        } => ask(&socket, &Request::ClearIpNhrp, flag.json, |body| {
            let c: NhrpCleared = serde_json::from_value(body).context("decoding the answer")?;
            Ok(crate::nhrp::show::render_cleared(&c))
        }),
        Command::Sa {
            action: SaCommand::AddSpi { spi },
        } => ask(&socket, &Request::SaAdd { spi }, false, |_| {
            Ok(format!("SPI {spi:#010x} installed\n"))
        }),
        Command::Sa {
            action: SaCommand::RemoveSpi { spi },
        } => ask(&socket, &Request::SaRemove { spi }, false, |_| {
            Ok(format!("SPI {spi:#010x} removed\n"))
        }),
    }
}

/// `show interfaces virtual-access|tunnel`.
fn show_interfaces(socket: &std::path::Path, what: &ShowInterfaces) -> anyhow::Result<ExitCode> {
    match what {
        ShowInterfaces::VirtualAccess(flag) => ask(
            socket,
            &Request::ShowInterfacesVirtualAccess,
            flag.json,
            |body| {
                let report: DatapathReport =
                    serde_json::from_value(body).context("decoding the interfaces")?;
                Ok(crate::datapath::show::render_interfaces(&report))
            },
        ),
        ShowInterfaces::Tunnel(flag) => {
            ask(socket, &Request::ShowInterfacesTunnel, flag.json, |body| {
                let tunnels: Vec<TunnelStatus> =
                    serde_json::from_value(body).context("decoding the tunnels")?;
                Ok(crate::spoke::show::render_tunnels(&tunnels))
            })
        }
    }
}

/// `show ip nhrp [traffic]`.
fn show_nhrp(socket: &std::path::Path, args: &ShowNhrpArgs) -> anyhow::Result<ExitCode> {
    match &args.what {
        Some(ShowNhrp::Traffic(flag)) => ask(
            socket,
            &Request::ShowIpNhrpTraffic,
            flag.json || args.flag.json,
            |body| {
                let t: NhrpTraffic =
                    serde_json::from_value(body).context("decoding the NHRP counters")?;
                Ok(crate::nhrp::show::render_traffic(&t))
            },
        ),
        None => ask(socket, &Request::ShowIpNhrp, args.flag.json, |body| {
            let view: NhrpView = serde_json::from_value(body).context("decoding the NHRP cache")?;
            Ok(crate::nhrp::show::render_entries(&view))
        }),
    }
}

/// `show bgp [summary]`.
fn show_bgp(socket: &std::path::Path, args: &ShowBgpArgs) -> anyhow::Result<ExitCode> {
    let (request, json) = args.request();
    match args.what {
        Some(ShowBgp::Summary(_)) => ask(socket, &request, json, |body| {
            let summary: Summary =
                serde_json::from_value(body).context("decoding the BGP summary")?;
            Ok(render_summary(&summary))
        }),
        None => ask(socket, &request, json, |body| {
            let view: TableView = serde_json::from_value(body).context("decoding the BGP table")?;
            Ok(render_table(&view))
        }),
    }
}

fn ask(
    socket: &std::path::Path,
    request: &Request,
    json: bool,
    render: impl FnOnce(serde_json::Value) -> anyhow::Result<String>,
) -> anyhow::Result<ExitCode> {
    let response = runtime()?.block_on(control::call(socket, request))?;
    match response {
        Response::Ok { body } if json => {
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        Response::Ok { body } => {
            print!("{}", render(body)?);
            Ok(ExitCode::SUCCESS)
        }
        Response::Error { message } => bail!("{message}"),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn socket_flag_is_accepted_before_and_after_the_subcommand() {
        let before =
            Cli::try_parse_from(["gateway", "--socket", "/tmp/a.sock", "show", "xdp"]).unwrap();
        let after = Cli::try_parse_from([
            "gateway",
            "show",
            "xdp",
            "--json",
            "--socket",
            "/tmp/a.sock",
        ])
        .unwrap();
        assert_eq!(
            before.socket.as_deref(),
            Some(std::path::Path::new("/tmp/a.sock"))
        );
        assert_eq!(after.socket, before.socket);
        assert!(matches!(
            after.command,
            Command::Show {
                what: Show::Xdp(JsonFlag { json: true })
            }
        ));
    }

    #[test]
    fn nhrp_commands_parse() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
        };
        for (args, traffic, json) in [
            (&["show", "ip", "nhrp"][..], false, false),
            (&["show", "ip", "nhrp", "--json"][..], false, true),
            (&["show", "ip", "nhrp", "traffic"][..], true, false),
            (&["show", "ip", "nhrp", "traffic", "--json"][..], true, true),
        ] {
            let Command::Show {
                what: Show::Ip {
                    what: ShowIp::Nhrp(a),
                },
            } = parse(args).unwrap().command
            else {
                panic!("{args:?}");
            };
            let json_seen = a.flag.json || matches!(&a.what, Some(ShowNhrp::Traffic(f)) if f.json);
            assert_eq!((a.what.is_some(), json_seen), (traffic, json), "{args:?}");
        }
        assert!(matches!(
            parse(&["clear", "ip", "nhrp"]).unwrap().command,
            Command::Clear {
                what: Clear::Ip {
                    what: ClearIp::Nhrp(_)
                }
            }
        ));
        assert!(parse(&["clear", "ip", "bgp"]).is_err());
    }

    #[test]
    fn show_bgp_parses_to_its_requests() {
        let cases: [(&[&str], Request, bool); 7] = [
            (&["show", "bgp"], Request::ShowBgp, false),
            (&["show", "bgp", "--json"], Request::ShowBgp, true),
            (&["show", "bgp", "summary"], Request::ShowBgpSummary, false),
            (
                &["show", "bgp", "summary", "--json"],
                Request::ShowBgpSummary,
                true,
            ),
            (
                &["show", "bgp", "--json", "summary"],
                Request::ShowBgpSummary,
                true,
            ),
            (&["show", "ip", "bgp"], Request::ShowBgp, false),
            (
                &["show", "ip", "bgp", "summary", "--json"],
                Request::ShowBgpSummary,
                true,
            ),
        ];
        for (args, request, json) in cases {
            let cli = Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
                .unwrap();
            let Command::Show {
                what:
                    Show::Bgp(bgp)
                    | Show::Ip {
                        what: ShowIp::Bgp(bgp),
                    },
            } = &cli.command
            else {
                panic!("{args:?} parsed to {:?}", cli.command);
            };
            assert_eq!(bgp.request(), (request, json), "{args:?}");
        }
        assert!(Cli::try_parse_from(["gateway", "show", "bgp", "neighbors"]).is_err());
    }

    #[test]
    fn show_crypto_ipsec_sa_parses() {
        for (args, json) in [
            (&["show", "crypto", "ipsec", "sa"][..], false),
            (&["show", "crypto", "ipsec", "sa", "--json"][..], true),
        ] {
            let cli = Cli::try_parse_from(std::iter::once("gateway").chain(args.iter().copied()))
                .unwrap();
            assert!(
                matches!(
                    cli.command,
                    Command::Show {
                        what: Show::Crypto {
                            what: ShowCrypto::Ipsec {
                                what: ShowIpsec::Sa(JsonFlag { json: j })
                            }
                        }
                    } if j == json
                ),
                "{args:?}: {:?}",
                cli.command
            );
        }
        assert!(Cli::try_parse_from(["gateway", "show", "crypto", "ipsec"]).is_err());
        // The request's name on the socket.
        assert_eq!(
            serde_json::to_string(&Request::ShowCryptoIpsecSa).unwrap(),
            r#"{"request":"show-crypto-ipsec-sa"}"#
        );
    }

    #[test]
    fn version_flag_prints_the_version() {
        let err = Cli::try_parse_from(["gateway", "--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(err.to_string().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn spis_parse_in_hex_and_decimal_and_zero_is_refused() {
        assert_eq!(parse_spi("0xc0ffee01"), Ok(0xc0ff_ee01));
        assert_eq!(parse_spi("4096"), Ok(4096));
        assert!(parse_spi("0").unwrap_err().contains("reserved"));
        assert!(parse_spi("0x1_0000_0000").is_err());
        assert!(parse_spi("spi").unwrap_err().contains("not an SPI"));
        assert!(Cli::try_parse_from(["gateway", "sa", "add-spi", "0"]).is_err());
    }
}

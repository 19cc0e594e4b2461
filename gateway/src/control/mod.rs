//! The control socket: how `gateway show ...` and friends talk to a running
//! daemon. A Unix stream socket; one JSON request per line, one JSON response
//! per line. Only root (and the socket's group) may connect: the file is 0660
//! in a 0750 directory.

use std::{
    io,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};

/// Default path, as in the config sketch (`hub.control_socket`).
pub const DEFAULT_SOCKET: &str = "/run/gateway/gateway.sock";

/// Longest request line accepted; anything longer is a confused client.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Daemon version and uptime, a `gateway_report::version::VersionInfo`.
    Version,
    /// XDP verdict and per-SA counters, a `gateway_report::xdp::XdpReport`.
    ShowXdp,
    /// IKEv2 SAs (IOS `show crypto ikev2 sa`), a list of
    /// `gateway_report::ike::SaReport`.
    ShowCryptoIkev2Sa,
    /// Sessions with their CHILD_SAs (IOS `show crypto session`), the same
    /// list.
    ShowCryptoSession,
    /// The CHILD_SAs per interface with their counters and remaining
    /// lifetimes (IOS `show crypto ipsec sa`), a
    /// `gateway_report::ipsec::IpsecSaReport`.
    ShowCryptoIpsecSa,
    /// Address pools and leases (IOS `show ip local pool`), a list of
    /// `gateway_report::pool::PoolReport`.
    ShowIpLocalPool,
    /// Virtual-access interfaces and their counters (IOS `show interfaces
    /// virtual-access`), with the SA and datapath-wide counters, a
    /// `gateway_report::interfaces::DatapathReport`.
    ShowInterfacesVirtualAccess,
    /// A spoke's static tunnels to its hubs (IOS `show interfaces Tunnel1`),
    /// a list of `gateway_report::tunnels::TunnelStatus`.
    ShowInterfacesTunnel,
    /// BGP neighbors and table counts (IOS `show bgp summary`), a
    /// `gateway_report::bgp::Summary`.
    ShowBgpSummary,
    /// Every path of the BGP table (IOS `show bgp`), a
    /// `gateway_report::bgp::TableView`.
    ShowBgp,
    /// The NHRP cache (IOS `show ip nhrp`), a
    /// `gateway_report::nhrp::NhrpView`.
    ShowIpNhrp,
    /// NHRP counters (IOS `show ip nhrp traffic`), a
    /// `gateway_report::nhrp::NhrpTraffic`.
    ShowIpNhrpTraffic,
    /// IOS `clear ip nhrp`: on a hub the redirect limits, on a spoke its
    /// shortcuts and their tunnels. A `gateway_report::nhrp::NhrpCleared`.
    ClearIpNhrp,
    /// Install an inbound SPI in the XDP filter (until IKE does it).
    SaAdd { spi: u32 },
    /// Remove an inbound SPI from the XDP filter.
    SaRemove { spi: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    Ok { body: serde_json::Value },
    Error { message: String },
}

impl Response {
    pub fn ok<T: Serialize>(body: &T) -> Self {
        match serde_json::to_value(body) {
            Ok(body) => Response::Ok { body },
            Err(e) => Response::Error {
                message: format!("encoding the response: {e}"),
            },
        }
    }

    pub fn error(message: impl std::fmt::Display) -> Self {
        Response::Error {
            message: message.to_string(),
        }
    }
}

/// The daemon side: answers requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Response;
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: another gateway is already running and answering there")]
    InUse { path: PathBuf },
    #[error("control socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "no gateway is answering on {path} ({source}); is `gateway run` started, and is this the socket from its config (`hub.control_socket`)?"
    )]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control socket {path}: the daemon sent a response that is not valid: {detail}")]
    BadResponse { path: PathBuf, detail: String },
    #[error("control socket {path}: no response within {0:?}", TIMEOUT)]
    Timeout { path: PathBuf },
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A bound control socket; the file is removed on drop.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path`, creating its directory. A stale socket file left by a
    /// daemon that died is replaced; a live daemon's socket is not.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let io_err = |what, source| ControlError::Io {
            path: path.to_owned(),
            what,
            source,
        };
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::create_dir_all(dir).map_err(|e| io_err("creating its directory", e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
                .map_err(|e| io_err("setting its directory's mode", e))?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(|e| io_err("removing a stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| io_err("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io_err("setting its mode", e))?;
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the task is dropped. Each connection may send
    /// several requests.
    pub async fn serve<H: Handler>(&self, handler: std::sync::Arc<H>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, &*handler).await {
                            tracing::debug!(error = %e, "control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_connection<H: Handler + ?Sized>(stream: UnixStream, handler: &H) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_REQUEST as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = if n > MAX_REQUEST {
            Response::error(format!("request longer than {MAX_REQUEST} bytes"))
        } else {
            match serde_json::from_str::<Request>(line.trim_end()) {
                Ok(request) => handler.handle(request),
                Err(e) => Response::error(format!("bad request: {e}")),
            }
        };
        let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
        if n > MAX_REQUEST {
            return Ok(());
        }
    }
}

/// One request, one response (the CLI's side).
pub async fn call(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let exchange = async {
        let stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| ControlError::NotRunning {
                    path: path.to_owned(),
                    source,
                })?;
        let io_err = |source| ControlError::Io {
            path: path.to_owned(),
            what: "talking to the daemon",
            source,
        };
        let (read, mut write) = stream.into_split();
        let mut out = serde_json::to_vec(request).expect("requests always encode");
        out.push(b'\n');
        write.write_all(&out).await.map_err(io_err)?;
        let mut line = String::new();
        BufReader::new(read)
            .read_line(&mut line)
            .await
            .map_err(io_err)?;
        serde_json::from_str::<Response>(&line).map_err(|e| ControlError::BadResponse {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_owned(),
        })?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, request: Request) -> Response {
            match request {
                Request::SaAdd { spi } => Response::ok(&serde_json::json!({ "added": spi })),
                Request::SaRemove { spi } => Response::error(format!("SPI {spi} is not installed")),
                other => Response::ok(&format!("{other:?}")),
            }
        }
    }

    #[tokio::test]
    async fn request_and_response_round_trip_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gw.sock");
        let socket = ControlSocket::bind(&path).await.unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let server = tokio::spawn(async move { socket.serve(Arc::new(Echo)).await });
        let ok = call(&path, &Request::SaAdd { spi: 5 }).await.unwrap();
        assert_eq!(
            ok,
            Response::Ok {
                body: serde_json::json!({ "added": 5 })
            }
        );
        let err = call(&path, &Request::SaRemove { spi: 6 }).await.unwrap();
        assert_eq!(
            err,
            Response::Error {
                message: "SPI 6 is not installed".into()
            }
        );
        server.abort();
    }

    #[tokio::test]
    async fn malformed_requests_get_an_error_not_a_hangup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.sock");
        let socket = ControlSocket::bind(&path).await.unwrap();
        let server = tokio::spawn(async move { socket.serve(Arc::new(Echo)).await });
        let stream = UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = String::new();
        for bad in [
            "not json\n",
            "{\"request\":\"sa-add\"}\n",
            "{\"request\":\"launch-missiles\"}\n",
        ] {
            write.write_all(bad.as_bytes()).await.unwrap();
            line.clear();
            read.read_line(&mut line).await.unwrap();
            let response: Response = serde_json::from_str(&line).unwrap();
            assert!(
                matches!(response, Response::Error { ref message } if message.starts_with("bad request")),
                "{bad}: {response:?}"
            );
        }
        // The connection still works after errors.
        write
            .write_all(b"{\"request\":\"version\"}\n")
            .await
            .unwrap();
        line.clear();
        read.read_line(&mut line).await.unwrap();
        assert!(line.contains("\"ok\""), "{line}");
        server.abort();
    }

    #[tokio::test]
    async fn a_live_socket_is_not_stolen_but_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.sock");
        let first = ControlSocket::bind(&path).await.unwrap();
        assert!(matches!(
            ControlSocket::bind(&path).await,
            Err(ControlError::InUse { .. })
        ));
        drop(first);
        assert!(!path.exists(), "socket file removed on drop");
        // A socket file nobody listens on (a crashed daemon's) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let second = ControlSocket::bind(&path).await.unwrap();
        drop(second);
    }

    #[tokio::test]
    async fn calling_a_missing_daemon_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let err = call(&dir.path().join("none.sock"), &Request::Version)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("no gateway is answering") && text.contains("none.sock"),
            "{text}"
        );
    }
}

//! Serving `payhook dev` the way a local tool holding payment data must: a
//! cap on open connections, a deadline for a request's headers (an idle or
//! trickling client cannot hold a connection), and the API guarded against
//! the pages a developer has open (`Host` and `Origin` checks, see [`guard`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; further ones wait to be accepted.
    pub max_connections: usize,
    /// A request's headers (and the next request's, on a kept-alive
    /// connection) must arrive within this.
    pub header_read: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests in hand finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: pause, not fail.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out ends its connection only.
            let _ = connection.await;
            drop(slot);
        });
    }
    graceful.shutdown().await;
}

/// Which `Host` headers the API answers: loopback names, and the address
/// `--host` binds when it is another.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Loopback, plus `bound` when it is neither loopback nor a wildcard.
    pub fn new(bound: &str) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let bound = bound.trim();
        let bound = if bound.contains(':') && !bound.starts_with('[') {
            format!("[{bound}]")
        } else {
            bound.to_owned()
        };
        if !is_loopback(&bound) && !matches!(bound.as_str(), "0.0.0.0" | "[::]") {
            names.push(bound.to_ascii_lowercase());
        }
        Self { names }
    }

    /// Whether `host` (a `Host` header: a name and an optional port) is one of them.
    pub fn admits(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            // `[::1]:8787` or `localhost:8787`; a bare `[::1]` has its colons inside.
            Some((name, port)) if !port.ends_with(']') && port.parse::<u16>().is_ok() => name,
            _ => host.as_str(),
        };
        self.names.iter().any(|n| n == name)
    }
}

/// Whether `host` (as `--host` gives it) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Guards the inspection API and its state-changing routes: a `Host` that is
/// not ours (DNS rebinding: a page whose name now points at 127.0.0.1) is
/// refused, and a POST must be `application/json` from no page or our own,
/// so that no web page the developer has open can redrive or retry. The
/// webhook routes are left alone: their signatures are their guard, and
/// tunnels forward them under other names.
pub async fn guard(State(hosts): State<AllowedHosts>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/webhooks/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !hosts.admits(host) {
        return forbidden(
            "host_not_allowed",
            format!("Host {host:?} is not this server's; `payhook dev --host NAME` admits another"),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        if let Some((error, message)) = cross_origin_refusal(headers, host) {
            return forbidden(error, message);
        }
    }
    next.run(request).await
}

/// Why a state-changing request is refused, if it is: not JSON, or sent
/// from a page of another origin.
fn cross_origin_refusal(headers: &HeaderMap, host: &str) -> Option<(&'static str, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some((
            "content_type_required",
            "state-changing requests need Content-Type: application/json".to_owned(),
        ));
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or_default();
    let same = origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host));
    (!same).then(|| {
        (
            "cross_origin",
            format!("requests from {origin:?} may not change anything here"),
        )
    })
}

fn forbidden(error: &'static str, message: impl Into<String>) -> Response {
    let body = json!({ "error": error, "message": message.into() }).to_string();
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests;

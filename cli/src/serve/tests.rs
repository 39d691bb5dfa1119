//! The guard and the connection limits, on a real server on loopback.

use std::time::Duration;

use axum::middleware;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

#[test]
fn loopback_names_with_any_port_are_ours_and_nothing_else() {
    let hosts = AllowedHosts::new("127.0.0.1");
    for ok in [
        "localhost",
        "localhost:8787",
        "127.0.0.1:1",
        "[::1]",
        "[::1]:8787",
        "LOCALHOST:9",
    ] {
        assert!(hosts.admits(ok), "{ok}");
    }
    for refused in [
        "",
        "evil.example",
        "evil.example:8787",
        "localhost.evil.example",
        "127.0.0.2",
        "[::2]:1",
    ] {
        assert!(!hosts.admits(refused), "{refused}");
    }
    // A non-loopback bind names one more; a wildcard names none.
    assert!(AllowedHosts::new("192.168.1.5").admits("192.168.1.5:8787"));
    assert!(!AllowedHosts::new("0.0.0.0").admits("0.0.0.0:8787"));
    assert!(is_loopback("::1") && is_loopback("localhost") && !is_loopback("0.0.0.0"));
}

/// A guarded server with a read route, a state-changing route and a webhook route.
async fn server(limits: Limits) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/stats", get(|| async { "stats" }))
        .route("/api/dlq/redrive", post(|| async { "redriven" }))
        .route("/webhooks/{provider}", post(|| async { "received" }))
        .layer(middleware::from_fn_with_state(
            AllowedHosts::new("127.0.0.1"),
            guard,
        ));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, app, limits, async {
        let _ = stopped.await;
    }));
    (format!("127.0.0.1:{}", addr.port()), stop)
}

/// Sends one raw HTTP/1.1 request; the status code of the answer.
async fn status(addr: &str, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&answer[9..12]).parse().unwrap()
}

#[tokio::test]
async fn the_api_answers_only_our_host_and_changes_state_only_for_our_pages() {
    let (addr, _stop) = server(Limits::default()).await;
    let get = |host: &str| {
        format!("GET /api/stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let post = |headers: &str| {
        format!(
            "POST /api/dlq/redrive HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    // Reads: our Host only (a rebound DNS name is refused)
    assert_eq!(status(&addr, &get(&addr)).await, 200);
    assert_eq!(status(&addr, &get("localhost:8787")).await, 200);
    assert_eq!(status(&addr, &get("evil.example:8787")).await, 403);
    // Changes: JSON, from no page or our own
    assert_eq!(
        status(&addr, &post("Content-Type: application/json\r\n")).await,
        200
    );
    let ours = format!("Content-Type: application/json\r\nOrigin: http://{addr}\r\n");
    assert_eq!(status(&addr, &post(&ours)).await, 200);
    assert_eq!(status(&addr, &post("")).await, 403);
    assert_eq!(
        status(&addr, &post("Content-Type: text/plain\r\n")).await,
        403
    );
    let theirs = "Content-Type: application/json\r\nOrigin: http://evil.example\r\n";
    assert_eq!(status(&addr, &post(theirs)).await, 403);
    // Webhooks: signed, forwarded under any name (tunnels), not guarded here
    let webhook = "POST /webhooks/stripe HTTP/1.1\r\nHost: abc.tunnel.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(status(&addr, webhook).await, 200);
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_and_connections_are_capped() {
    let limits = Limits {
        max_connections: 1,
        header_read: Duration::from_millis(300),
    };
    let (addr, _stop) = server(limits).await;
    // GIVEN a connection that sends half a request line and stalls
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /api/st").await.unwrap();
    // THEN while it holds the only slot, another request is not answered
    let waiting = tokio::spawn({
        let addr = addr.clone();
        async move {
            status(
                &addr,
                &format!("GET /api/stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "answered past the connection cap");
    // AND the stalled one is closed by the header deadline, which frees the slot
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stalled connection was never closed");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap(),
        200
    );
}

//! Connections before any WebSocket: the header and idle timeouts, the
//! per-address and global caps counted from accept, and `X-Forwarded-For`
//! from trusted proxies only. Real TCP, with client sockets bound to other
//! loopback addresses (127.0.0.2, …) to stand for other clients.

use crate::common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Response;

/// A generous bound for a timeout of a second or two to have fired.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// A TCP connection to the server from `from` (a loopback address).
async fn connect_from(server: &TestServer, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    socket.connect(server.addr).await.unwrap()
}

/// Reads (and discards) until the server closes the connection; panics if
/// it is still open after `within`.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The server answers a request on this connection (it is not closed).
async fn served(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("an answer in time").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `GET path` on a new connection from `from`, closed after the answer.
async fn get(server: &TestServer, from: &str, path: &str) -> String {
    let mut tcp = connect_from(server, from).await;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut out)).await.expect("an answer in time").unwrap();
    out
}

/// A WebSocket handshake from `from`, with an optional `X-Forwarded-For`:
/// a connected client, or the HTTP response that refused it.
async fn websocket_from(server: &TestServer, from: &str, forwarded_for: Option<&str>) -> Result<TestClient, Response<Option<Vec<u8>>>> {
    let tcp = connect_from(server, from).await;
    let mut request = server.url().into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "kindred.v1".parse().unwrap());
    if let Some(xff) = forwarded_for {
        request.headers_mut().insert("X-Forwarded-For", xff.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))).await {
        Ok(Ok((ws, _))) => Ok(TestClient::from_ws(ws)),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => Err(*response),
        Ok(Err(e)) => panic!("the handshake failed without an HTTP answer: {e}"),
        Err(_) => panic!("no handshake answer in time"),
    }
}

/// A member from `from` that got its welcome; panics when refused.
async fn member_from(server: &TestServer, from: &str, forwarded_for: Option<&str>) -> TestClient {
    match websocket_from(server, from, forwarded_for).await {
        Ok(mut client) => {
            client.hello(None, None).await;
            client
        }
        Err(response) => panic!("refused with {}", response.status()),
    }
}

/// The refusal's status, and the `code` of its JSON error body.
fn refusal(result: Result<TestClient, Response<Option<Vec<u8>>>>) -> (u16, String) {
    let response = match result {
        Ok(_) => panic!("expected a refusal, got a WebSocket"),
        Err(response) => response,
    };
    let body: serde_json::Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("a JSON error body");
    assert_eq!(body["type"], "error", "{body}");
    (response.status().as_u16(), body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn http_connections_that_send_no_complete_head_are_closed() {
    let server = TestServer::with(|c| c.limits.header_timeout_s = 1).await;
    let mut silent = connect_from(&server, "127.0.0.1").await;
    let mut slow = connect_from(&server, "127.0.0.1").await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A client that sends its head in time is served.
    let mut prompt = connect_from(&server, "127.0.0.1").await;
    assert!(served(&mut prompt).await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut silent, CLOSE_WITHIN).await;
    closed_by_server(&mut slow, CLOSE_WITHIN).await;
}

#[tokio::test]
async fn http_keep_alive_connections_are_closed_when_idle_but_websockets_stay() {
    let server = TestServer::with(|c| {
        c.limits.header_timeout_s = 1;
        c.limits.idle_timeout_s = 4;
    })
    .await;
    let mut member = member_from(&server, "127.0.0.1", None).await;
    let mut keep_alive = connect_from(&server, "127.0.0.1").await;
    assert!(served(&mut keep_alive).await.starts_with("HTTP/1.1 200"));
    // Idle between requests for longer than the header timeout: still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(served(&mut keep_alive).await.starts_with("HTTP/1.1 200"));
    closed_by_server(&mut keep_alive, CLOSE_WITHIN).await;
    // Open for longer than both timeouts: a WebSocket is not an idle HTTP connection.
    member.assert_alive().await;
}

#[tokio::test]
async fn http_connections_count_against_the_address_cap_from_accept() {
    let server = TestServer::with(|c| c.limits.max_connections_per_ip = 3).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(connect_from(&server, "127.0.0.1").await);
    }
    let (status, code) = refusal(websocket_from(&server, "127.0.0.1", None).await);
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    // Another address is not held back by this one.
    let mut other = member_from(&server, "127.0.0.2", None).await;
    other.assert_alive().await;
    let metrics = get(&server, "127.0.0.3", "/metrics").await;
    assert!(metrics.contains("\nkindred_tcp_connections 5\n"), "3 silent, the member, this request: {metrics}");
    // A closed connection frees its place.
    drop(silent.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    while websocket_from(&server, "127.0.0.1", None).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http_connections_past_the_global_cap_are_answered_503() {
    let server = TestServer::with(|c| c.limits.max_connections = 3).await;
    let mut silent = connect_from(&server, "127.0.0.1").await;
    let _also_silent = connect_from(&server, "127.0.0.2").await;
    let mut member = member_from(&server, "127.0.0.3", None).await;
    let (status, code) = refusal(websocket_from(&server, "127.0.0.4", None).await);
    assert_eq!((status, code.as_str()), (503, "overloaded"));
    let mut plain = connect_from(&server, "127.0.0.5").await;
    assert!(served(&mut plain).await.starts_with("HTTP/1.1 503"));
    member.assert_alive().await;
    // A closed connection frees its place.
    silent.shutdown().await.unwrap();
    drop(silent);
    let deadline = tokio::time::Instant::now() + WAIT;
    while websocket_from(&server, "127.0.0.4", None).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn http_forwarded_for_from_a_trusted_proxy_names_the_client() {
    let server = TestServer::with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.limits.max_connections_per_ip = 1;
    })
    .await;
    // Two clients behind the proxy: each has its own place.
    let mut a = member_from(&server, "127.0.0.1", Some("203.0.113.7")).await;
    let mut b = member_from(&server, "127.0.0.1", Some("203.0.113.8")).await;
    // The right-most address that is not a trusted proxy is the client; what a
    // client wrote to its left (a forged chain) does not get it a new place.
    for chain in ["198.51.100.9, 203.0.113.7", "203.0.113.7, 127.0.0.1"] {
        let (status, code) = refusal(websocket_from(&server, "127.0.0.1", Some(chain)).await);
        assert_eq!((status, code.as_str()), (429, "rate_limited"), "{chain}");
    }
    a.assert_alive().await;
    b.assert_alive().await;
}

#[tokio::test]
async fn http_forwarded_for_from_any_other_peer_is_ignored() {
    let server = TestServer::with(|c| {
        c.trusted_proxies = vec!["127.0.0.2".parse().unwrap()];
        c.limits.max_connections_per_ip = 1;
    })
    .await;
    // 127.0.0.1 is no trusted proxy: its header is ignored and it has one place.
    let mut direct = member_from(&server, "127.0.0.1", Some("203.0.113.7")).await;
    let (status, code) = refusal(websocket_from(&server, "127.0.0.1", Some("203.0.113.8")).await);
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    // The trusted proxy's clients are counted by the header, not as 127.0.0.2.
    let mut a = member_from(&server, "127.0.0.2", Some("203.0.113.7")).await;
    let mut b = member_from(&server, "127.0.0.2", Some("203.0.113.8")).await;
    direct.assert_alive().await;
    a.assert_alive().await;
    b.assert_alive().await;
}

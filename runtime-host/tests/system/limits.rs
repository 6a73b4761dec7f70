//! What a hostile client can cost the host: a huge body is refused (413)
//! without being buffered, a client that dribbles its headers is closed at
//! the header timeout while others are served, connections past the cap get
//! a clean 503, and an error a client sees carries no internals.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Read what the server sends until it closes (or `limit` passes).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Send a request head, then up to `total` bytes of body from another task
/// (stopping when the host stops reading), and return the host's answer.
async fn send_body(addr: &str, head: String, total: usize, chunked: bool) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        let block = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < total {
            let wrote = if chunked {
                let size = format!("{:x}\r\n", block.len());
                async {
                    writer.write_all(size.as_bytes()).await?;
                    writer.write_all(&block).await?;
                    writer.write_all(b"\r\n").await
                }
                .await
            } else {
                writer.write_all(&block).await
            };
            if wrote.is_err() {
                break;
            }
            sent += block.len();
        }
        sent
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The head and the JSON error arrive together; stop once the body is in.
    while !String::from_utf8_lossy(&answer).contains('}') {
        match tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    drop(reader);
    let sent = sender.await.unwrap();
    assert!(sent < total, "the host read the whole {total}-byte body");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_bodies_get_413_without_being_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    // The limit from the environment, as a Kubernetes manifest sets it.
    let env = [(
        "RUNTIME_HOST_MAX_REQUEST_BODY_BYTES",
        (1u64 << 20).to_string(),
    )];
    let host =
        HostProcess::start_manifest(&manifest, dir.path(), &[], "/guest/counter", &env).await;
    let addr = host.base.trim_start_matches("http://").to_string();

    // Within the limit: the component gets the whole body.
    let body = vec![b'a'; 512 << 10];
    let echoed = client()
        .post(format!("{}/guest/echo", host.base))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
    assert_eq!(echoed.bytes().await.unwrap().len(), body.len());

    let rss_before = host.rss_kib();
    let hundred_mib = 100 << 20;
    // Declared: refused on the Content-Length, before the body is read.
    let declared = send_body(
        &addr,
        format!("POST /guest/echo HTTP/1.1\r\nhost: x\r\ncontent-length: {hundred_mib}\r\n\r\n"),
        hundred_mib,
        false,
    )
    .await;
    // Chunked: refused once the body passes the limit.
    let chunked = send_body(
        &addr,
        "POST /guest/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".into(),
        hundred_mib,
        true,
    )
    .await;
    for answer in [&declared, &chunked] {
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains(r#""code":"body-too-large""#), "{answer}");
        assert!(answer.contains("1048576 bytes"), "{answer}");
    }
    let grown_mib = host.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 20,
        "200 MiB offered, the host grew by {grown_mib} MiB"
    );

    // The host keeps serving.
    let (status, _) = get_url(&format!("{}/guest/counter", host.base)).await;
    assert_eq!(status, 200);
}

async fn get_url(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn clients_that_dribble_their_headers_are_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.limits.header_read_timeout = Duration::from_secs(1);
    let host = start(&settings).await;
    let addr = host.addr;

    // Twenty clients sending a header byte every 200 ms: a whole head would
    // take them minutes.
    let started = Instant::now();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let head = b"GET /guest/counter HTTP/1.1\r\nhost: x\r\nx-slow: ".to_vec();
                for byte in head.iter().chain(std::iter::repeat(&b'a')).take(600) {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return started.elapsed();
                    }
                    let mut probe = [0u8; 1];
                    // Answered (408) or closed by the host: a read returns at once.
                    let peeked =
                        tokio::time::timeout(Duration::from_millis(200), stream.peek(&mut probe))
                            .await;
                    if peeked.is_ok() {
                        return started.elapsed();
                    }
                }
                Duration::MAX
            })
        })
        .collect();
    // An idle connection that sends nothing at all.
    let mut idle = TcpStream::connect(addr).await.unwrap();

    // Meanwhile a normal client is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&host, "/guest/counter").await.0, 200);

    for client in slow {
        let closed_after = client.await.unwrap();
        assert!(
            closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
            "a dribbling client was closed after {closed_after:?}"
        );
    }
    let answer = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle connection was held past the timeout"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(get(&host, "/guest/counter").await.0, 200);
    host.shutdown().await;
}

/// A client that sends its head but not the body it announced gets a 408
/// when the request timeout passes, never a component error: no instance
/// was taken for it, and others are served meanwhile.
#[tokio::test]
async fn a_body_that_never_arrives_is_a_408_not_a_component_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.request_timeout = Duration::from_secs(1);
    let host = start(&settings).await;
    let mut stream = TcpStream::connect(host.addr).await.unwrap();
    stream
        .write_all(b"POST /guest/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        get(&host, "/guest/counter").await.0,
        200,
        "others are served"
    );
    let answer = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request-timeout\""), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_http_requests_total{component=\"guest\",status=\"500\"}"
        ),
        0.0,
        "not counted as a component failure"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_a_clean_503() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.limits.max_connections = 4;
    let host = start(&settings).await;

    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(host.addr).await.unwrap());
    }
    // Let the host accept all four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fifth = TcpStream::connect(host.addr).await.unwrap();
    let answer = read_until_closed(&mut fifth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"overloaded""#), "{answer}");

    // A held connection is still served, and once one closes a new one is too.
    let first = &mut held[0];
    first
        .write_all(b"GET /guest/counter HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let served = read_until_closed(first, Duration::from_secs(5)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    held.remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&host, "/guest/counter").await.0, 200);

    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(&metrics, "runtime_host_connections_refused_total"),
        1.0
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_failing_component_answers_without_internals() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let host = start(&settings(&manifest, dir.path())).await;
    for path in ["/guest/trap", "/guest/oom"] {
        let (status, body) = get(&host, path).await;
        assert_eq!(status, 500, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        let keys: Vec<&str> = error
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["code", "message", "trace_id"], "{body}");
        assert_eq!(error["code"], "component-failed");
        assert_eq!(error["message"], "the component failed");
        assert_eq!(error["trace_id"].as_str().unwrap().len(), 32, "{body}");
        for internal in ["wasm", "backtrace", "panicked", "trap", "guest"] {
            assert!(
                !body.contains(internal),
                "{path} leaks `{internal}`: {body}"
            );
        }
    }
    host.shutdown().await;
}

/// A trap is logged once, with its details, under the trace id the client
/// was given; the client's answer carries neither.
#[tokio::test]
async fn a_trap_is_logged_once_with_its_details_under_the_trace_id() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let host = HostProcess::start_manifest(
        &manifest,
        &dir.path().join("state"),
        &[],
        "/guest/counter",
        &[],
    )
    .await;
    let resp = client()
        .get(format!("{}/guest/trap", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let answer: serde_json::Value = resp.json().await.unwrap();
    let trace_id = answer["trace_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = host.log();
        if log.contains("request served") || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let trapped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("component trapped") || l.contains("component failed"))
        .collect();
    assert_eq!(trapped.len(), 1, "logged once: {trapped:#?}");
    assert!(trapped[0].contains("component trapped"), "{}", trapped[0]);
    assert!(
        trapped[0].contains(&trace_id),
        "under the trace id {trace_id}: {}",
        trapped[0]
    );
    assert!(
        trapped[0].contains("wasm"),
        "with the trap's details: {}",
        trapped[0]
    );
}

//! notification-service through the host, against local receivers standing
//! in for Slack and a webhook: exact payloads and signatures, retries that
//! honour Retry-After, de-duplication, throttling, the delivery log, bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;
use alerting::{Notification, slack, webhook};
use daytrade_contract::wit_check::assert_projects;
use serde_json::{Value, json};

const SECRET: &str = "whsec-test";
const TRADER: &str = "dev-trader-key";
const VIEWER: &str = "dev-viewer-key";

struct Receivers {
    slack: Recorder,
    hook: Recorder,
}

async fn project(
    state: &std::path::Path,
    slack: Responder,
    hook: Responder,
    extra: &[(&str, String)],
) -> (runtime_host::RunningHost, Receivers) {
    let slack = Recorder::serve(slack).await;
    let hook = Recorder::serve(hook).await;
    let mut settings = settings(&workspace_root().join("spin.toml"), state);
    settings.components = vec!["notification-service".into()];
    settings.request_timeout = std::time::Duration::from_secs(30);
    for (name, value) in [
        ("notification_channels", "slack,webhook,log".to_string()),
        ("slack_webhook_origin", format!("http://{}", slack.addr)),
        (
            "slack_webhook_url",
            format!("http://{}/services/T000/B000/XXXX", slack.addr),
        ),
        ("alert_webhook_origin", format!("http://{}", hook.addr)),
        (
            "alert_webhook_url",
            format!("http://{}/hooks/trading", hook.addr),
        ),
        ("alert_webhook_secret", SECRET.to_string()),
        ("notification_throttle_per_minute", "3".to_string()),
        ("notification_retry_budget_ms", "3000".to_string()),
        ("notification_retry_base_ms", "200".to_string()),
    ] {
        settings.variables.push((name.into(), value));
    }
    for (name, value) in extra {
        settings.variables.push((name.to_string(), value.clone()));
    }
    (start(&settings).await, Receivers { slack, hook })
}

fn ok() -> Responder {
    Arc::new(|_| (200, "ok".into()))
}

async fn send(host: &runtime_host::RunningHost, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client()
        .post(url(host, "/api/v1/notifications/send"))
        .json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The delivery log, read with the viewer key.
async fn read_log(host: &runtime_host::RunningHost, query: &str) -> Value {
    client()
        .get(url(host, &format!("/api/v1/notifications{query}")))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

/// Delivery passes (`POST /deliver`) until nothing is pending; the log
/// record of `id` then.
async fn settle(host: &runtime_host::RunningHost, id: &str) -> Value {
    deliver_all(&format!("http://{}", host.addr)).await;
    let log = read_log(host, "?limit=500").await;
    log["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not in the log"))
}

fn halted() -> Value {
    json!({
        "type": "trading-state",
        "severity": "critical",
        "title": "Trading HALTED",
        "message": "daily loss reached the ¥50,000 limit",
        "fields": [["from", "ACTIVE"], ["to", "HALTED"], ["by", "risk-engine"]],
        "link": "http://127.0.0.1:3000/api/v1/execution/status"
    })
}

fn statuses(record: &Value) -> Vec<(String, String)> {
    record["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn slack_and_the_webhook_receive_the_exact_signed_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let (host, rx) = project(dir.path(), ok(), ok(), &[]).await;
    let (status, accepted) = send(&host, Some(TRADER), halted()).await;
    // Accepted, stored, and answered before anything went to Slack or the hook.
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["accepted"], true);
    assert_eq!(
        statuses(&accepted),
        pairs(&[
            ("slack", "pending"),
            ("webhook", "pending"),
            ("log", "delivered")
        ])
    );
    let id = accepted["id"].as_str().unwrap();
    let record = settle(&host, id).await;
    assert_eq!(
        statuses(&record),
        pairs(&[
            ("slack", "delivered"),
            ("webhook", "delivered"),
            ("log", "delivered")
        ])
    );
    assert_projects(&record, "notifications", "notification-record");
    assert_projects(&record["notification"], "notifications", "notification");
    assert_projects(&record["deliveries"][0], "notifications", "delivery");
    assert_projects(
        &record["deliveries"][0]["attempts"][0],
        "notifications",
        "attempt",
    );
    let sent: Notification = serde_json::from_value(halted()).unwrap();

    let slack_seen = rx.slack.seen.lock().unwrap().clone();
    assert_eq!(slack_seen.len(), 1);
    assert_eq!(slack_seen[0].path, "/services/T000/B000/XXXX");
    assert_eq!(slack_seen[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&slack_seen[0].body).unwrap();
    assert_eq!(body, slack::payload(&sent, id));
    assert_eq!(
        body["attachments"][0]["color"], "#a30200",
        "critical is red"
    );

    let hook_seen = rx.hook.seen.lock().unwrap().clone();
    assert_eq!(hook_seen.len(), 1);
    let signature = &hook_seen[0].headers[webhook::SIGNATURE_HEADER];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(webhook::verify(
        SECRET.as_bytes(),
        signature,
        &hook_seen[0].body,
        now,
        60
    ));
    assert!(!webhook::verify(
        b"not-the-secret",
        signature,
        &hook_seen[0].body,
        now,
        60
    ));
    let created_at = record["created_at"].as_i64().unwrap();
    assert_eq!(hook_seen[0].body, webhook::body(&sent, id, created_at));

    let (status, log) = get_json(&host, "/api/v1/notifications").await;
    assert_eq!(status, 401, "the log needs credentials: {log}");
    let log = read_log(&host, "?severity=critical").await;
    assert_projects(&log, "notifications", "notification-log");
    assert_eq!(log["notifications"][0]["id"], id);
    assert_eq!(log["notifications"][0]["deliveries"], record["deliveries"]);
}

#[tokio::test]
async fn retries_honour_retry_after_and_stop_on_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Slack: 429 (Retry-After: 1) once, then 200. The webhook: always 503.
    let calls = Arc::new(AtomicUsize::new(0));
    let slack: Responder = {
        let calls = calls.clone();
        Arc::new(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
            0 => (429, "slow down".into()),
            _ => (200, "ok".into()),
        })
    };
    let (host, rx) = project(dir.path(), slack, Arc::new(|_| (503, "down".into())), &[]).await;
    let (status, accepted) = send(&host, Some(TRADER), halted()).await;
    assert_eq!(status, 202, "{accepted}");
    let record = settle(&host, accepted["id"].as_str().unwrap()).await;
    assert_eq!(
        statuses(&record),
        pairs(&[
            ("slack", "delivered"),
            ("webhook", "failed"),
            ("log", "delivered")
        ])
    );
    let slack_attempts = &record["deliveries"][0]["attempts"];
    assert_eq!(slack_attempts[0]["http_status"], 429);
    assert!(
        slack_attempts[1]["waited_ms"].as_u64().unwrap() >= 1_000,
        "Retry-After: 1: {slack_attempts}"
    );
    assert_eq!(rx.slack.count(), 2);
    // 503 again and again: each try at least the backoff after the last
    // (200, 400, 800, 1,600 ms), until the next would fall past the 3 s budget.
    let attempts = record["deliveries"][1]["attempts"].as_array().unwrap();
    let waits: Vec<u64> = attempts
        .iter()
        .map(|a| a["waited_ms"].as_u64().unwrap())
        .collect();
    assert!((3..=5).contains(&waits.len()), "{waits:?}");
    for (k, wait) in waits.iter().enumerate().skip(1) {
        assert!(*wait >= 200 << (k - 1), "try {k} came early: {waits:?}");
    }
    assert!(waits.iter().sum::<u64>() <= 3_000, "{waits:?}");
    assert_eq!(rx.hook.count(), waits.len());
    assert!(attempts.iter().all(|a| a["http_status"] == 503));

    let dir = tempfile::tempdir().unwrap();
    let (host, rx) = project(dir.path(), Arc::new(|_| (400, "bad".into())), ok(), &[]).await;
    let (_, accepted) = send(&host, Some(TRADER), halted()).await;
    let record = settle(&host, accepted["id"].as_str().unwrap()).await;
    assert_eq!(record["deliveries"][0]["status"], "failed");
    assert_eq!(rx.slack.count(), 1, "a 400 is not retried");
}

#[tokio::test]
async fn duplicates_are_delivered_once_and_channels_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let (host, rx) = project(dir.path(), ok(), ok(), &[]).await;
    let mut fill = json!({
        "type": "order-filled", "severity": "info", "title": "Bought 100 AAPL",
        "message": "", "dedup_key": "fill-ord-00000001", "channels": ["slack"]
    });
    let (_, first) = send(&host, Some(TRADER), fill.clone()).await;
    let (_, second) = send(&host, Some(TRADER), fill.clone()).await;
    assert_eq!(first["deduplicated"], false);
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["deliveries"], json!([]));
    settle(&host, first["id"].as_str().unwrap()).await;
    assert_eq!(rx.slack.count(), 1);

    // Three per minute per channel: the fourth and fifth info alerts are held back...
    fill.as_object_mut().unwrap().remove("dedup_key");
    let mut held = 0;
    for _ in 0..4 {
        let (_, record) = send(&host, Some(TRADER), fill.clone()).await;
        held += usize::from(record["deliveries"][0]["status"] == "throttled");
    }
    assert_eq!(held, 2, "1 + 2 delivered, then 2 throttled");
    // ...a critical one is not.
    let mut critical = halted();
    critical["channels"] = json!(["slack"]);
    let (_, accepted) = send(&host, Some(TRADER), critical).await;
    assert_eq!(accepted["deliveries"][0]["status"], "pending");
    let record = settle(&host, accepted["id"].as_str().unwrap()).await;
    assert_eq!(record["deliveries"][0]["status"], "delivered");
    assert_eq!(rx.slack.count(), 1 + 2 + 1);
    let metrics = get(&host, "/api/v1/notifications/metrics").await.1;
    promtool_check(&metrics);
    assert_eq!(
        metric_value(
            &metrics,
            "notification_deliveries{channel=\"slack\",status=\"throttled\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn bad_requests_get_stable_codes_and_deliver_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (host, rx) = project(dir.path(), ok(), ok(), &[]).await;
    let with = |patch: Value| {
        let mut n = halted();
        for (k, v) in patch.as_object().unwrap() {
            n[k] = v.clone();
        }
        n
    };
    let cases: Vec<(&str, Option<&str>, Value, u16, &str)> = vec![
        ("no credentials", None, halted(), 401, "unauthenticated"),
        ("viewer", Some(VIEWER), halted(), 403, "forbidden"),
        (
            "unknown field",
            Some(TRADER),
            with(json!({"colour": 1})),
            400,
            "unknown-field",
        ),
        (
            "unknown severity",
            Some(TRADER),
            with(json!({"severity": "loud"})),
            400,
            "invalid-severity",
        ),
        (
            "unknown channel",
            Some(TRADER),
            with(json!({"channels": ["email"]})),
            400,
            "invalid-channels",
        ),
        (
            "empty title",
            Some(TRADER),
            with(json!({"title": ""})),
            400,
            "invalid-title",
        ),
        (
            "ftp link",
            Some(TRADER),
            with(json!({"link": "ftp://x"})),
            400,
            "invalid-link",
        ),
        (
            "a link without a host",
            Some(TRADER),
            with(json!({"link": "https://"})),
            400,
            "invalid-link",
        ),
        (
            "a channel named twice",
            Some(TRADER),
            with(json!({"channels": ["log", "log"]})),
            400,
            "invalid-channels",
        ),
    ];
    for (name, key, body, status, code) in cases {
        let (got, answer) = send(&host, key, body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
    }
    assert_eq!(rx.slack.count() + rx.hook.count(), 0);
    let resp = client()
        .get(url(&host, "/api/v1/notifications?severity=loud"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let log = read_log(&host, "").await;
    assert_eq!(
        log["notifications"],
        json!([]),
        "nothing refused was logged"
    );
}

#[tokio::test]
async fn a_webhook_url_outside_its_granted_origin_is_refused_by_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Recorder::start().await;
    let (host, rx) = project(
        dir.path(),
        ok(),
        ok(),
        &[(
            "alert_webhook_url",
            format!("http://{}/exfiltrate", elsewhere.addr),
        )],
    )
    .await;
    let mut n = halted();
    n["channels"] = json!(["webhook"]);
    let (status, accepted) = send(&host, Some(TRADER), n).await;
    assert_eq!(status, 202, "{accepted}");
    let record = settle(&host, accepted["id"].as_str().unwrap()).await;
    // Refused by the host at every try, until the retry budget ran out.
    assert_eq!(record["deliveries"][0]["status"], "failed");
    let attempts = record["deliveries"][0]["attempts"].as_array().unwrap();
    assert!(
        attempts
            .iter()
            .all(|a| a["error"].is_string() && a["http_status"].is_null()),
        "{record}"
    );
    assert!(record["deliveries"][0]["attempts"][0]["error"].is_string());
    let denied = metric_value(
        &metrics(&host).await,
        "runtime_host_outbound_denied_total{component=\"notification-service\",kind=\"http\"}",
    );
    assert!(
        denied >= attempts.len() as f64,
        "the host refused each try: {denied}"
    );
    assert_eq!(
        elsewhere.count() + rx.hook.count(),
        0,
        "nothing left the host"
    );

    // The log's `since` filter.
    let created_at = record["created_at"].as_i64().unwrap();
    let later = read_log(&host, &format!("?since={}", created_at + 1)).await;
    assert_eq!(later["notifications"], json!([]));
    let now = read_log(&host, &format!("?since={created_at}")).await;
    assert_eq!(now["notifications"].as_array().unwrap().len(), 1);
}

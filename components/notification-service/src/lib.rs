//! The `notification-service` component: Spin's HTTP trigger in front of [`alerting`].
//!
//! Routes (below `/api/v1/notifications`): `POST /send` (trader) accepts a
//! notification (202 with its id once it is stored: every channel it goes
//! to is `pending`), `POST /deliver` (trader) makes one delivery pass now,
//! `GET /?severity&since&limit` (viewer) reads the delivery log,
//! `GET /metrics` (open) counts deliveries.
//!
//! Delivery is at least once and off the sender's path: after answering a
//! `send` (the response is complete; the instance goes on), and on every
//! `POST /deliver` (a CronJob's, in a cluster), the due pending deliveries
//! are tried once each, oldest first, under a lease per notification so
//! that two passes do not send one twice; a failure is retried with
//! backoff for the retry budget (15 minutes by default), across requests
//! and restarts, and then stays `failed` in the log.
//!
//! Channels: Slack (incoming webhook, Block Kit), a generic webhook (JSON,
//! HMAC-SHA256 signature header) and the log (a JSON line on stderr, which
//! the host collects). Which are enabled, their URLs (secret variables, and
//! the component's only outbound hosts), the de-duplication window and the
//! per-channel throttle are variables.

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use std::cell::Cell;

use alerting::delivery::{self, Attempt, Delivery, DeliveryStatus, Record, RetryPolicy};
use alerting::{Channel, Notification, Severity, slack, webhook};
use spin_adapter::{Query, Role, Route, Service, authorize, json_body, path_info};
use spin_sdk::http::{Method, OutgoingResponse, Request, Response, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

static SERVICE: Service = Service {
    id: alerting::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: alerting::UPSTREAMS,
    check_config: Some(check_config),
};

/// Log records kept (older ones are deleted as new ones arrive).
const RETENTION: i64 = 1_000;
const SEQ_KEY: &str = "notify/seq";
/// The notifications with a pending delivery (their sequence numbers).
const PENDING_KEY: &str = "notify/pending";
/// Notifications one delivery pass works on at most.
const PASS_LIMIT: usize = 50;
/// How long a pass may hold a notification before another may take it.
const LEASE_MS: i64 = 30_000;

thread_local! {
    /// Whether this request accepted deliveries to make after answering.
    static DELIVER_AFTER: Cell<bool> = const { Cell::new(false) };
}

#[http_component]
async fn handle(req: Request, out: ResponseOutparam) {
    DELIVER_AFTER.set(false);
    let mut response = spin_adapter::serve(&SERVICE, req, route).await;
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        Ok(head) => {
            if let Err(e) = out.set_with_body(head, body).await {
                eprintln!("notification-service: the response was not sent: {e}");
            }
        }
        Err(e) => eprintln!("notification-service: the response was not built: {e}"),
    }
    // The caller has its answer; the deliveries it asked for go out now.
    if DELIVER_AFTER.get()
        && let Err(e) = deliver_due(PASS_LIMIT).await
    {
        eprintln!("notification-service: delivery pass: {e:?}");
    }
}

async fn route(req: Request) -> Route {
    match dispatch(req).await {
        Ok(route) | Err(route) => route,
    }
}

fn var(name: &str) -> String {
    spin_sdk::variables::get(name).unwrap_or_default()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The deployment's settings, validated on every request (they are variables).
struct Settings {
    enabled: Vec<Channel>,
    slack_url: String,
    webhook_url: String,
    webhook_secret: String,
    dedup_window_secs: i64,
    throttle_per_minute: i64,
    retry: RetryPolicy,
}

fn settings() -> Result<Settings, Route> {
    let bad = |msg: String| Route::error(500, "configuration", msg);
    let mut enabled = Vec::new();
    for name in var("channels")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        enabled.push(
            Channel::parse(name)
                .ok_or_else(|| bad(format!("variable `channels`: unknown `{name}`")))?,
        );
    }
    let number = |name: &str, default: i64| -> Result<i64, Route> {
        match var(name).trim() {
            "" => Ok(default),
            raw => raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                bad(format!(
                    "variable `{name}`: `{raw}` is not a positive integer"
                ))
            }),
        }
    };
    let settings = Settings {
        slack_url: var("slack_webhook_url"),
        webhook_url: var("webhook_url"),
        webhook_secret: var("webhook_secret"),
        dedup_window_secs: number("dedup_window_secs", 300)?,
        throttle_per_minute: number("throttle_per_minute", 20)?,
        retry: RetryPolicy {
            budget_ms: number("retry_budget_ms", RetryPolicy::default().budget_ms as i64)? as u64,
            base_backoff_ms: number(
                "retry_base_ms",
                RetryPolicy::default().base_backoff_ms as i64,
            )? as u64,
            ..RetryPolicy::default()
        },
        enabled,
    };
    if settings.enabled.contains(&Channel::Webhook) && settings.webhook_secret.is_empty() {
        return Err(bad(
            "the webhook channel needs `webhook_secret` to sign with".into(),
        ));
    }
    Ok(settings)
}

fn check_config() -> Result<(), String> {
    settings().map_err(|route| match route {
        Route::Error(_, error) => error.message,
        _ => "invalid configuration".to_string(),
    })?;
    spin_adapter::check_auth_config()
}

fn bucket() -> Result<store::Bucket, Route> {
    store::open("default").map_err(|e| Route::error(500, "store-unavailable", format!("{e:?}")))
}

fn store_failed(e: impl std::fmt::Debug) -> Route {
    Route::error(500, "store-unavailable", format!("{e:?}"))
}

async fn dispatch(req: Request) -> Result<Route, Route> {
    match (req.method(), path_info(&SERVICE, &req).as_str()) {
        (Method::Post, "/send") => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let notification: Notification = json_body(req.body())?;
            notification
                .validate()
                .map_err(|(field, e)| Route::error(400, &format!("invalid-{field}"), e))?;
            let record = send(notification)?;
            let mut body = serde_json::to_value(&record).map_err(store_failed)?;
            body["accepted"] = serde_json::json!(true);
            Ok(Route::Json(202, body))
        }
        (Method::Post, "/deliver") => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            Ok(Route::ok(deliver_due(PASS_LIMIT).await?))
        }
        (Method::Get, "/" | "") => {
            authorize(&req, Role::Viewer)?;
            let query = Query::of(&req, &["severity", "since", "limit"])?;
            let severity = match query.get("severity") {
                None => None,
                Some(s) => Some(Severity::parse(s).ok_or_else(|| {
                    Route::error(
                        400,
                        "invalid-severity",
                        format!("`{s}` is not info, warning or critical"),
                    )
                })?),
            };
            let since = parse_param(&query, "since")?;
            let limit = parse_param(&query, "limit")?.unwrap_or(100);
            if !(1..=500).contains(&limit) {
                return Err(Route::error(
                    400,
                    "invalid-limit",
                    format!("`limit` is 1 to 500, got {limit}"),
                ));
            }
            let records = recent(severity, since, limit as usize)?;
            Ok(Route::ok(serde_json::json!({ "notifications": records })))
        }
        (Method::Get, "/metrics") => {
            Query::none(&req)?;
            Ok(Route::Text("text/plain; version=0.0.4", metrics()?))
        }
        _ => Ok(Route::NotFound),
    }
}

fn parse_param(query: &Query, name: &str) -> Result<Option<i64>, Route> {
    query
        .get(name)
        .map(|raw| {
            raw.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| {
                Route::error(
                    400,
                    &format!("invalid-{name}"),
                    format!("`{raw}` is not a non-negative integer"),
                )
            })
        })
        .transpose()
}

/// Claim `key` for this window: false if a delivery of it is still fresh.
/// Compare-and-swap, so two concurrent sends of one key deliver once.
fn claim_dedup(bucket: &store::Bucket, key: &str, now: i64, window: i64) -> Result<bool, Route> {
    let key = format!("notify/dedup/{key}");
    let cas = atomics::Cas::new(bucket, &key).map_err(store_failed)?;
    let last = cas
        .current()
        .map_err(store_failed)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    if delivery::is_duplicate(last, now, window) {
        return Ok(false);
    }
    match atomics::swap(cas, now.to_string().as_bytes()) {
        Ok(()) => Ok(true),
        Err(atomics::CasError::CasFailed(_)) => Ok(false),
        Err(atomics::CasError::StoreError(e)) => Err(store_failed(e)),
    }
}

/// Count one more delivery on `channel`; false over the limit. The window
/// opens at the first delivery and lasts a minute (`start:count` under
/// compare-and-swap, so concurrent sends count exactly).
fn within_throttle(
    bucket: &store::Bucket,
    channel: Channel,
    now: i64,
    limit: i64,
) -> Result<bool, Route> {
    let key = format!("notify/throttle/{}", channel.as_str());
    loop {
        let cas = atomics::Cas::new(bucket, &key).map_err(store_failed)?;
        let current = cas
            .current()
            .map_err(store_failed)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| {
                let (start, count) = v.split_once(':')?;
                Some((start.parse::<i64>().ok()?, count.parse::<i64>().ok()?))
            });
        let (start, count) = delivery::throttle_step(current, now, 60);
        if count > limit {
            return Ok(false);
        }
        match atomics::swap(cas, format!("{start}:{count}").as_bytes()) {
            Ok(()) => return Ok(true),
            Err(atomics::CasError::CasFailed(_)) => continue,
            Err(atomics::CasError::StoreError(e)) => return Err(store_failed(e)),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Accept a notification: stored in the log with each channel's delivery
/// decided (pending, or settled: the log channel, throttled, disabled), and
/// listed as pending. Nothing is sent to Slack or a webhook here.
fn send(notification: Notification) -> Result<Record, Route> {
    let settings = settings()?;
    let bucket = bucket()?;
    let created_at = now();
    let accepted_ms = now_ms();
    let seq = atomics::increment(&bucket, SEQ_KEY, 1).map_err(store_failed)?;
    let id = format!("ntf-{seq:08}");
    let fresh = match &notification.dedup_key {
        Some(key) => claim_dedup(&bucket, key, created_at, settings.dedup_window_secs)?,
        None => true,
    };
    let channels: Vec<Channel> = if notification.channels.is_empty() {
        settings.enabled.clone()
    } else {
        notification.channels.clone()
    };
    let mut deliveries = Vec::new();
    if fresh {
        for channel in channels {
            let delivery = if !settings.enabled.contains(&channel) {
                Delivery::settled(channel, DeliveryStatus::Disabled)
            } else if notification.severity < Severity::Critical
                && !within_throttle(&bucket, channel, created_at, settings.throttle_per_minute)?
            {
                Delivery::settled(channel, DeliveryStatus::Throttled)
            } else if channel == Channel::Log {
                log_line(&notification, &id);
                Delivery::settled(channel, DeliveryStatus::Delivered)
            } else {
                Delivery::pending(channel, accepted_ms)
            };
            deliveries.push(delivery);
        }
    }
    let record = Record {
        id,
        seq,
        created_at,
        accepted_ms: Some(accepted_ms),
        notification,
        deduplicated: !fresh,
        deliveries,
    };
    store_record(&bucket, &record)?;
    if record
        .deliveries
        .iter()
        .any(|d| d.status == DeliveryStatus::Pending)
    {
        update_pending(&bucket, |pending| pending.push(seq))?;
        DELIVER_AFTER.set(true);
    }
    if seq > RETENTION {
        let _ = bucket.delete(&log_key(seq - RETENTION));
    }
    Ok(record)
}

fn store_record(bucket: &store::Bucket, record: &Record) -> Result<(), Route> {
    let encoded = serde_json::to_vec(record).map_err(store_failed)?;
    bucket
        .set(&log_key(record.seq), &encoded)
        .map_err(store_failed)
}

fn log_key(seq: i64) -> String {
    format!("notify/log/{seq:012}")
}

fn log_line(n: &Notification, id: &str) {
    let line = serde_json::json!({
        "notification": id, "type": n.kind, "severity": n.severity,
        "title": n.title, "message": n.message, "fields": n.fields,
    });
    eprintln!("{line}");
}

/// The stored list of sequence numbers with a pending delivery.
fn decode_pending(bytes: Option<Vec<u8>>) -> Vec<i64> {
    bytes
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}

/// The sequence numbers with a pending delivery, as stored (no write).
fn pending(bucket: &store::Bucket) -> Result<Vec<i64>, Route> {
    Ok(decode_pending(
        bucket.get(PENDING_KEY).map_err(store_failed)?,
    ))
}

/// The sequence numbers with a pending delivery, changed by compare-and-swap.
fn update_pending(
    bucket: &store::Bucket,
    mut change: impl FnMut(&mut Vec<i64>),
) -> Result<Vec<i64>, Route> {
    loop {
        let cas = atomics::Cas::new(bucket, PENDING_KEY).map_err(store_failed)?;
        let mut pending = decode_pending(cas.current().map_err(store_failed)?);
        change(&mut pending);
        pending.sort_unstable();
        pending.dedup();
        let encoded = serde_json::to_vec(&pending).map_err(store_failed)?;
        match atomics::swap(cas, &encoded) {
            Ok(()) => return Ok(pending),
            Err(atomics::CasError::CasFailed(_)) => continue,
            Err(atomics::CasError::StoreError(e)) => return Err(store_failed(e)),
        }
    }
}

/// Take notification `seq` for this pass unless another pass holds it.
fn take_lease(bucket: &store::Bucket, seq: i64, now: i64) -> Result<bool, Route> {
    let cas = atomics::Cas::new(bucket, &format!("notify/lease/{seq}")).map_err(store_failed)?;
    let held_until = cas
        .current()
        .map_err(store_failed)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok());
    if held_until.is_some_and(|t| t > now) {
        return Ok(false);
    }
    match atomics::swap(cas, (now + LEASE_MS).to_string().as_bytes()) {
        Ok(()) => Ok(true),
        Err(atomics::CasError::CasFailed(_)) => Ok(false),
        Err(atomics::CasError::StoreError(e)) => Err(store_failed(e)),
    }
}

/// One delivery pass: every due pending delivery of the oldest pending
/// notifications is tried once; what is settled leaves the pending list.
async fn deliver_due(limit: usize) -> Result<serde_json::Value, Route> {
    let settings = settings()?;
    let bucket = bucket()?;
    let pending = pending(&bucket)?;
    let (mut attempted, mut delivered, mut failed) = (0, 0, 0);
    let mut settled = Vec::new();
    for seq in pending.iter().copied().take(limit) {
        if !take_lease(&bucket, seq, now_ms())? {
            continue;
        }
        let record = bucket
            .get(&log_key(seq))
            .map_err(store_failed)?
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok());
        let Some(mut record) = record else {
            // Gone from the log (retention): nothing left to deliver.
            settled.push(seq);
            continue;
        };
        let accepted = record
            .accepted_ms
            .unwrap_or(record.created_at.saturating_mul(1_000));
        let mut changed = false;
        for i in 0..record.deliveries.len() {
            if !record.deliveries[i].is_due(now_ms()) {
                continue;
            }
            let channel = record.deliveries[i].channel;
            let (attempt, retry_after) = attempt(&settings, channel, &record).await;
            record.deliveries[i].record(
                attempt,
                retry_after.as_deref(),
                accepted,
                now_ms(),
                &settings.retry,
            );
            attempted += 1;
            match record.deliveries[i].status {
                DeliveryStatus::Delivered => delivered += 1,
                DeliveryStatus::Failed => failed += 1,
                _ => {}
            }
            changed = true;
        }
        if changed {
            store_record(&bucket, &record)?;
        }
        if !record
            .deliveries
            .iter()
            .any(|d| d.status == DeliveryStatus::Pending)
        {
            settled.push(seq);
        }
        let _ = bucket.delete(&format!("notify/lease/{seq}"));
    }
    let remaining = if settled.is_empty() {
        pending.len()
    } else {
        update_pending(&bucket, |p| p.retain(|s| !settled.contains(s)))?.len()
    };
    Ok(serde_json::json!({
        "attempted": attempted,
        "delivered": delivered,
        "failed": failed,
        "pending": remaining,
    }))
}

/// One try of one channel: the attempt and the receiver's `Retry-After`.
async fn attempt(
    settings: &Settings,
    channel: Channel,
    record: &Record,
) -> (Attempt, Option<String>) {
    let (n, id) = (&record.notification, record.id.as_str());
    let request = match channel {
        Channel::Slack => Request::post(&settings.slack_url, slack::payload(n, id).to_string())
            .header("content-type", "application/json")
            .build(),
        _ => {
            let body = webhook::body(n, id, record.created_at);
            let signature = webhook::signature(settings.webhook_secret.as_bytes(), now(), &body);
            Request::post(&settings.webhook_url, body)
                .header("content-type", "application/json")
                .header(webhook::SIGNATURE_HEADER, signature)
                .build()
        }
    };
    let (status, retry_after, error) = match spin_sdk::http::send::<_, Response>(request).await {
        Ok(resp) => {
            let retry_after = resp
                .header("retry-after")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            (Some(*resp.status()), retry_after, None)
        }
        Err(e) => (None, None, Some(e.to_string())),
    };
    (
        Attempt {
            http_status: status,
            error,
            waited_ms: 0,
        },
        retry_after,
    )
}

fn recent(
    severity: Option<Severity>,
    since: Option<i64>,
    limit: usize,
) -> Result<Vec<Record>, Route> {
    let bucket = bucket()?;
    let last = bucket
        .get(SEQ_KEY)
        .map_err(store_failed)?
        .and_then(|v| delivery::counter_value(&v))
        .unwrap_or(0);
    let mut out = Vec::new();
    for seq in (1.max(last - RETENTION + 1)..=last).rev() {
        let Some(bytes) = bucket.get(&log_key(seq)).map_err(store_failed)? else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            continue;
        };
        if since.is_some_and(|t| record.created_at < t) {
            break;
        }
        if record.matches(severity, since) {
            out.push(record);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

fn metrics() -> Result<String, Route> {
    let records = recent(None, None, RETENTION as usize)?;
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    let mut deduplicated = 0;
    for r in &records {
        deduplicated += usize::from(r.deduplicated);
        for d in &r.deliveries {
            let status = serde_json::to_value(d.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            *counts
                .entry((d.channel.as_str().to_string(), status))
                .or_default() += 1;
        }
    }
    let mut out = String::from(
        "# HELP notification_deliveries Deliveries in the retained log, by channel and status.\n# TYPE notification_deliveries gauge\n",
    );
    for ((channel, status), n) in counts {
        out.push_str(&format!(
            "notification_deliveries{{channel=\"{channel}\",status=\"{status}\"}} {n}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP notification_deduplicated Notifications in the retained log not delivered as duplicates.\n# TYPE notification_deduplicated gauge\nnotification_deduplicated {deduplicated}\n"
    ));
    let pending = pending(&bucket()?)?;
    out.push_str(&format!(
        "# HELP notification_pending Notifications with a delivery still to make.\n# TYPE notification_pending gauge\nnotification_pending {}\n",
        pending.len()
    ));
    Ok(out)
}

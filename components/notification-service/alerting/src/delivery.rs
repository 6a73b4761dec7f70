//! Delivery: when to retry, what the log records, how it is queried.
//!
//! A notification is accepted first (stored, every channel `pending`) and
//! delivered after: one attempt per channel per delivery pass, across
//! requests and restarts. A channel's delivery is retried on 429, 5xx and
//! transport errors with exponential backoff, or after what `Retry-After`
//! asks; when the next try would fall beyond the retry budget (minutes,
//! counted from acceptance) or the receiver refuses it (another 4xx), it is
//! `failed` for good. De-duplication (one delivery per `dedup_key` per
//! window) and throttling (per channel per minute; critical alerts are
//! never throttled) are decided by the component against the store's
//! compare-and-swap.

use serde::{Deserialize, Serialize};

use crate::notification::{Channel, Notification, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// All waits of one delivery together stay under this.
    pub budget_ms: u64,
}

/// 1 s, 2 s, 4 s, ... up to a minute between tries, for up to 15 minutes.
impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            base_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            budget_ms: 15 * 60_000,
        }
    }
}

/// A receiver's answer worth another attempt: 429, 5xx, or none at all.
pub fn retryable(status: Option<u16>) -> bool {
    matches!(status, None | Some(429) | Some(500..=599))
}

impl RetryPolicy {
    /// After attempt `attempt` (1-based) ended with `status` (`None`: no
    /// answer) and `retry_after` (the header, in seconds), `waited_ms` after
    /// the notification was accepted: how long to wait before the next, or
    /// `None` to stop.
    pub fn next_wait(
        &self,
        attempt: u32,
        status: Option<u16>,
        retry_after: Option<&str>,
        waited_ms: u64,
    ) -> Option<u64> {
        if !retryable(status) || attempt >= self.max_attempts {
            return None;
        }
        let backoff = self
            .base_backoff_ms
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.max_backoff_ms);
        let asked = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| secs.saturating_mul(1_000));
        let wait = asked.unwrap_or(backoff);
        (waited_ms.saturating_add(wait) <= self.budget_ms).then_some(wait)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Accepted, not delivered yet: tried at `next_attempt_ms`.
    Pending,
    Delivered,
    Failed,
    /// Over the channel's per-minute limit: recorded, not sent.
    Throttled,
    /// The channel is not enabled in this deployment.
    Disabled,
}

/// One try of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since the previous attempt (the first: since the acceptance).
    pub waited_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// When a pending delivery is tried next (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
}

impl Delivery {
    /// A delivery that ends here (`Delivered` to the log, `Throttled`, `Disabled`).
    pub fn settled(channel: Channel, status: DeliveryStatus) -> Self {
        Self {
            channel,
            status,
            attempts: Vec::new(),
            next_attempt_ms: None,
        }
    }

    /// A delivery to make, first tried at `at_ms`.
    pub fn pending(channel: Channel, at_ms: i64) -> Self {
        Self {
            channel,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt_ms: Some(at_ms),
        }
    }

    /// Pending and due at `now_ms`.
    pub fn is_due(&self, now_ms: i64) -> bool {
        self.status == DeliveryStatus::Pending && self.next_attempt_ms.is_none_or(|t| t <= now_ms)
    }

    /// Record an attempt made at `now_ms` of a notification accepted at
    /// `accepted_ms`: delivered on a 2xx, else pending with its next try
    /// scheduled by `policy`, or failed for good.
    pub fn record(
        &mut self,
        mut attempt: Attempt,
        retry_after: Option<&str>,
        accepted_ms: i64,
        now_ms: i64,
        policy: &RetryPolicy,
    ) {
        // Each attempt says how long after the one before it came.
        let waited: u64 = self.attempts.iter().map(|a| a.waited_ms).sum();
        let previous = accepted_ms.saturating_add(i64::try_from(waited).unwrap_or(i64::MAX));
        attempt.waited_ms = u64::try_from(now_ms - previous).unwrap_or(0);
        let status = attempt.http_status;
        self.attempts.push(attempt);
        if status.is_some_and(|s| (200..300).contains(&s)) {
            self.status = DeliveryStatus::Delivered;
            self.next_attempt_ms = None;
            return;
        }
        let number = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
        let elapsed = u64::try_from(now_ms - accepted_ms).unwrap_or(0);
        match policy.next_wait(number, status, retry_after, elapsed) {
            Some(wait) => {
                self.status = DeliveryStatus::Pending;
                self.next_attempt_ms =
                    Some(now_ms.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)));
            }
            None => {
                self.status = DeliveryStatus::Failed;
                self.next_attempt_ms = None;
            }
        }
    }
}

/// One notification in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub seq: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was accepted, Unix milliseconds (the retry budget counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_ms: Option<i64>,
    pub notification: Notification,
    /// Same `dedup_key` within the window: nothing was delivered.
    pub deduplicated: bool,
    pub deliveries: Vec<Delivery>,
}

impl Record {
    /// The log query: at least `severity`, created at or after `since`.
    pub fn matches(&self, severity: Option<Severity>, since: Option<i64>) -> bool {
        severity.is_none_or(|s| self.notification.severity >= s)
            && since.is_none_or(|t| self.created_at >= t)
    }
}

/// The value of a counter that `wasi:keyvalue/atomics` `increment` keeps,
/// as `get` returns it: Spin's SQLite store keeps eight little-endian bytes,
/// Redis (and this project's host) decimal text. (Eight bytes that are all
/// ASCII digits are text: as little-endian they would be above 3.4e18.)
pub fn counter_value(bytes: &[u8]) -> Option<i64> {
    if let Ok(le) = <[u8; 8]>::try_from(bytes)
        && !bytes.iter().all(u8::is_ascii_digit)
    {
        return Some(i64::from_le_bytes(le));
    }
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Is a previous delivery of the same key at `last` still inside the window at `now`?
pub fn is_duplicate(last: Option<i64>, now: i64, window_secs: i64) -> bool {
    last.is_some_and(|t| now - t < window_secs)
}

/// The throttle's window after one more delivery at `now`: `(start, count)`.
/// A window opens at its first delivery and lasts `window_secs`.
pub fn throttle_step(current: Option<(i64, i64)>, now: i64, window_secs: i64) -> (i64, i64) {
    match current {
        Some((start, count)) if now - start < window_secs => (start, count + 1),
        _ => (now, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions_case_table() {
        let p = RetryPolicy {
            max_attempts: 4,
            base_backoff_ms: 200,
            max_backoff_ms: 2_000,
            budget_ms: 5_000,
        };
        // (attempt, status, retry-after, waited so far, next wait)
        type Case = (u32, Option<u16>, Option<&'static str>, u64, Option<u64>);
        let cases: Vec<Case> = vec![
            (1, Some(200), None, 0, None),
            (1, Some(400), None, 0, None),
            (1, Some(404), None, 0, None),
            (1, Some(500), None, 0, Some(200)),
            (2, Some(503), None, 200, Some(400)),
            (3, None, None, 600, Some(800)),
            (4, Some(500), None, 1_400, None),
            (1, Some(429), Some("2"), 0, Some(2_000)),
            (1, Some(429), Some(" 1 "), 0, Some(1_000)),
            (
                1,
                Some(429),
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                0,
                Some(200),
            ),
            (1, Some(429), Some("120"), 0, None),
            (2, Some(429), Some("3"), 3_000, None),
        ];
        for (attempt, status, retry_after, waited, expected) in cases {
            assert_eq!(
                p.next_wait(attempt, status, retry_after, waited),
                expected,
                "attempt {attempt}, {status:?}, {retry_after:?}, waited {waited}"
            );
        }
    }

    #[test]
    fn a_delivery_is_retried_across_passes_until_delivered_or_out_of_budget() {
        let policy = RetryPolicy::default();
        let accepted = 1_000_000;
        let failed = |status| Attempt {
            http_status: Some(status),
            error: None,
            waited_ms: 0,
        };
        let mut d = Delivery::pending(Channel::Slack, accepted);
        assert!(d.is_due(accepted));
        // 503, 503, 429 (Retry-After: 30), then 200.
        d.record(failed(503), None, accepted, accepted + 5, &policy);
        assert_eq!(
            (d.status, d.next_attempt_ms),
            (DeliveryStatus::Pending, Some(accepted + 5 + 1_000))
        );
        assert!(!d.is_due(accepted + 500));
        d.record(failed(503), None, accepted, accepted + 1_010, &policy);
        assert_eq!(d.next_attempt_ms, Some(accepted + 1_010 + 2_000));
        d.record(failed(429), Some("30"), accepted, accepted + 3_020, &policy);
        assert_eq!(d.next_attempt_ms, Some(accepted + 3_020 + 30_000));
        d.record(failed(200), None, accepted, accepted + 33_100, &policy);
        assert_eq!(
            (d.status, d.next_attempt_ms),
            (DeliveryStatus::Delivered, None)
        );
        let waits: Vec<u64> = d.attempts.iter().map(|a| a.waited_ms).collect();
        assert_eq!(waits, [5, 1_005, 2_010, 30_080]);

        // A 4xx other than 429 ends it at once; so does a wait past the budget.
        let mut d = Delivery::pending(Channel::Webhook, accepted);
        d.record(failed(404), None, accepted, accepted, &policy);
        assert_eq!(d.status, DeliveryStatus::Failed);
        let mut d = Delivery::pending(Channel::Webhook, accepted);
        let late = accepted + policy.budget_ms as i64 - 500;
        d.record(failed(503), None, accepted, late, &policy);
        assert_eq!(
            (d.status, d.next_attempt_ms),
            (DeliveryStatus::Failed, None),
            "the next try would fall after the budget"
        );
    }

    #[test]
    fn counters_read_the_same_from_every_store() {
        assert_eq!(
            counter_value(&42i64.to_le_bytes()),
            Some(42),
            "Spin's SQLite"
        );
        assert_eq!(counter_value(b"42"), Some(42), "Redis, this host");
        assert_eq!(
            counter_value(b"12345678"),
            Some(12_345_678),
            "eight digits are text"
        );
        assert_eq!(counter_value(&(1i64 << 40).to_le_bytes()), Some(1 << 40));
        assert_eq!(counter_value(b"x"), None);
    }

    #[test]
    fn dedup_windows_and_log_queries() {
        assert!(!is_duplicate(None, 1_000, 300));
        assert!(is_duplicate(Some(1_000), 1_299, 300));
        assert!(!is_duplicate(Some(1_000), 1_300, 300));
        assert_eq!(throttle_step(None, 1_000, 60), (1_000, 1));
        assert_eq!(throttle_step(Some((1_000, 3)), 1_059, 60), (1_000, 4));
        assert_eq!(throttle_step(Some((1_000, 9)), 1_060, 60), (1_060, 1));
        let record = Record {
            id: "ntf-1".into(),
            seq: 1,
            created_at: 1_000,
            accepted_ms: None,
            notification: Notification {
                kind: "x".into(),
                severity: Severity::Warning,
                title: "t".into(),
                message: String::new(),
                fields: vec![],
                dedup_key: None,
                channels: vec![],
                link: None,
            },
            deduplicated: false,
            deliveries: vec![],
        };
        assert!(record.matches(None, None));
        assert!(record.matches(Some(Severity::Info), Some(1_000)));
        assert!(record.matches(Some(Severity::Warning), None));
        assert!(!record.matches(Some(Severity::Critical), None));
        assert!(!record.matches(None, Some(1_001)));
    }
}

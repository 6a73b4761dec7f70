//! Delivery: when to retry, what the log records, how it is queried.
//!
//! A channel's delivery is retried on 429, 5xx and transport errors with
//! exponential backoff, waiting what `Retry-After` asks when the receiver
//! says; a wait beyond the request's budget ends the delivery as failed
//! rather than holding the caller. De-duplication (one delivery per
//! `dedup_key` per window) and throttling (per channel per minute;
//! critical alerts are never throttled) are decided by the component
//! against the store's compare-and-swap.

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

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_backoff_ms: 200,
            max_backoff_ms: 2_000,
            budget_ms: 5_000,
        }
    }
}

/// A receiver's answer worth another attempt: 429, 5xx, or none at all.
pub fn retryable(status: Option<u16>) -> bool {
    matches!(status, None | Some(429) | Some(500..=599))
}

impl RetryPolicy {
    /// After attempt `attempt` (1-based) ended with `status` (`None`: no
    /// answer) and `retry_after` (the header, in seconds), having waited
    /// `waited_ms` so far: how long to wait before the next, or `None` to stop.
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
    /// Waited before this attempt.
    pub waited_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub channel: Channel,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
}

/// One notification in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub seq: i64,
    /// Unix seconds.
    pub created_at: i64,
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
        let p = RetryPolicy::default();
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

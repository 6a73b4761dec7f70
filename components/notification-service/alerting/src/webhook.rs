//! The generic webhook: the notification as JSON, signed so the receiver can
//! check it came from us and is fresh. Signature header:
//! `X-Daytrade-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (the timestamp is signed with the body, so an old delivery cannot be replayed later).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::notification::Notification;

pub const SIGNATURE_HEADER: &str = "x-daytrade-signature";

/// The JSON body.
pub fn body(n: &Notification, id: &str, created_at: i64) -> Vec<u8> {
    let fields: serde_json::Map<String, Value> = n
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": id,
        "type": n.kind,
        "severity": n.severity,
        "title": n.title,
        "message": n.message,
        "fields": fields,
        "dedup_key": n.dedup_key,
        "link": n.link,
        "created_at": created_at,
    })
    .to_string()
    .into_bytes()
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature header's value.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// What a receiver does: parse the header, check the HMAC in constant time and
/// the timestamp against `now` within `tolerance` seconds.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => given = Some(v),
            _ => {}
        }
    }
    let (Some(timestamp), Some(given)) = (timestamp, given) else {
        return false;
    };
    if (now - timestamp).abs() > tolerance || given.len() != 64 {
        return false;
    }
    let Some(bytes) = (0..32)
        .map(|i| u8::from_str_radix(&given[2 * i..2 * i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Severity;

    #[test]
    fn signatures_verify_and_tampering_or_age_fails() {
        let n = Notification {
            kind: "order-filled".into(),
            severity: Severity::Info,
            title: "t".into(),
            message: "m".into(),
            fields: vec![("symbol".into(), "AAPL".into())],
            dedup_key: Some("k".into()),
            channels: vec![],
            link: None,
        };
        let body = body(&n, "ntf-7", 1_800_000_000);
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["fields"]["symbol"], "AAPL");
        assert_eq!(parsed["type"], "order-filled");
        let header = signature(b"s3cret", 1_800_000_000, &body);
        assert!(verify(b"s3cret", &header, &body, 1_800_000_010, 300));
        assert!(
            !verify(b"other", &header, &body, 1_800_000_010, 300),
            "wrong secret"
        );
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(
            !verify(b"s3cret", &header, &tampered, 1_800_000_010, 300),
            "body changed"
        );
        assert!(
            !verify(b"s3cret", &header, &body, 1_800_001_000, 300),
            "too old"
        );
        // Python's hmac.new(b"key", b"1.{}", hashlib.sha256).hexdigest().
        assert_eq!(
            signature(b"key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}

//! A notification as callers send it, validated before anything is delivered.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Slack,
    Webhook,
    Log,
}

impl Channel {
    pub const ALL: [Self; 3] = [Self::Slack, Self::Webhook, Self::Log];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "slack" => Some(Self::Slack),
            "webhook" => Some(Self::Webhook),
            "log" => Some(Self::Log),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Webhook => "webhook",
            Self::Log => "log",
        }
    }
}

/// `POST /api/v1/notifications/send`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// What happened: `order-filled`, `order-denied`, `trading-state`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    /// Shown as a table (Slack fields), in this order.
    #[serde(default)]
    pub fields: Vec<(String, String)>,
    /// Notifications with the same key within the window are delivered once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Empty: every enabled channel.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Where to see more (the order in the platform's API), a Slack button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

pub const MAX_TITLE: usize = 150;
pub const MAX_MESSAGE: usize = 3_000;
pub const MAX_FIELDS: usize = 20;
pub const MAX_FIELD: usize = 500;
pub const MAX_KEY: usize = 200;

impl Notification {
    /// Check the sizes Slack and the log can take: the first problem found,
    /// with the field it is in.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let kind_ok = !self.kind.is_empty()
            && self.kind.len() <= 64
            && self
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !kind_ok {
            return Err(("type", "type is 1 to 64 of a-z 0-9 - .".into()));
        }
        if self.title.trim().is_empty() || self.title.chars().count() > MAX_TITLE {
            return Err(("title", format!("title is 1 to {MAX_TITLE} characters")));
        }
        if self.message.chars().count() > MAX_MESSAGE {
            return Err((
                "message",
                format!("message is at most {MAX_MESSAGE} characters"),
            ));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(("fields", format!("at most {MAX_FIELDS} fields")));
        }
        if self
            .fields
            .iter()
            .any(|(k, v)| k.is_empty() || k.chars().count() > 100 || v.chars().count() > MAX_FIELD)
        {
            return Err((
                "fields",
                format!("field names are 1 to 100 characters, values at most {MAX_FIELD}"),
            ));
        }
        if self
            .dedup_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY)
        {
            return Err(("dedup_key", format!("dedup_key is 1 to {MAX_KEY} bytes")));
        }
        if let Some((i, channel)) = self
            .channels
            .iter()
            .enumerate()
            .find(|(i, c)| self.channels[..*i].contains(c))
        {
            return Err((
                "channels",
                format!("channel {channel:?} is named twice (at {i})"),
            ));
        }
        if self.link.as_deref().is_some_and(|l| !is_web_link(l)) {
            return Err((
                "link",
                "link is an http(s) URL with a host, at most 2,000 bytes".into(),
            ));
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL with a host and no white space.
fn is_web_link(link: &str) -> bool {
    let Some(rest) = link
        .strip_prefix("https://")
        .or_else(|| link.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    link.len() <= 2_000
        && !host.is_empty()
        && !link.chars().any(char::is_whitespace)
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> Notification {
        Notification {
            kind: "order-filled".into(),
            severity: Severity::Info,
            title: "Bought 100 7203.T".into(),
            message: "at 2,511".into(),
            fields: vec![("symbol".into(), "7203.T".into())],
            dedup_key: None,
            channels: vec![],
            link: None,
        }
    }

    #[test]
    fn validation_case_table() {
        let cases: Vec<(&str, Notification, bool)> = vec![
            ("valid", note(), true),
            (
                "empty type",
                Notification {
                    kind: String::new(),
                    ..note()
                },
                false,
            ),
            (
                "type with spaces",
                Notification {
                    kind: "order filled".into(),
                    ..note()
                },
                false,
            ),
            (
                "blank title",
                Notification {
                    title: "  ".into(),
                    ..note()
                },
                false,
            ),
            (
                "long title",
                Notification {
                    title: "x".repeat(151),
                    ..note()
                },
                false,
            ),
            (
                "long message",
                Notification {
                    message: "x".repeat(3_001),
                    ..note()
                },
                false,
            ),
            (
                "too many fields",
                Notification {
                    fields: vec![("k".into(), "v".into()); 21],
                    ..note()
                },
                false,
            ),
            (
                "empty dedup key",
                Notification {
                    dedup_key: Some(String::new()),
                    ..note()
                },
                false,
            ),
            (
                "ftp link",
                Notification {
                    link: Some("ftp://x".into()),
                    ..note()
                },
                false,
            ),
            (
                "a link without a host",
                Notification {
                    link: Some("https:///orders".into()),
                    ..note()
                },
                false,
            ),
            (
                "a link with a space",
                Notification {
                    link: Some("https://desk.example/orders/ord 1".into()),
                    ..note()
                },
                false,
            ),
            (
                "a link",
                Notification {
                    link: Some("https://desk.example:8443/api/v1/execution/orders/ord-1".into()),
                    ..note()
                },
                true,
            ),
            (
                "a channel twice",
                Notification {
                    channels: vec![Channel::Log, Channel::Log],
                    ..note()
                },
                false,
            ),
        ];
        for (name, n, ok) in cases {
            assert_eq!(n.validate().is_ok(), ok, "{name}");
        }
    }

    #[test]
    fn wire_format_uses_type_and_rejects_unknown_fields() {
        let json = r#"{"type":"order-filled","severity":"critical","title":"t","message":"m",
            "fields":[["a","b"]],"dedup_key":"k","channels":["slack","log"]}"#;
        let n: Notification = serde_json::from_str(json).unwrap();
        assert_eq!(n.kind, "order-filled");
        assert_eq!(n.channels, [Channel::Slack, Channel::Log]);
        assert!(
            serde_json::from_str::<Notification>(
                r#"{"type":"x","severity":"info","title":"t","message":"m","colour":1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<Notification>(
                r#"{"type":"x","severity":"loud","title":"t","message":"m"}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<Notification>(
                r#"{"type":"x","severity":"info","title":"t","message":"m","channels":["email"]}"#
            )
            .is_err()
        );
    }
}

//! Slack incoming-webhook payloads in Block Kit: a coloured attachment per
//! severity holding a header, the message, the fields (two columns, at most
//! ten per section as Slack requires), a context line and a link button.

use serde_json::{Value, json};

use crate::notification::{Notification, Severity};

pub fn colour(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "#2eb886",
        Severity::Warning => "#daa038",
        Severity::Critical => "#a30200",
    }
}

pub fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => ":information_source:",
        Severity::Warning => ":warning:",
        Severity::Critical => ":rotating_light:",
    }
}

/// Slack's mrkdwn control characters, escaped in text we did not write.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body posted to the incoming webhook.
pub fn payload(n: &Notification, id: &str) -> Value {
    let title = format!("{} {}", emoji(n.severity), n.title);
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": title, "emoji": true }
    })];
    if !n.message.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": escape(&n.message) }
        }));
    }
    for chunk in n.fields.chunks(10) {
        let fields: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", escape(k), escape(v)) }))
            .collect();
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": format!("{} · {} · {}", n.severity.as_str(), escape(&n.kind), id)
        }]
    }));
    if let Some(link) = &n.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": "Open" },
                "url": link
            }]
        }));
    }
    json!({
        // Notifications (phone, desktop) show `text`; the attachment shows the blocks.
        "text": format!("[{}] {}", n.severity.as_str().to_uppercase(), n.title),
        "attachments": [{ "color": colour(n.severity), "blocks": blocks }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_critical_alert_is_red_with_fields_in_sections_of_ten() {
        let n = Notification {
            kind: "trading-state".into(),
            severity: Severity::Critical,
            title: "Trading HALTED".into(),
            message: "daily loss <50,000> & more".into(),
            fields: (0..12)
                .map(|i| (format!("k{i}"), format!("v{i}")))
                .collect(),
            dedup_key: None,
            channels: vec![],
            link: Some("https://trade.example/api/v1/execution/status".into()),
        };
        let p = payload(&n, "ntf-1");
        assert_eq!(p["text"], "[CRITICAL] Trading HALTED");
        let attachment = &p["attachments"][0];
        assert_eq!(attachment["color"], "#a30200");
        let blocks = attachment["blocks"].as_array().unwrap();
        let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "header", "section", "section", "section", "context", "actions"
            ]
        );
        assert_eq!(blocks[0]["text"]["text"], ":rotating_light: Trading HALTED");
        assert_eq!(
            blocks[1]["text"]["text"],
            "daily loss &lt;50,000&gt; &amp; more"
        );
        assert_eq!(blocks[2]["fields"].as_array().unwrap().len(), 10);
        assert_eq!(blocks[3]["fields"][1]["text"], "*k11*\nv11");
        assert_eq!(
            blocks[5]["elements"][0]["url"],
            "https://trade.example/api/v1/execution/status"
        );
    }
}

//! How a delivery's body is written for each format, and how a generic body is signed.
//!
//! The stored payload is the generic body itself (`{event, occurred_at, workspace, integration,
//! title, text, link, data}`, see docs/webhooks.md); Teams and Slack messages are written from
//! its title, text, top items and link. None of it holds a secret: events are built from what
//! the portal shows.

use hmac::{KeyInit as _, Mac};
use rampart_store::WebhookFormat;
use serde_json::{Value, json};

/// The header carrying the generic format's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Rampart-Signature";

/// Items a Teams or Slack message lists (the generic body carries what the event carries).
const LISTED: usize = 10;

/// `sha256=` and the hex HMAC-SHA256 of `timestamp.body` under the signing secret: the timestamp
/// is inside the MAC, so a captured request cannot be replayed with a new one.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The body a webhook of `format` receives for the stored payload.
pub fn body_for(format: WebhookFormat, payload: &str) -> Vec<u8> {
    match format {
        WebhookFormat::Generic => payload.as_bytes().to_vec(),
        WebhookFormat::Teams => teams(&parse(payload)).to_string().into_bytes(),
        WebhookFormat::Slack => slack(&parse(payload)).to_string().into_bytes(),
    }
}

fn parse(payload: &str) -> Value {
    serde_json::from_str(payload).unwrap_or(Value::Null)
}

fn text_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The facts of a message: workspace, integration and the event's own.
fn facts(p: &Value) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    if let Some(w) = p["workspace"]["name"].as_str() {
        facts.push(("Workspace".to_owned(), w.to_owned()));
    }
    if let Some(i) = p["integration"]["name"].as_str() {
        facts.push(("Integration".to_owned(), i.to_owned()));
    }
    facts.push(("Event".to_owned(), text_of(p, "event").to_owned()));
    facts.push(("When".to_owned(), text_of(p, "occurred_at").to_owned()));
    facts
}

/// One line per listed finding: `CVE on asset: priority P, due D`.
fn lines(p: &Value) -> Vec<String> {
    p["data"]["top"]
        .as_array()
        .map(|top| {
            top.iter()
                .take(LISTED)
                .map(|f| {
                    format!(
                        "{} on {}: priority {}, due {}",
                        text_of(f, "cve"),
                        text_of(f, "asset"),
                        f["priority"]
                            .as_f64()
                            .map_or_else(|| "?".to_owned(), |v| format!("{v:.0}")),
                        text_of(f, "due_at").get(..10).unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Teams message with an Adaptive Card, as Teams Workflows and incoming webhooks take it:
/// <https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>.
fn teams(p: &Value) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": text_of(p, "title"), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "TextBlock", "text": text_of(p, "text"), "wrap": true}),
        json!({"type": "FactSet", "facts": facts(p).into_iter()
            .map(|(title, value)| json!({"title": title, "value": value})).collect::<Vec<_>>()}),
    ];
    for line in lines(p) {
        body.push(json!({"type": "TextBlock", "text": format!("- {line}"), "wrap": true, "spacing": "None"}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = p["link"].as_str() {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in Rampart", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// A Slack message: `text` (the notification's fallback) and Block Kit `blocks`:
/// <https://api.slack.com/messaging/webhooks>.
fn slack(p: &Value) -> Value {
    let title = text_of(p, "title");
    let text = text_of(p, "text");
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title.chars().take(150).collect::<String>()}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": escape(text)}}),
        json!({"type": "section", "fields": facts(p).into_iter()
            .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", escape(&v))}))
            .collect::<Vec<_>>()}),
    ];
    let listed = lines(p);
    if !listed.is_empty() {
        let items: Vec<String> = listed.iter().map(|l| format!("• {}", escape(l))).collect();
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": items.join("\n")}}));
    }
    if let Some(link) = p["link"].as_str() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("<{link}|Open in Rampart>")}}));
    }
    json!({"text": format!("{title}: {text}"), "blocks": blocks})
}

/// Slack's mrkdwn control characters, escaped as Slack asks.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload() -> String {
        json!({
            "event": "immediate_finding",
            "occurred_at": "2026-12-06T07:00:00Z",
            "workspace": {"id": 1, "name": "Default"},
            "integration": {"id": 3, "name": "contoso", "product": "endpoint"},
            "title": "2 findings became immediate",
            "text": "contoso: 2 findings need action now",
            "link": "https://rampart.example/findings",
            "data": {"count": 2, "top": [
                {"cve": "CVE-2024-0001", "asset": "pc-1", "priority": 91.5, "due_at": "2026-12-08T00:00:00Z"},
                {"cve": "CVE-2024-0002", "asset": "pc-<2>", "priority": 88.0, "due_at": "2026-12-09T00:00:00Z"},
            ]},
        })
        .to_string()
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 ("what do ya want for nothing?" under "Jefe"), split at the dot.
        let body = b" ya want for nothing?";
        let sig = sign(b"Jefe", 0, body);
        assert_ne!(sig, sign(b"Jefe", 1, body), "the timestamp is signed");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0. ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("sha256={hex}"));
    }

    #[test]
    fn teams_gets_an_adaptive_card_and_slack_text_and_blocks() {
        let teams: Value =
            serde_json::from_slice(&body_for(WebhookFormat::Teams, &payload())).unwrap();
        assert_eq!(teams["type"], "message");
        let att = &teams["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(att["content"]["type"], "AdaptiveCard");
        let text = att["content"].to_string();
        assert!(text.contains("CVE-2024-0001 on pc-1: priority 92, due 2026-12-08"));
        assert_eq!(
            att["content"]["actions"][0]["url"],
            "https://rampart.example/findings"
        );

        let slack: Value =
            serde_json::from_slice(&body_for(WebhookFormat::Slack, &payload())).unwrap();
        assert!(
            slack["text"]
                .as_str()
                .unwrap()
                .starts_with("2 findings became immediate")
        );
        assert_eq!(slack["blocks"][0]["type"], "header");
        assert!(slack.to_string().contains("pc-&lt;2&gt;"));
        // The generic body is the payload itself.
        assert_eq!(
            body_for(WebhookFormat::Generic, &payload()),
            payload().into_bytes()
        );
    }
}

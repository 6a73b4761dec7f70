//! The book's notices as notification-service messages
//! (`POST /api/v1/notifications/send`). Each carries a dedup key made of its
//! outbox sequence number, so a notice re-sent after a crash between its
//! delivery and its removal from the outbox is delivered once.

use serde_json::{Value, json};

use crate::book::{Notice, Origin};
use crate::fx::Currency;
use crate::order::Side;
use crate::risk::TradingState;

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "Bought",
        Side::Sell => "Sold",
    }
}

/// A quantity as people read it: shares or units, or a crypto-currency's
/// coins (150 contracts of 0.0001 BTC: `0.015`).
fn amount(symbol: &str, quantity: u64) -> String {
    let contract = crate::book::contract_size(symbol);
    if contract.ticks() == market_data::Price::SCALE {
        return quantity.to_string();
    }
    let coins = i128::from(quantity) * i128::from(contract.ticks());
    let coins = market_data::Price::from_ticks(i64::try_from(coins).unwrap_or(i64::MAX));
    coins
        .to_string()
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// The notification for outbox entry `seq`; `base` is the platform's public
/// URL for the link (`http://127.0.0.1:3000`).
pub fn notification(seq: u64, notice: &Notice, base: &str) -> Value {
    let dedup_key = format!("execution-notice-{seq}");
    match notice {
        Notice::Filled {
            order_id,
            symbol,
            side: s,
            quantity,
            price,
            origin,
        } => {
            let (severity, why) = match origin {
                Origin::StopLoss => ("warning", "stop-loss: "),
                Origin::TakeProfit => ("info", "take-profit: "),
                Origin::KillSwitch => ("warning", "kill switch: "),
                Origin::FlatByClose => ("info", "flat by the close: "),
                Origin::Api | Origin::Cycle => ("info", ""),
            };
            json!({
                "type": "order-filled",
                "severity": severity,
                "title": format!("{why}{} {} {symbol} at {price} {}", side(*s), amount(symbol, *quantity), Currency::of(symbol)),
                "message": format!("Order {order_id} filled on paper."),
                "fields": [
                    ["order", order_id], ["symbol", symbol], ["quantity", quantity.to_string()],
                    ["price", price.to_string()], ["currency", Currency::of(symbol).to_string()], ["origin", serde_json::to_value(origin).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()],
                ],
                "dedup_key": dedup_key,
                "link": format!("{base}/api/v1/execution/orders/{order_id}"),
            })
        }
        Notice::Denied {
            order_id,
            symbol,
            denial,
        } => json!({
            "type": "order-denied",
            "severity": "warning",
            "title": format!("Order for {symbol} denied: {}", denial.code()),
            "message": denial.to_string(),
            "fields": [["order", order_id], ["symbol", symbol], ["code", denial.code()]],
            "dedup_key": dedup_key,
            "link": format!("{base}/api/v1/execution/orders/{order_id}"),
        }),
        Notice::StateChanged(change) => {
            let severity = match change.to {
                TradingState::Active => "info",
                TradingState::Reducing | TradingState::Halted => "critical",
            };
            let name = |s: TradingState| {
                serde_json::to_value(s)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            };
            json!({
                "type": "trading-state",
                "severity": severity,
                "title": format!("Trading {}", name(change.to)),
                "message": change.reason,
                "fields": [
                    ["from", name(change.from)], ["to", name(change.to)],
                    ["by", change.by], ["market date", change.as_of.to_string()],
                ],
                "dedup_key": dedup_key,
                "link": format!("{base}/api/v1/execution/status"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::StateChange;
    use chrono::{NaiveDate, TimeZone, Utc};

    #[test]
    fn notices_become_notifications_with_a_severity_and_a_stable_dedup_key() {
        let stop = Notice::Filled {
            order_id: "ord-00000002".into(),
            symbol: "7203.T".into(),
            side: Side::Sell,
            quantity: 300,
            price: "2447.55".parse().unwrap(),
            origin: Origin::StopLoss,
        };
        let n = notification(7, &stop, "http://127.0.0.1:3000");
        assert_eq!(n["severity"], "warning");
        assert_eq!(n["title"], "stop-loss: Sold 300 7203.T at 2447.5500 JPY");
        assert_eq!(n["dedup_key"], "execution-notice-7");
        let btc = Notice::Filled {
            order_id: "ord-00000003".into(),
            symbol: "BTC-USD".into(),
            side: Side::Buy,
            quantity: 150,
            price: "3711.855".parse().unwrap(),
            origin: Origin::Api,
        };
        assert_eq!(
            notification(8, &btc, "")["title"],
            "Bought 0.015 BTC-USD at 3711.8550 USD",
            "coins, not contracts"
        );
        assert_eq!(
            n["link"],
            "http://127.0.0.1:3000/api/v1/execution/orders/ord-00000002"
        );
        let halt = Notice::StateChanged(StateChange {
            at: Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap(),
            as_of: NaiveDate::from_ymd_opt(2010, 8, 23).unwrap(),
            from: TradingState::Active,
            to: TradingState::Reducing,
            by: "risk-engine".into(),
            reason: "daily loss 60000 reached the 50000 limit".into(),
        });
        let n = notification(8, &halt, "http://x");
        assert_eq!(n["severity"], "critical");
        assert_eq!(n["title"], "Trading REDUCING");
        assert_eq!(n["fields"][2], json!(["by", "risk-engine"]));
    }
}

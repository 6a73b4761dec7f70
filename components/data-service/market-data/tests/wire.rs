//! The JSON data-service sends is the projection of its WIT records.

use chrono::{DateTime, Duration, NaiveDate};
use daytrade_contract::wit_check::assert_projects;
use futures::executor::block_on;
use market_data::service::{Fetch, MarketData, Settings, Store};
use market_data::source::SourceKind;
use market_data::{History, Interval, Market, MarketClock, Symbol};

struct NoStore;

impl Store for NoStore {
    fn get(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set(&self, _: &str, _: &[u8]) {}
    fn delete(&self, _: &str) {}
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }
}

struct NoFetch;

impl Fetch for NoFetch {
    async fn get(&self, _: &str) -> Result<(u16, Vec<u8>), String> {
        Err("no network in this test".into())
    }
}

#[test]
fn bar_series_json_matches_wit() {
    let history = History::bundled().unwrap();
    let md = MarketData {
        history: &history,
        store: NoStore,
        fetch: NoFetch,
        settings: Settings {
            source: SourceKind::Bundled,
            yahoo_base_url: String::new(),
            stooq_base_url: String::new(),
            ttl_daily: Duration::seconds(900),
            default_clock: MarketClock::after_close(
                Market::Us,
                NaiveDate::from_ymd_opt(2010, 6, 30).unwrap(),
            )
            .unwrap(),
        },
        now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    };
    let from = NaiveDate::from_ymd_opt(2010, 1, 1);
    let series = block_on(md.bars(&Symbol::parse("IBM").unwrap(), Interval::OneDay, from, None))
        .unwrap()
        .with_indicators();
    let json = serde_json::to_value(&series).unwrap();
    assert_projects(&json, "data", "bar-series");
    assert_projects(&json["bars"][0], "types", "bar");
    assert_projects(&json["indicators"], "types", "indicator-set");
    assert_eq!(json["interval"], "1d");
    assert_eq!(json["source"], "bundled");
}

#[test]
fn the_clock_projects_its_wit_record() {
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    // Between sessions (no `session`), and inside one (TSE's closing auction).
    let after_close = MarketClock::after_close(
        market_data::Market::Us,
        NaiveDate::from_ymd_opt(2010, 8, 20).unwrap(),
    )
    .unwrap();
    let json = serde_json::to_value(after_close.view(now)).unwrap();
    assert_projects(&json, "data", "market-clock");
    assert_projects(&json["next_session"], "data", "session");
    assert_eq!(json["as_of"], "2010-08-20T20:00:00Z");
    assert_eq!(json["local"], "2010-08-20T16:00:00-04:00");
    assert_eq!(json["date"], "2010-08-20");
    assert_eq!(json["session"], serde_json::Value::Null);
    assert_eq!(json["next_session"]["open"], "2010-08-23T13:30:00Z");
    let auction = MarketClock::at(
        market_data::Market::Tse,
        Interval::FiveMinutes,
        "2025-11-28T06:27:00Z".parse().unwrap(),
    )
    .unwrap();
    let json = serde_json::to_value(auction.view(now)).unwrap();
    assert_projects(&json["session"], "data", "session");
    assert_eq!(json["session"]["closing_auction"], "2025-11-28T06:25:00Z");
    assert_eq!(json["local"], "2025-11-28T15:27:00+09:00");
    assert_eq!(
        (&json["market"], &json["interval"]),
        (&"tse".into(), &"5m".into())
    );
}

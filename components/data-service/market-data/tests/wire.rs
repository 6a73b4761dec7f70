//! The JSON data-service sends is the projection of its WIT records.

use chrono::{DateTime, Duration, NaiveDate};
use daytrade_contract::wit_check::assert_projects;
use futures::executor::block_on;
use market_data::service::{Fetch, MarketData, Settings, Store};
use market_data::source::SourceKind;
use market_data::{History, Interval, MarketClock, Symbol};

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
            default_clock: MarketClock::Replay {
                as_of: NaiveDate::from_ymd_opt(2010, 6, 30).unwrap(),
            },
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

//! data-service's operations with in-memory fakes for the store and HTTP.

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::executor::block_on;
use market_data::exchange::Market as Exchange;
use market_data::service::{Fetch, MarketData, Settings, Store};
use market_data::source::SourceKind;
use market_data::{History, Interval, MarketClock, Symbol};

#[derive(Default)]
struct MemStore(RefCell<BTreeMap<String, Vec<u8>>>);

impl Store for &MemStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8]) {
        self.0.borrow_mut().insert(key.into(), value.to_vec());
    }
    fn delete(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }
    fn keys(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }
}

/// An HTTP answer (status, body) or a transport failure.
type Answer = Result<(u16, Vec<u8>), String>;

/// Answers every GET with the next scripted response and records the URLs.
#[derive(Default)]
struct Script {
    responses: RefCell<Vec<Answer>>,
    urls: RefCell<Vec<String>>,
}

impl Fetch for &Script {
    async fn get(&self, url: &str) -> Answer {
        self.urls.borrow_mut().push(url.to_string());
        self.responses.borrow_mut().remove(0)
    }
}

type Market<'a> = MarketData<'a, &'a MemStore, &'a Script>;

fn market<'a>(
    history: &'a History,
    store: &'a MemStore,
    script: &'a Script,
    settings: Settings,
    now: DateTime<Utc>,
) -> Market<'a> {
    MarketData {
        history,
        store,
        fetch: script,
        settings,
        now,
    }
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn settings(source: SourceKind) -> Settings {
    Settings {
        source,
        yahoo_base_url: "http://yahoo.test".into(),
        stooq_base_url: "http://stooq.test".into(),
        ttl_daily: Duration::seconds(900),
        default_clock: MarketClock::after_close(Exchange::Us, d(2010, 6, 30)).unwrap(),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_732_780_800, 0).unwrap()
}

fn stooq_csv() -> Vec<u8> {
    let mut csv = String::from("Date,Open,High,Low,Close,Volume\n");
    for day in 1..=28 {
        csv.push_str(&format!("2010-06-{day:02},100,101,99,100.5,1000\n"));
    }
    csv.into_bytes()
}

#[test]
fn bundled_bars_stop_at_the_replay_clock() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let ibm = Symbol::parse("IBM").unwrap();
    let after = block_on(md.bars(
        &ibm,
        Interval::OneDay,
        Some(d(2010, 6, 1)),
        Some(d(2011, 1, 1)),
    ))
    .unwrap_err();
    assert_eq!(
        (after.code(), after.status()),
        ("invalid-to", 400),
        "a date after the clock is refused, never cut back: {after}"
    );
    let bars = block_on(md.bars(&ibm, Interval::OneDay, Some(d(2010, 6, 1)), None)).unwrap();
    assert_eq!(bars.as_of, d(2010, 6, 30));
    assert_eq!(bars.bars.last().unwrap().date, d(2010, 6, 30));

    md.set_clock(MarketClock::after_close(Exchange::Us, d(2010, 6, 15)).unwrap());
    let bars = block_on(md.bars(&ibm, Interval::OneDay, Some(d(2010, 6, 1)), None)).unwrap();
    assert_eq!(bars.bars.last().unwrap().date, d(2010, 6, 15));
    assert!(
        script.urls.borrow().is_empty(),
        "bundled data needs no HTTP"
    );
}

/// The bundled EUR/USD hours through an hourly FX replay clock: bars up to
/// the clock's instant, the day's bar only once the FX day (17:00 New York)
/// is over, and no interval the history does not have.
#[test]
fn bundled_intraday_bars_stop_at_the_clock_instant() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let eurusd = Symbol::parse("EURUSD=X").unwrap();
    // Wednesday 2017-03-15 10:00 UTC: the FX day of the 15th is under way.
    let at: DateTime<Utc> = "2017-03-15T10:00:00Z".parse().unwrap();
    md.set_clock(MarketClock::at(Exchange::Fx, Interval::OneHour, at).unwrap());
    let hours = block_on(md.bars(&eurusd, Interval::OneHour, Some(d(2017, 3, 15)), None)).unwrap();
    let last = hours.bars.last().unwrap();
    assert_eq!(
        last.ts + 3600,
        at.timestamp(),
        "the 09:00 bar closed at 10:00"
    );
    // 21:00 UTC (17:00 EDT) the day before to 10:00: 13 hours.
    assert_eq!(hours.bars.len(), 13);
    assert!(hours.bars.iter().all(|b| b.date == d(2017, 3, 15)));
    let days = block_on(md.bars(&eurusd, Interval::OneDay, Some(d(2017, 3, 1)), None)).unwrap();
    assert_eq!(days.bars.last().unwrap().date, d(2017, 3, 14));
    let err = block_on(md.bars(&eurusd, Interval::OneDay, None, Some(d(2017, 3, 15)))).unwrap_err();
    assert_eq!(err.code(), "invalid-to");
    for (symbol, interval) in [
        ("EURUSD=X", Interval::FiveMinutes),
        ("IBM", Interval::OneHour),
    ] {
        let err =
            block_on(md.bars(&Symbol::parse(symbol).unwrap(), interval, None, None)).unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("unsupported-interval", 400),
            "{symbol}"
        );
    }
}

/// Features on hourly bars: at the last hour closed by the clock, the same
/// vector as over those bars themselves; a day's features the same way.
#[test]
fn features_are_computed_on_the_clocks_interval() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let eurusd = Symbol::parse("EURUSD=X").unwrap();
    let at: DateTime<Utc> = "2017-06-14T15:00:00Z".parse().unwrap();
    md.set_clock(MarketClock::at(Exchange::Fx, Interval::OneHour, at).unwrap());
    let hourly = block_on(md.features_on(&eurusd, None, Interval::OneHour)).unwrap();
    assert_eq!(
        hourly.ts + 3600,
        at.timestamp(),
        "the 14:00 bar, closed at 15:00"
    );
    let hours = block_on(md.bars(&eurusd, Interval::OneHour, Some(d(2017, 1, 1)), None)).unwrap();
    let expected = market_data::features::latest(&hours.bars).unwrap();
    assert_eq!(hourly.values.len(), expected.values.len());
    for (got, want) in hourly.values.iter().zip(&expected.values) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    let daily = block_on(md.features(&eurusd, None)).unwrap();
    assert_eq!(daily.date, d(2017, 6, 13), "the last complete FX day");
    assert_ne!(daily.values, hourly.values);
    let batch = block_on(md.batch_features(&["EURUSD=X".into()], None, Interval::OneHour)).unwrap();
    assert_eq!(batch[0].as_ref().unwrap(), &hourly);
    // IBM has no hourly bars.
    let err = block_on(md.features_on(&Symbol::parse("IBM").unwrap(), None, Interval::OneHour))
        .unwrap_err();
    assert_eq!(err.code(), "unsupported-interval");
}

#[test]
fn bad_ranges_are_rejected() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let ibm = Symbol::parse("IBM").unwrap();
    let err = block_on(md.bars(
        &ibm,
        Interval::OneDay,
        Some(d(2010, 6, 10)),
        Some(d(2010, 6, 1)),
    ))
    .unwrap_err();
    assert_eq!((err.code(), err.status()), ("invalid-range", 400));
    let err = block_on(md.bars(&ibm, Interval::OneDay, Some(d(1900, 1, 1)), None)).unwrap_err();
    assert_eq!((err.code(), err.status()), ("invalid-range", 400));
    let err = block_on(md.bars(&ibm, Interval::OneDay, Some(d(2011, 1, 1)), None)).unwrap_err();
    assert_eq!(err.code(), "invalid-from", "from after the clock");
    let err = block_on(md.bars(
        &Symbol::parse("ZZZZ").unwrap(),
        Interval::OneDay,
        None,
        None,
    ))
    .unwrap_err();
    assert_eq!((err.code(), err.status()), ("unknown-symbol", 404));
}

#[test]
fn live_bars_are_cached_then_served_stale_when_the_provider_fails() {
    let history = History::bundled().unwrap();
    let store = MemStore::default();
    let script = Script::default();
    script.responses.borrow_mut().push(Ok((200, stooq_csv())));
    script
        .responses
        .borrow_mut()
        .push(Ok((200, b"Exceeded the daily hits limit".to_vec())));
    let aapl = Symbol::parse("AAPL").unwrap();
    let range = (Some(d(2010, 6, 1)), Some(d(2010, 6, 30)));

    let mut md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Stooq),
        now(),
    );
    let first = block_on(md.bars(&aapl, Interval::OneDay, range.0, range.1)).unwrap();
    assert_eq!(
        (first.cached, first.stale, first.bars.len()),
        (false, false, 28)
    );
    assert_eq!(
        script.urls.borrow()[0],
        "http://stooq.test/q/d/l/?s=aapl.us&i=d&d1=20100601&d2=20100630"
    );

    let second = block_on(md.bars(&aapl, Interval::OneDay, range.0, range.1)).unwrap();
    assert_eq!((second.cached, second.stale), (true, false));
    assert_eq!(
        script.urls.borrow().len(),
        1,
        "a fresh entry needs no fetch"
    );

    md.now += Duration::seconds(901);
    let third = block_on(md.bars(&aapl, Interval::OneDay, range.0, range.1)).unwrap();
    assert_eq!(
        (third.cached, third.stale, third.bars.len()),
        (true, true, 28)
    );
    assert_eq!(script.urls.borrow().len(), 2);

    let metrics = md.metrics();
    assert!(
        metrics.contains("data_fetch_attempts_total{provider=\"stooq\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("data_fetch_successes_total{provider=\"stooq\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("data_cache_requests_total{result=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("data_cache_requests_total{result=\"stale_served\"} 1"),
        "{metrics}"
    );

    assert_eq!(md.cache_entries().len(), 1);
    assert_eq!(md.clear_cache(Some(&Symbol::parse("MSFT").unwrap())), 0);
    assert_eq!(md.clear_cache(Some(&aapl)), 1);
    assert!(md.cache_entries().is_empty());
}

#[test]
fn provider_failure_without_cache_is_an_upstream_error() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    script
        .responses
        .borrow_mut()
        .push(Err("connection refused".into()));
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Yahoo),
        now(),
    );
    let err = block_on(md.bars(
        &Symbol::parse("7203.T").unwrap(),
        Interval::OneDay,
        None,
        None,
    ))
    .unwrap_err();
    assert_eq!((err.code(), err.status()), ("provider-unavailable", 502));
}

#[test]
fn batches_report_each_symbol_alone_and_are_bounded() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let symbols: Vec<String> = ["IBM", "ZZZZ", "not a symbol!", "MSFT"]
        .map(String::from)
        .to_vec();
    let results = block_on(md.batch(
        md.clock(),
        &symbols,
        Interval::OneDay,
        Some(d(2010, 6, 1)),
        None,
    ))
    .unwrap();
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().map_or_else(|(_, e)| e.code(), |_| "ok"))
        .collect();
    assert_eq!(codes, ["ok", "unknown-symbol", "invalid-symbol", "ok"]);

    let too_many: Vec<String> = (0..51).map(|_| "IBM".to_string()).collect();
    let err = block_on(md.batch(md.clock(), &too_many, Interval::OneDay, None, None)).unwrap_err();
    assert_eq!((err.code(), err.status()), ("invalid-symbols", 400));
    for twice in [["IBM", "MSFT", "ibm"], ["BRK.B", "IBM", "BRK-B"]] {
        let twice: Vec<String> = twice.map(String::from).to_vec();
        let err = block_on(md.batch(md.clock(), &twice, Interval::OneDay, None, None)).unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("invalid-symbols", 400),
            "{twice:?}: {err}"
        );
    }
}

#[test]
fn features_are_computed_at_the_clock() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let ibm = Symbol::parse("IBM").unwrap();
    let features = block_on(md.features(&ibm, None)).unwrap();
    assert_eq!(features.date, d(2010, 6, 30));
    assert_eq!(features.values.len(), features.names.len());
    let earlier = block_on(md.features(&ibm, Some(d(2010, 3, 1)))).unwrap();
    assert_eq!(earlier.date, d(2010, 3, 1));
    let future = block_on(md.features(&ibm, Some(d(2012, 1, 3)))).unwrap_err();
    assert_eq!(
        (future.code(), future.status()),
        ("invalid-date", 400),
        "never past the clock"
    );

    // A served vector is the bar's vector over the whole history (what training
    // computes), not an approximation from a short window.
    let all = history.bars("IBM", None, Some(d(2010, 3, 1))).unwrap();
    let full = market_data::features::feature_rows(&all)
        .pop()
        .flatten()
        .unwrap();
    for (name, (got, want)) in earlier.names.iter().zip(earlier.values.iter().zip(&full)) {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{name}: {got} vs {want}"
        );
    }
}

#[test]
fn a_batch_of_features_fails_symbol_by_symbol() {
    let history = History::bundled().unwrap();
    let (store, script) = (MemStore::default(), Script::default());
    let md = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now(),
    );
    let asked = ["IBM", "ZZZZ", "MSFT"].map(String::from);
    let results =
        block_on(md.batch_features(&asked, Some(d(2010, 3, 1)), Interval::OneDay)).unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().date, d(2010, 3, 1));
    let (symbol, error) = results[1].as_ref().unwrap_err();
    assert_eq!(
        (symbol.as_str(), error.code(), error.status()),
        ("ZZZZ", "unknown-symbol", 404)
    );
    assert!(results[2].is_ok());
    let too_many = vec!["IBM".to_string(); 51];
    assert!(block_on(md.batch_features(&too_many, None, Interval::OneDay)).is_err());
    assert!(block_on(md.batch_features(&[], None, Interval::OneDay)).is_err());
}

#[test]
fn intraday_bars_come_from_yahoo_only_and_only_when_complete() {
    let history = History::bundled().unwrap();
    let store = MemStore::default();
    let script = Script::default();
    let now = DateTime::from_timestamp(1_732_579_200 + 12 * 60, 0).unwrap(); // 09:12 JST
    // Three 5-minute bars from 09:00 JST: the one from 09:10 is still forming.
    let body = format!(
        r#"{{"chart":{{"result":[{{"meta":{{"gmtoffset":32400}},"timestamp":[{},{},{}],"indicators":{{"quote":[{{"open":[1,1,1],"high":[2,2,2],"low":[1,1,1],"close":[2,2,2],"volume":[5,5,5]}}]}}}}],"error":null}}}}"#,
        1_732_579_200, 1_732_579_500, 1_732_579_800
    );
    script
        .responses
        .borrow_mut()
        .push(Ok((200, body.into_bytes())));
    let mut live = settings(SourceKind::Yahoo);
    live.default_clock = MarketClock::live(Exchange::Us);
    let md = market(&history, &store, &script, live, now);
    let toyota = Symbol::parse("7203.T").unwrap();
    let bars =
        block_on(md.bars(&toyota, Interval::FiveMinutes, Some(d(2024, 11, 26)), None)).unwrap();
    assert_eq!(bars.bars.len(), 2, "the forming bar is not shown");
    assert!(script.urls.borrow()[0].contains("interval=5m&"));
    let again =
        block_on(md.bars(&toyota, Interval::FiveMinutes, Some(d(2024, 11, 26)), None)).unwrap();
    assert!(again.cached, "fresh for 150 s");

    let bundled = market(
        &history,
        &store,
        &script,
        settings(SourceKind::Bundled),
        now,
    );
    let err = block_on(bundled.bars(
        &Symbol::parse("IBM").unwrap(),
        Interval::OneMinute,
        None,
        None,
    ))
    .unwrap_err();
    assert_eq!((err.code(), err.status()), ("unsupported-interval", 400));
}

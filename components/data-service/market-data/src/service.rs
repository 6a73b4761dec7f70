//! data-service's operations over its side effects: a key-value [`Store`]
//! (cache, clock, counters) and an HTTP [`Fetch`]. The component implements
//! both with Spin; tests implement them with in-memory fakes.
//!
//! Bars for a query come from the bundled history, or from the configured
//! live provider through the cache: a fresh entry is served as is; an
//! expired one is refreshed, and served with `stale: true` if the provider
//! fails. Every query is cut at the market clock.

use std::future::Future;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::bar::Bar;
use crate::clock::MarketClock;
use crate::error::DataError;
use crate::exchange::Market;
use crate::features::{self, FeatureVector};
use crate::history::History;
use crate::indicators::IndicatorSet;
use crate::interval::Interval;
use crate::source::{BarSource, ProviderError, SourceKind, Stooq, Yahoo};
use crate::symbol::Symbol;

pub use daytrade_contract::Store;

/// Outbound HTTP GET: status and body, or why there is none.
pub trait Fetch {
    fn get(&self, url: &str) -> impl Future<Output = Result<(u16, Vec<u8>), String>>;
}

/// Most symbols one batch may ask for.
pub const MAX_BATCH: usize = 50;
/// Longest range one query may span.
pub const MAX_RANGE_DAYS: i64 = 366 * 30;
/// Calendar days of bars taken before the requested date to compute features.
/// RSI, ATR and MACD are recursive averages that never forget their first bar:
/// over 120 days a vector differed from the same bar's full-history vector
/// enough to flip 6 of 8,374 replayed forecasts. Over two years (~500 bars) the
/// start's weight is below 1e-15, so a served vector is the one training saw.
const FEATURE_LOOKBACK_DAYS: i64 = 730;

/// Calendar days of bars taken for features on `interval`: about 500 bars
/// or more on every market (a TSE day has 5 hourly bars, an FX day 24).
fn feature_lookback_days(interval: Interval) -> i64 {
    match interval {
        Interval::OneDay => FEATURE_LOOKBACK_DAYS,
        Interval::OneHour => 150,
        Interval::FifteenMinutes => 40,
        Interval::FiveMinutes => 14,
        Interval::OneMinute => 5,
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: SourceKind,
    pub yahoo_base_url: String,
    pub stooq_base_url: String,
    /// How long a fetched daily series stays fresh.
    pub ttl_daily: Duration,
    /// The clock when none was set through the API.
    pub default_clock: MarketClock,
}

/// What can go wrong answering a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A batch's `symbols`: how many, or one named twice.
    #[error("{0}")]
    BadSymbols(String),
    #[error("not enough history for {0} before the clock")]
    NotEnoughHistory(String),
    #[error("{0}")]
    UnsupportedInterval(String),
}

/// A batch names 1 to `MAX_BATCH` symbols, each once.
fn check_batch(symbols: &[String]) -> Result<(), ServiceError> {
    if symbols.is_empty() || symbols.len() > MAX_BATCH {
        return Err(ServiceError::BadSymbols(format!(
            "a batch has 1 to {MAX_BATCH} symbols, got {}",
            symbols.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = symbols.iter().find(|s| {
        // As the symbol it is (`BRK.B` is `BRK-B`), or as written if it is none.
        let key =
            Symbol::parse(s).map_or_else(|_| s.trim().to_ascii_uppercase(), |s| s.to_string());
        !seen.insert(key)
    }) {
        return Err(ServiceError::BadSymbols(format!(
            "`{twice}` is named twice in the batch"
        )));
    }
    Ok(())
}

impl ServiceError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Data(e) => e.code(),
            Self::Provider(e) => e.code(),
            Self::BadSymbols(_) => "invalid-symbols",
            Self::NotEnoughHistory(_) => "not-enough-history",
            Self::UnsupportedInterval(_) => "unsupported-interval",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Data(e) => e.status(),
            Self::Provider(e) => e.status(),
            Self::BadSymbols(_) | Self::UnsupportedInterval(_) => 400,
            Self::NotEnoughHistory(_) => 422,
        }
    }
}

/// A bar query's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bars {
    pub symbol: Symbol,
    pub interval: Interval,
    pub source: SourceKind,
    /// The clock's date the query was cut at.
    pub as_of: NaiveDate,
    /// Served from the cache (`cached`), and past its TTL because the provider failed (`stale`).
    pub cached: bool,
    pub stale: bool,
    pub bars: Vec<Bar>,
    /// Indicators at the last bar, when asked for (`include_features=true`).
    pub indicators: Option<IndicatorSet>,
}

impl Bars {
    pub fn with_indicators(mut self) -> Self {
        self.indicators = Some(IndicatorSet::of(&self.bars));
        self
    }

    /// The closes and volumes as numbers: what screening reads (WIT `closes-volumes`).
    pub fn closes(&self) -> Closes {
        let mut days = self.bars.iter().map(|b| b.date).collect::<Vec<_>>();
        days.dedup();
        Closes {
            symbol: self.symbol.clone(),
            interval: self.interval,
            source: self.source,
            closes: self.bars.iter().map(|b| b.close.to_f64()).collect(),
            volumes: self.bars.iter().map(|b| b.volume).collect(),
            days: u32::try_from(days.len()).unwrap_or(u32::MAX),
        }
    }
}

/// One symbol's closes and volumes on `interval` bars, and the trading days
/// the bars fall on (WIT `closes-volumes`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closes {
    pub symbol: Symbol,
    pub interval: Interval,
    pub source: SourceKind,
    pub closes: Vec<f64>,
    pub volumes: Vec<u64>,
    pub days: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    /// Milliseconds since the Unix epoch: TTLs of a second must not round.
    fetched_at: i64,
    bars: Vec<Bar>,
}

/// One entry of `GET /cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheInfo {
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub fetched_at: i64,
    pub bars: usize,
    pub fresh: bool,
}

const CLOCK_KEY: &str = "data/clock";
const IMPORT_PREFIX: &str = "data/import/";
const IMPORT_INDEX: &str = "data/import-index";
const CACHE_PREFIX: &str = "data/cache/";
const COUNTER_PREFIX: &str = "data/counter/";

/// One imported series, as `GET /import` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedSeries {
    pub symbol: String,
    pub interval: Interval,
    pub bars: usize,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Daily bars made from an intraday import (a daily import replaces them).
    #[serde(default)]
    pub derived: bool,
}

/// What has been imported: the series, and the files read at start by
/// their name, size and modification time (a changed file is read again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportIndex {
    pub series: Vec<ImportedSeries>,
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, ImportedFile>,
}

/// A file of the import folder as last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFile {
    pub stamp: String,
    /// `imported` or the error that kept it out.
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::import::RowError>,
}

pub struct MarketData<'a, S, F> {
    pub history: &'a History,
    pub store: S,
    pub fetch: F,
    pub settings: Settings,
    pub now: DateTime<Utc>,
}

impl<S: Store, F: Fetch> MarketData<'_, S, F> {
    pub fn clock(&self) -> MarketClock {
        self.store
            .get(CLOCK_KEY)
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or(self.settings.default_clock)
    }

    pub fn import_index(&self) -> ImportIndex {
        self.store
            .get(IMPORT_INDEX)
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default()
    }

    pub fn set_import_index(&self, index: &ImportIndex) {
        if let Ok(raw) = serde_json::to_vec(index) {
            self.store.set(IMPORT_INDEX, &raw);
        }
    }

    fn import_key(symbol: &str, interval: Interval) -> String {
        format!("{IMPORT_PREFIX}{symbol}/{}", interval.as_str())
    }

    /// An imported series' bars, if there is one.
    pub fn imported(&self, symbol: &Symbol, interval: Interval) -> Option<Vec<Bar>> {
        let raw = self
            .store
            .get(&Self::import_key(symbol.as_str(), interval))?;
        crate::import::decode(&raw, symbol.market(), interval)
    }

    /// Store `series` (checked by [`crate::import::parse_csv`]): each
    /// merged into what was imported before (a bar at the same time is
    /// replaced); an intraday import also makes that symbol's daily bars,
    /// unless daily bars were imported themselves. Returns what each
    /// series now holds.
    pub fn import(&self, series: &[crate::import::Series]) -> Vec<ImportedSeries> {
        let mut index = self.import_index();
        let mut done = Vec::new();
        let put = |index: &mut ImportIndex, symbol: &Symbol, interval, bars: &[Bar], derived| {
            self.store.set(
                &Self::import_key(symbol.as_str(), interval),
                &crate::import::encode(bars),
            );
            let info = ImportedSeries {
                symbol: symbol.to_string(),
                interval,
                bars: bars.len(),
                from: bars.first().map_or(NaiveDate::MIN, |b| b.date),
                to: bars.last().map_or(NaiveDate::MIN, |b| b.date),
                derived,
            };
            index
                .series
                .retain(|s| !(s.symbol == info.symbol && s.interval == interval));
            index.series.push(info.clone());
            info
        };
        for s in series {
            let merged = crate::import::merge(
                self.imported(&s.symbol, s.interval).unwrap_or_default(),
                &s.bars,
            );
            done.push(put(&mut index, &s.symbol, s.interval, &merged, false));
            let own_daily = index.series.iter().any(|i| {
                i.symbol == s.symbol.as_str() && i.interval == Interval::OneDay && !i.derived
            });
            if s.interval.is_intraday() && !own_daily {
                let days = crate::import::daily(s.symbol.market(), merged);
                put(&mut index, &s.symbol, Interval::OneDay, &days, true);
            }
        }
        index.series.sort_by(|a, b| {
            (&a.symbol, a.interval.as_str()).cmp(&(&b.symbol, b.interval.as_str()))
        });
        self.set_import_index(&index);
        done
    }

    pub fn set_clock(&self, clock: MarketClock) {
        if let Ok(raw) = serde_json::to_vec(&clock) {
            self.store.set(CLOCK_KEY, &raw);
        }
    }

    /// Validate a range of `market`'s bars against `clock`: `to` defaults
    /// to the clock's last visible day of that market and may not pass it.
    pub fn range(
        &self,
        clock: MarketClock,
        market: Market,
        interval: Interval,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<(NaiveDate, NaiveDate), ServiceError> {
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(DataError::InvalidRange(format!("from {f} is after to {t}")).into());
        }
        let to = clock.until(market, interval, "to", to, self.now)?;
        let from = from.unwrap_or(to - Duration::days(365));
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(DataError::InvalidRange(format!("more than {MAX_RANGE_DAYS} days")).into());
        }
        if from > to {
            return Err(DataError::AfterClock {
                field: "from",
                date: from,
                clock: to,
            }
            .into());
        }
        Ok((from, to))
    }

    pub async fn bars(
        &self,
        symbol: &Symbol,
        interval: Interval,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Bars, ServiceError> {
        // One read of the clock (a key-value read) per query.
        let imported = self.import_index();
        self.bars_at(self.clock(), &imported, symbol, interval, from, to)
            .await
    }

    /// [`Self::bars`] cut at `clock`, read once by the caller (a batch cuts
    /// every symbol at the same clock), with what has been imported (read
    /// once too: only an imported series costs a read of its bars).
    async fn bars_at(
        &self,
        clock: MarketClock,
        imported: &ImportIndex,
        symbol: &Symbol,
        interval: Interval,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Bars, ServiceError> {
        let (from, to) = self.range(clock, symbol.market(), interval, from, to)?;
        let source = self.settings.source;
        let live_source = self.live_source();
        // An intraday bar is seen once it has closed (open + length ≤ the clock).
        let until = clock.instant(self.now);
        let closed = |b: &Bar| {
            !interval.is_intraday() || b.ts + interval.length().num_seconds() <= until.timestamp()
        };
        // A user's own bars come first.
        let own = imported
            .series
            .iter()
            .any(|s| s.symbol == symbol.as_str() && s.interval == interval);
        if let Some(bars) = own.then(|| self.imported(symbol, interval)).flatten() {
            return Ok(Bars {
                symbol: symbol.clone(),
                interval,
                source: SourceKind::Import,
                as_of: to,
                cached: false,
                stale: false,
                bars: bars
                    .into_iter()
                    .filter(|b| (from..=to).contains(&b.date) && closed(b))
                    .collect(),
                indicators: None,
            });
        }
        let Some(live_source) = live_source else {
            // The bundled history: daily bars for every series, and the
            // intraday series' own interval.
            let own = self
                .history
                .intraday
                .info(symbol.as_str())
                .map(|s| s.interval);
            let bars = if interval == Interval::OneDay {
                self.history.bars(symbol.as_str(), Some(from), Some(to))?
            } else if own == Some(interval) {
                self.history
                    .intraday
                    .bars(symbol.as_str(), from, to, until)?
            } else {
                return Err(ServiceError::UnsupportedInterval(format!(
                    "the bundled history of {symbol} has {} bars, not `{}`",
                    own.map_or("daily", |i| i.as_str()),
                    interval.as_str()
                )));
            };
            return Ok(Bars {
                symbol: symbol.clone(),
                interval,
                source,
                as_of: to,
                cached: false,
                stale: false,
                bars,
                indicators: None,
            });
        };
        if !live_source.serves(interval) {
            return Err(ServiceError::UnsupportedInterval(format!(
                "{} does not serve `{}` bars (yahoo serves 1m, 5m, 15m, 1h and 1d; others 1d)",
                source.name(),
                interval.as_str()
            )));
        }
        let key = format!(
            "{CACHE_PREFIX}{}/{symbol}/{}/{from}/{to}",
            source.name(),
            interval.as_str()
        );
        let ttl = interval.ttl(self.settings.ttl_daily).num_milliseconds();
        let cached: Option<CacheEntry> = self
            .store
            .get(&key)
            .and_then(|raw| serde_json::from_slice(&raw).ok());
        let answer = |bars: Vec<Bar>, cached, stale| Bars {
            symbol: symbol.clone(),
            interval,
            source,
            as_of: to,
            cached,
            stale,
            bars: bars.into_iter().filter(closed).collect(),
            indicators: None,
        };
        if let Some(entry) = &cached
            && self.now.timestamp_millis() - entry.fetched_at < ttl
        {
            self.count("cache_hit");
            return Ok(answer(entry.bars.clone(), true, false));
        }
        self.count("cache_miss");
        match self
            .fetch_live(&*live_source, symbol, interval, from, to)
            .await
        {
            Ok(bars) => {
                let entry = CacheEntry {
                    fetched_at: self.now.timestamp_millis(),
                    bars,
                };
                if let Ok(raw) = serde_json::to_vec(&entry) {
                    self.store.set(&key, &raw);
                }
                Ok(answer(entry.bars, false, false))
            }
            // A stale answer beats none when the provider is down, not when it says the symbol is unknown.
            Err(e @ ProviderError::UnknownSymbol(_)) => Err(e.into()),
            Err(e) => match cached {
                Some(entry) => {
                    self.count("cache_stale_served");
                    Ok(answer(entry.bars, true, true))
                }
                None => Err(e.into()),
            },
        }
    }

    /// The configured live provider; `None` for the bundled history.
    fn live_source(&self) -> Option<Box<dyn BarSource>> {
        match self.settings.source {
            SourceKind::Bundled | SourceKind::Import => None,
            SourceKind::Yahoo => Some(Box::new(Yahoo {
                base_url: self.settings.yahoo_base_url.clone(),
            })),
            SourceKind::Stooq => Some(Box::new(Stooq {
                base_url: self.settings.stooq_base_url.clone(),
            })),
        }
    }

    async fn fetch_live(
        &self,
        source: &dyn BarSource,
        symbol: &Symbol,
        interval: Interval,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Bar>, ProviderError> {
        let name = source.kind().name();
        self.count(&format!("fetch_attempt/{name}"));
        let (status, body) = self
            .fetch
            .get(&source.url(symbol, interval, from, to))
            .await
            .map_err(ProviderError::Unavailable)?;
        let parsed = source.parse(symbol, status, &body)?;
        self.count(&format!("fetch_success/{name}"));
        // Providers may return a bar of today before the close: never past the clock.
        Ok(parsed
            .into_iter()
            .filter(|b| b.date >= from && b.date <= to)
            .collect())
    }

    /// Several symbols at once, all cut at `clock` (the caller's one read
    /// of it), fetched concurrently; each succeeds or fails alone.
    pub async fn batch(
        &self,
        clock: MarketClock,
        symbols: &[String],
        interval: Interval,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<Result<Bars, (String, ServiceError)>>, ServiceError> {
        check_batch(symbols)?;
        self.range(clock, clock.market, interval, from, to)?;
        let imported = &self.import_index();
        let queries = symbols.iter().map(|raw| async move {
            let symbol = Symbol::parse(raw).map_err(|e| (raw.clone(), e.into()))?;
            self.bars_at(clock, imported, &symbol, interval, from, to)
                .await
                .map_err(|e| (raw.clone(), e))
        });
        Ok(futures::future::join_all(queries).await)
    }

    /// Several symbols' features at the clock (or at `date`); each succeeds or fails alone.
    pub async fn batch_features(
        &self,
        symbols: &[String],
        date: Option<NaiveDate>,
        interval: Interval,
    ) -> Result<Vec<Result<FeatureVector, (String, ServiceError)>>, ServiceError> {
        check_batch(symbols)?;
        // The date is the whole batch's: one past the clock refuses the batch.
        let clock = self.clock();
        clock.until(clock.market, interval, "date", date, self.now)?;
        let imported = &self.import_index();
        let queries = symbols.iter().map(|raw| async move {
            let symbol = Symbol::parse(raw).map_err(|e| (raw.clone(), e.into()))?;
            self.features_at(clock, imported, &symbol, date, interval)
                .await
                .map_err(|e| (raw.clone(), e))
        });
        Ok(futures::future::join_all(queries).await)
    }

    /// The model's features for `symbol` at the clock (or at `date`, which may not pass it).
    pub async fn features(
        &self,
        symbol: &Symbol,
        date: Option<NaiveDate>,
    ) -> Result<FeatureVector, ServiceError> {
        self.features_on(symbol, date, Interval::OneDay).await
    }

    /// [`Self::features`] on `interval` bars: at the last bar of `date` (or
    /// the last that has closed by the clock).
    pub async fn features_on(
        &self,
        symbol: &Symbol,
        date: Option<NaiveDate>,
        interval: Interval,
    ) -> Result<FeatureVector, ServiceError> {
        let imported = self.import_index();
        self.features_at(self.clock(), &imported, symbol, date, interval)
            .await
    }

    async fn features_at(
        &self,
        clock: MarketClock,
        imported: &ImportIndex,
        symbol: &Symbol,
        date: Option<NaiveDate>,
        interval: Interval,
    ) -> Result<FeatureVector, ServiceError> {
        let to = clock.until(symbol.market(), interval, "date", date, self.now)?;
        let from = to - Duration::days(feature_lookback_days(interval));
        let bars = self
            .bars_at(clock, imported, symbol, interval, Some(from), Some(to))
            .await?;
        features::latest(&bars.bars)
            .ok_or_else(|| ServiceError::NotEnoughHistory(symbol.to_string()))
    }

    pub fn cache_entries(&self) -> Vec<CacheInfo> {
        let mut out: Vec<CacheInfo> = self
            .store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(CACHE_PREFIX))
            .filter_map(|key| {
                let entry: CacheEntry = serde_json::from_slice(&self.store.get(&key)?).ok()?;
                let interval = key
                    .split('/')
                    .nth(4)
                    .and_then(Interval::parse)
                    .unwrap_or(Interval::OneDay);
                let ttl = interval.ttl(self.settings.ttl_daily).num_milliseconds();
                Some(CacheInfo {
                    fresh: self.now.timestamp_millis() - entry.fetched_at < ttl,
                    key: key[CACHE_PREFIX.len()..].to_string(),
                    fetched_at: entry.fetched_at,
                    bars: entry.bars.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Drop cached entries (all, or those for one symbol); returns how many.
    pub fn clear_cache(&self, symbol: Option<&Symbol>) -> usize {
        let keys: Vec<String> = self
            .store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(CACHE_PREFIX))
            .filter(|k| symbol.is_none_or(|s| k.split('/').nth(3) == Some(s.as_str())))
            .collect();
        for key in &keys {
            self.store.delete(key);
        }
        keys.len()
    }

    fn count(&self, name: &str) {
        let key = format!("{COUNTER_PREFIX}{name}");
        let n = self.counter(&key) + 1;
        self.store.set(&key, n.to_string().as_bytes());
    }

    fn counter(&self, key: &str) -> u64 {
        self.store
            .get(key)
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The counters in Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut counters: Vec<(String, u64)> = self
            .store
            .keys()
            .into_iter()
            .filter_map(|k| {
                Some((
                    k.strip_prefix(COUNTER_PREFIX)?.to_string(),
                    self.counter(&k),
                ))
            })
            .collect();
        counters.sort();
        let mut out = String::new();
        let mut emit = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, value) in rows {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        let by = |prefix: &str| -> Vec<(String, u64)> {
            counters
                .iter()
                .filter_map(|(k, v)| {
                    Some((format!("{{provider=\"{}\"}}", k.strip_prefix(prefix)?), *v))
                })
                .collect()
        };
        emit(
            "data_fetch_attempts_total",
            "Live provider fetches attempted.",
            by("fetch_attempt/"),
        );
        emit(
            "data_fetch_successes_total",
            "Live provider fetches that returned bars.",
            by("fetch_success/"),
        );
        let cache: Vec<(String, u64)> = ["hit", "miss", "stale_served"]
            .iter()
            .map(|r| {
                let v = counters
                    .iter()
                    .find(|(k, _)| k == &format!("cache_{r}"))
                    .map_or(0, |(_, v)| *v);
                (format!("{{result=\"{r}\"}}"), v)
            })
            .collect();
        emit(
            "data_cache_requests_total",
            "Cache lookups for live bars, by result.",
            cache,
        );
        out
    }
}

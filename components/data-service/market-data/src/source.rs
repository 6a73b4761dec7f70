//! Where bars come from: the bundled history, or a live provider over HTTP.
//!
//! A live provider is two pure functions here, the request URL and the
//! parse of its answer (including its error shapes); the component does
//! the HTTP in between, with the provider's host granted in
//! `allowed_outbound_hosts`. Tests run the parsers on the providers'
//! documented formats and the component against local fake providers.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::bar::Bar;
use crate::exchange::Market;
use crate::interval::Interval;
use crate::price::Price;
use crate::symbol::Symbol;

/// A source of daily bars, chosen by the `bar_source` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Bundled,
    Yahoo,
    Stooq,
    /// A user's own bars, imported from CSV (never a `bar_source`).
    Import,
}

impl SourceKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bundled" => Some(Self::Bundled),
            "yahoo" => Some(Self::Yahoo),
            "stooq" => Some(Self::Stooq),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bundled => "bundled",
            Self::Yahoo => "yahoo",
            Self::Stooq => "stooq",
            Self::Import => "import",
        }
    }
}

/// A live provider of bars: how to ask it, and how to read its answer. The
/// component does the HTTP in between; tests feed `parse` the provider's
/// documented formats.
pub trait BarSource {
    fn kind(&self) -> SourceKind;
    /// Does it serve bars of this length?
    fn serves(&self, interval: Interval) -> bool;
    fn url(&self, symbol: &Symbol, interval: Interval, from: NaiveDate, to: NaiveDate) -> String;
    fn parse(&self, symbol: &Symbol, status: u16, body: &[u8]) -> Result<Vec<Bar>, ProviderError>;
}

/// Yahoo Finance's chart API at `base_url`: daily and intraday bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yahoo {
    pub base_url: String,
}

impl BarSource for Yahoo {
    fn kind(&self) -> SourceKind {
        SourceKind::Yahoo
    }

    fn serves(&self, _interval: Interval) -> bool {
        true
    }

    fn url(&self, symbol: &Symbol, interval: Interval, from: NaiveDate, to: NaiveDate) -> String {
        yahoo::url(&self.base_url, symbol, interval, from, to)
    }

    fn parse(&self, symbol: &Symbol, status: u16, body: &[u8]) -> Result<Vec<Bar>, ProviderError> {
        yahoo::parse(symbol, status, body)
    }
}

/// Stooq's CSV download at `base_url`: daily bars only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stooq {
    pub base_url: String,
}

impl BarSource for Stooq {
    fn kind(&self) -> SourceKind {
        SourceKind::Stooq
    }

    fn serves(&self, interval: Interval) -> bool {
        interval == Interval::OneDay
    }

    fn url(&self, symbol: &Symbol, _interval: Interval, from: NaiveDate, to: NaiveDate) -> String {
        stooq::url(&self.base_url, symbol, from, to)
    }

    fn parse(&self, symbol: &Symbol, status: u16, body: &[u8]) -> Result<Vec<Bar>, ProviderError> {
        stooq::parse(symbol, status, body)
    }
}

/// Why a provider gave no bars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider does not know `{0}`")]
    UnknownSymbol(String),
    #[error("the provider is rate limiting us")]
    RateLimited,
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the provider does not serve that range: {0}")]
    RangeNotServed(String),
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSymbol(_) => "unknown-symbol",
            Self::RateLimited => "provider-rate-limited",
            Self::Malformed(_) => "provider-malformed",
            Self::Unavailable(_) => "provider-unavailable",
            Self::RangeNotServed(_) => "range-not-served",
        }
    }

    /// Our answer's status: an unknown symbol is the caller's 404; the rest is
    /// an upstream failure (502, or 503 when rate limited).
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownSymbol(_) => 404,
            Self::RangeNotServed(_) => 422,
            Self::RateLimited => 503,
            Self::Malformed(_) | Self::Unavailable(_) => 502,
        }
    }
}

fn unix(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp()
}

/// Yahoo Finance's chart API: `/v8/finance/chart/{symbol}?interval=1d&period1&period2`.
pub mod yahoo {
    use super::*;

    pub const DEFAULT_BASE_URL: &str = "https://query1.finance.yahoo.com";

    pub fn url(
        base: &str,
        symbol: &Symbol,
        interval: Interval,
        from: NaiveDate,
        to: NaiveDate,
    ) -> String {
        let interval = match interval {
            Interval::OneHour => "60m",
            other => other.as_str(),
        };
        // period2 is exclusive: the day after `to`.
        format!(
            "{}/v8/finance/chart/{}?interval={interval}&period1={}&period2={}&events=history",
            base.trim_end_matches('/'),
            symbol,
            unix(from),
            unix(to) + 86_400
        )
    }

    #[derive(Deserialize)]
    struct Envelope {
        chart: Chart,
    }

    #[derive(Deserialize)]
    struct Chart {
        result: Option<Vec<ChartResult>>,
        error: Option<ChartError>,
    }

    #[derive(Deserialize)]
    struct ChartError {
        code: String,
        description: Option<String>,
    }

    #[derive(Deserialize)]
    struct ChartResult {
        meta: Meta,
        #[serde(default)]
        timestamp: Vec<i64>,
        indicators: Indicators,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        #[serde(default)]
        gmtoffset: i64,
    }

    #[derive(Deserialize)]
    struct Indicators {
        quote: Vec<Quote>,
    }

    #[derive(Deserialize)]
    struct Quote {
        #[serde(default)]
        open: Vec<Option<f64>>,
        #[serde(default)]
        high: Vec<Option<f64>>,
        #[serde(default)]
        low: Vec<Option<f64>>,
        #[serde(default)]
        close: Vec<Option<f64>>,
        #[serde(default)]
        volume: Vec<Option<f64>>,
    }

    /// Parse an answer. Days with a null field (no trade) are skipped.
    pub fn parse(symbol: &Symbol, status: u16, body: &[u8]) -> Result<Vec<Bar>, ProviderError> {
        if status == 429 {
            return Err(ProviderError::RateLimited);
        }
        let envelope: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) if status >= 500 => {
                return Err(ProviderError::Unavailable(format!("http {status}: {e}")));
            }
            Err(e) => {
                let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                return Err(ProviderError::Malformed(format!(
                    "{e} (http {status}, body starts {head:?})"
                )));
            }
        };
        if let Some(error) = envelope.chart.error {
            return Err(match error.code.as_str() {
                "Not Found" => ProviderError::UnknownSymbol(symbol.to_string()),
                "Too Many Requests" => ProviderError::RateLimited,
                // e.g. "1m data not available for startTime=...": intraday history is short.
                "Unprocessable Entity" => {
                    ProviderError::RangeNotServed(error.description.unwrap_or_default())
                }
                _ => ProviderError::Unavailable(format!(
                    "{}: {}",
                    error.code,
                    error.description.unwrap_or_default()
                )),
            });
        }
        if status >= 400 {
            return Err(ProviderError::Unavailable(format!("http {status}")));
        }
        let result = envelope
            .chart
            .result
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| ProviderError::Malformed("no result".into()))?;
        let quote = result
            .indicators
            .quote
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Malformed("no quote".into()))?;
        let n = result.timestamp.len();
        if [
            &quote.open,
            &quote.high,
            &quote.low,
            &quote.close,
            &quote.volume,
        ]
        .iter()
        .any(|col| col.len() != n)
        {
            return Err(ProviderError::Malformed(
                "columns of different lengths".into(),
            ));
        }
        let mut bars = Vec::with_capacity(n);
        for i in 0..n {
            let (Some(o), Some(h), Some(l), Some(c), Some(v)) = (
                quote.open[i],
                quote.high[i],
                quote.low[i],
                quote.close[i],
                quote.volume[i],
            ) else {
                continue;
            };
            let ts = result.timestamp[i];
            let local = DateTime::<Utc>::from_timestamp(ts + result.meta.gmtoffset, 0)
                .ok_or_else(|| ProviderError::Malformed("timestamp out of range".into()))?;
            bars.push(bar(symbol, local.date_naive(), ts, o, h, l, c, v)?);
        }
        Ok(bars)
    }
}

/// Stooq's CSV download: `/q/d/l/?s=7203.jp&i=d&d1=YYYYMMDD&d2=YYYYMMDD`.
pub mod stooq {
    use super::*;

    pub const DEFAULT_BASE_URL: &str = "https://stooq.com";

    /// Stooq's name for a symbol: `7203.jp`, `aapl.us`, `brk-b.us`.
    pub fn ticker(symbol: &Symbol) -> String {
        let text = symbol.as_str().to_ascii_lowercase();
        match symbol.market() {
            Market::Tse => text.replace(".t", ".jp"),
            Market::Us => format!("{text}.us"),
            // `eurusd`, `btcusd`.
            Market::Fx => text.trim_end_matches("=x").to_string(),
            Market::Crypto => text.replace('-', ""),
        }
    }

    pub fn url(base: &str, symbol: &Symbol, from: NaiveDate, to: NaiveDate) -> String {
        format!(
            "{}/q/d/l/?s={}&i=d&d1={}&d2={}",
            base.trim_end_matches('/'),
            ticker(symbol),
            from.format("%Y%m%d"),
            to.format("%Y%m%d")
        )
    }

    pub fn parse(symbol: &Symbol, status: u16, body: &[u8]) -> Result<Vec<Bar>, ProviderError> {
        if status == 429 {
            return Err(ProviderError::RateLimited);
        }
        if status >= 400 {
            return Err(ProviderError::Unavailable(format!("http {status}")));
        }
        let text =
            std::str::from_utf8(body).map_err(|_| ProviderError::Malformed("not UTF-8".into()))?;
        let trimmed = text.trim();
        // Stooq answers 200 with a plain sentence for these.
        if trimmed.eq_ignore_ascii_case("no data") || trimmed.is_empty() {
            return Err(ProviderError::UnknownSymbol(symbol.to_string()));
        }
        if trimmed
            .to_ascii_lowercase()
            .contains("exceeded the daily hits limit")
        {
            return Err(ProviderError::RateLimited);
        }
        let mut lines = trimmed.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| ProviderError::Malformed(format!("no `{name}` column")))
        };
        let (date, open, high, low, close) = (
            col("date")?,
            col("open")?,
            col("high")?,
            col("low")?,
            col("close")?,
        );
        let volume = header.iter().position(|h| h == "volume");
        let mut bars = Vec::new();
        for (n, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |i: usize| {
                cells.get(i).ok_or_else(|| {
                    ProviderError::Malformed(format!("line {}: too few cells", n + 2))
                })
            };
            let num = |i: usize| -> Result<f64, ProviderError> {
                get(i)?
                    .parse()
                    .map_err(|_| ProviderError::Malformed(format!("line {}: not a number", n + 2)))
            };
            let day = NaiveDate::parse_from_str(get(date)?, "%Y-%m-%d")
                .map_err(|_| ProviderError::Malformed(format!("line {}: bad date", n + 2)))?;
            let v = match volume {
                Some(i) => num(i)?,
                None => 0.0,
            };
            let ts = symbol.market().session_open(day).timestamp();
            bars.push(bar(
                symbol,
                day,
                ts,
                num(open)?,
                num(high)?,
                num(low)?,
                num(close)?,
                v,
            )?);
        }
        Ok(bars)
    }
}

#[allow(clippy::too_many_arguments)]
fn bar(
    symbol: &Symbol,
    date: NaiveDate,
    ts: i64,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    v: f64,
) -> Result<Bar, ProviderError> {
    let price = |x: f64| {
        Price::from_f64(x, symbol.market().price_decimals())
            .filter(|p| p.ticks() > 0)
            .ok_or_else(|| ProviderError::Malformed(format!("bad price {x} on {date}")))
    };
    let (open, high, low, close) = (price(o)?, price(h)?, price(l)?, price(c)?);
    if !(low <= open.min(close) && high >= open.max(close) && v.is_finite() && v >= 0.0) {
        return Err(ProviderError::Malformed(format!(
            "inconsistent bar on {date}"
        )));
    }
    Ok(Bar {
        date,
        ts,
        open,
        high,
        low,
        close,
        volume: v as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::parse(s).unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// The shape of a real `/v8/finance/chart/7203.T?interval=1d` answer (trimmed).
    pub const YAHOO_OK: &str = r#"{"chart":{"result":[{"meta":{"currency":"JPY","symbol":"7203.T","exchangeName":"JPX","instrumentType":"EQUITY","firstTradeDate":946940400,"regularMarketTime":1732775402,"gmtoffset":32400,"timezone":"JST","exchangeTimezoneName":"Asia/Tokyo","dataGranularity":"1d","range":""},"timestamp":[1732579200,1732665600,1732752000],"indicators":{"quote":[{"open":[2600.5,2610.0,null],"high":[2625.0,2650.0,null],"low":[2590.0,2600.0,null],"close":[2612.0,2645.5,null],"volume":[21000000,18500000,null]}],"adjclose":[{"adjclose":[2612.0,2645.5,null]}]}}],"error":null}}"#;

    #[test]
    fn yahoo_parses_bars_in_exchange_local_dates() {
        let bars = yahoo::parse(&sym("7203.T"), 200, YAHOO_OK.as_bytes()).unwrap();
        assert_eq!(bars.len(), 2, "the null day is skipped");
        // 1732579200 = 2024-11-26T00:00Z = 09:00 JST on the 26th.
        assert_eq!(bars[0].date, d(2024, 11, 26));
        assert_eq!(bars[0].close.to_string(), "2612.0000");
        assert_eq!(bars[1].volume, 18_500_000);
        assert_eq!(bars[0].ts, 1_732_579_200);
    }

    #[test]
    fn yahoo_intraday_bars_keep_their_times() {
        // Two 5-minute bars of 7203.T on 2024-11-26 from 09:00 JST.
        let body = YAHOO_OK.replace(
            "[1732579200,1732665600,1732752000]",
            "[1732579200,1732579500,1732579800]",
        );
        let bars = yahoo::parse(&sym("7203.T"), 200, body.as_bytes()).unwrap();
        assert_eq!(
            bars.iter().map(|b| b.ts).collect::<Vec<_>>(),
            [1_732_579_200, 1_732_579_500]
        );
        assert!(bars.iter().all(|b| b.date == d(2024, 11, 26)));
        let url = yahoo::url(
            "http://y",
            &sym("7203.T"),
            Interval::OneHour,
            d(2024, 11, 26),
            d(2024, 11, 26),
        );
        assert!(url.contains("interval=60m&"), "{url}");
        let too_old = r#"{"chart":{"result":null,"error":{"code":"Unprocessable Entity","description":"1m data not available for startTime=1. The requested range must be within the last 30 days."}}}"#;
        let err = yahoo::parse(&sym("7203.T"), 422, too_old.as_bytes()).unwrap_err();
        assert_eq!((err.code(), err.status()), ("range-not-served", 422));
    }

    #[test]
    fn yahoo_error_shapes() {
        let not_found = r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
        assert_eq!(
            yahoo::parse(&sym("9999.T"), 404, not_found.as_bytes()),
            Err(ProviderError::UnknownSymbol("9999.T".into()))
        );
        assert_eq!(
            yahoo::parse(&sym("AAPL"), 429, b"Too Many Requests\r\n"),
            Err(ProviderError::RateLimited)
        );
        assert!(matches!(
            yahoo::parse(&sym("AAPL"), 200, b"{\"chart\":"),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            yahoo::parse(&sym("AAPL"), 503, b"<html>"),
            Err(ProviderError::Unavailable(_))
        ));
        let ragged = YAHOO_OK.replace("\"volume\":[21000000,18500000,null]", "\"volume\":[1]");
        assert!(matches!(
            yahoo::parse(&sym("7203.T"), 200, ragged.as_bytes()),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn yahoo_url_covers_the_range() {
        let url = yahoo::url(
            "https://query1.finance.yahoo.com/",
            &sym("7203.T"),
            Interval::OneDay,
            d(2024, 1, 1),
            d(2024, 1, 31),
        );
        assert_eq!(
            url,
            "https://query1.finance.yahoo.com/v8/finance/chart/7203.T?interval=1d&period1=1704067200&period2=1706745600&events=history"
        );
    }

    #[test]
    fn stooq_parses_csv_and_its_error_sentences() {
        let csv = "Date,Open,High,Low,Close,Volume\n2024-11-26,2600.5,2625,2590,2612,21000000\n2024-11-27,2610,2650,2600,2645.5,18500000\n";
        let bars = stooq::parse(&sym("7203.T"), 200, csv.as_bytes()).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].close.to_string(), "2645.5000");
        assert_eq!(
            stooq::parse(&sym("9999.T"), 200, b"No data"),
            Err(ProviderError::UnknownSymbol("9999.T".into()))
        );
        assert_eq!(
            stooq::parse(&sym("AAPL"), 200, b"Exceeded the daily hits limit"),
            Err(ProviderError::RateLimited)
        );
        assert!(matches!(
            stooq::parse(
                &sym("AAPL"),
                200,
                b"Date,Open,High,Low,Close\n2024-11-26,1,2,x,1\n"
            ),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            stooq::parse(
                &sym("AAPL"),
                200,
                b"Date,Open,High,Low,Close\n2024-11-26,5,6,1,9\n"
            ),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn stooq_tickers_and_url() {
        assert_eq!(stooq::ticker(&sym("7203.T")), "7203.jp");
        assert_eq!(stooq::ticker(&sym("BRK-B")), "brk-b.us");
        assert_eq!(
            stooq::url(
                "https://stooq.com",
                &sym("AAPL"),
                d(2024, 1, 2),
                d(2024, 1, 31)
            ),
            "https://stooq.com/q/d/l/?s=aapl.us&i=d&d1=20240102&d2=20240131"
        );
    }
}

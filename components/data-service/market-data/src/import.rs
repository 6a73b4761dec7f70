//! A user's own bars: CSV files (a broker's export of TSE minute bars, say)
//! validated row by row, every error naming its line, and stored as series
//! of their own that queries serve before the bundled history and the live
//! provider.
//!
//! The format: a header row, then one bar a row. Columns, in any order and
//! any case: `symbol` (optional when the import names it), `time` (or `date`,
//! `datetime`, `timestamp`), `open`, `high`, `low`, `close`, `volume`. A time
//! is an RFC 3339 instant (`2024-11-05T09:00:00+09:00`), a local time of the
//! symbol's market (`2024-11-05 09:00`, as brokers export it), or on daily
//! bars a trading day (`2024-11-05`). Each bar opens in a session of its
//! market (a daily bar: on a trading day), its prices are positive decimals
//! with `low ≤ open, close ≤ high`, its volume a whole number, and a
//! symbol's bars come in time order without overlapping.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bar::Bar;
use crate::exchange::Market;
use crate::interval::Interval;
use crate::price::Price;
use crate::symbol::Symbol;

/// Most rows one import takes.
pub const MAX_ROWS: usize = 500_000;
/// Most row errors one answer lists (the count says how many there were).
pub const MAX_ERRORS: usize = 20;

/// A row that cannot be a bar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based, the header being line 1.
    pub line: usize,
    /// The column at fault (`close`), or `row` for the row as a whole.
    pub field: String,
    pub message: String,
}

/// Why an import took nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{count} row(s) of the CSV are not bars; nothing was imported (first: line {}: {})", errors.first().map_or(0, |e| e.line), errors.first().map_or("", |e| e.message.as_str()))]
pub struct ImportError {
    /// The first [`MAX_ERRORS`] errors, in line order.
    pub errors: Vec<RowError>,
    pub count: usize,
}

impl ImportError {
    fn one(line: usize, field: &str, message: impl Into<String>) -> Self {
        Self {
            errors: vec![RowError {
                line,
                field: field.into(),
                message: message.into(),
            }],
            count: 1,
        }
    }
}

/// One symbol's bars at one interval, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub symbol: Symbol,
    pub interval: Interval,
    pub bars: Vec<Bar>,
}

#[derive(Clone, Copy)]
enum Column {
    Symbol,
    Time,
    Open,
    High,
    Low,
    Close,
    Volume,
}

fn column(name: &str) -> Option<Column> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "symbol" | "ticker" => Column::Symbol,
        "time" | "date" | "datetime" | "timestamp" => Column::Time,
        "open" => Column::Open,
        "high" => Column::High,
        "low" => Column::Low,
        "close" => Column::Close,
        "volume" => Column::Volume,
        _ => return None,
    })
}

/// `local` (the market's wall-clock time) as an instant: the offset in
/// force then (daylight saving time included, but for the hour it starts).
fn from_local(market: Market, local: NaiveDateTime) -> DateTime<Utc> {
    let guess = local.and_utc() - chrono::Duration::seconds(market.utc_offset(local.and_utc()));
    local.and_utc() - chrono::Duration::seconds(market.utc_offset(guess))
}

/// The open instant of a row's bar.
fn open_time(market: Market, interval: Interval, raw: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(raw) {
        return Ok(instant.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(from_local(market, local));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return if interval == Interval::OneDay {
            if market.is_trading_day(date) {
                Ok(market.session_open(date))
            } else {
                Err(format!("{date} is not a trading day of {}", market.code()))
            }
        } else {
            Err(format!(
                "`{raw}` is a date; {} bars need a time (2024-11-05 09:00 or RFC 3339)",
                interval.as_str()
            ))
        };
    }
    Err(format!(
        "`{}` is not a time (RFC 3339, `YYYY-MM-DD HH:MM` in the market's time, or a date for daily bars)",
        raw.chars().take(40).collect::<String>()
    ))
}

/// Parse and check a CSV of `interval` bars; `symbol` is the symbol of rows
/// without a `symbol` column. All of it or nothing: any bad row is an error.
pub fn parse_csv(
    text: &[u8],
    interval: Interval,
    symbol: Option<&Symbol>,
) -> Result<Vec<Series>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::one(1, "header", format!("not a CSV header: {e}")))?
        .clone();
    let mut columns = Vec::new();
    for name in &headers {
        let c = column(name).ok_or_else(|| {
            ImportError::one(
                1,
                "header",
                format!(
                    "unknown column `{}` (symbol, time, open, high, low, close, volume)",
                    name.chars().take(32).collect::<String>()
                ),
            )
        })?;
        columns.push(c);
    }
    let index = |wanted: fn(&Column) -> bool| columns.iter().position(wanted);
    let symbol_at = index(|c| matches!(c, Column::Symbol));
    let find = |wanted: fn(&Column) -> bool, name: &str| {
        index(wanted).ok_or_else(|| ImportError::one(1, "header", format!("no `{name}` column")))
    };
    let time_at = find(|c| matches!(c, Column::Time), "time")?;
    let prices = [
        ("open", find(|c| matches!(c, Column::Open), "open")?),
        ("high", find(|c| matches!(c, Column::High), "high")?),
        ("low", find(|c| matches!(c, Column::Low), "low")?),
        ("close", find(|c| matches!(c, Column::Close), "close")?),
    ];
    let volume_at = find(|c| matches!(c, Column::Volume), "volume")?;
    if symbol_at.is_none() && symbol.is_none() {
        return Err(ImportError::one(
            1,
            "header",
            "no `symbol` column and no symbol given for the file",
        ));
    }

    let mut errors: Vec<RowError> = Vec::new();
    let mut count = 0;
    let mut series: Vec<Series> = Vec::new();
    let mut rows = 0;
    for (n, record) in reader.records().enumerate() {
        let line = n + 2;
        let mut error = |field: &str, message: String| {
            count += 1;
            if errors.len() < MAX_ERRORS {
                errors.push(RowError {
                    line,
                    field: field.into(),
                    message,
                });
            }
        };
        rows += 1;
        if rows > MAX_ROWS {
            error("row", format!("more than {MAX_ROWS} rows in one import"));
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                error(
                    "row",
                    format!("not a CSV row of {} fields: {e}", columns.len()),
                );
                continue;
            }
        };
        let row_symbol = match symbol_at.map(|i| Symbol::parse(&record[i])) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                error("symbol", e.to_string());
                continue;
            }
            None => symbol.cloned().expect("checked above"),
        };
        let market = row_symbol.market();
        let opens = match open_time(market, interval, &record[time_at]) {
            Ok(t) => t,
            Err(message) => {
                error("time", message);
                continue;
            }
        };
        if interval.is_intraday() && !market.is_open(opens) {
            error(
                "time",
                format!(
                    "{} is outside {}'s sessions ({} local)",
                    opens.to_rfc3339(),
                    market.code(),
                    market.local(opens).format("%Y-%m-%d %H:%M")
                ),
            );
            continue;
        }
        let mut ohlc = [Price::default(); 4];
        let mut bad = false;
        for (slot, (name, at)) in ohlc.iter_mut().zip(prices) {
            match record[at].parse::<Price>() {
                Ok(p) if p.ticks() > 0 => *slot = p,
                Ok(_) => {
                    error(name, format!("{name} `{}` is not positive", &record[at]));
                    bad = true;
                }
                Err(_) => {
                    error(
                        name,
                        format!(
                            "{name} `{}` is not a decimal price",
                            record[at].chars().take(32).collect::<String>()
                        ),
                    );
                    bad = true;
                }
            }
        }
        let [open, high, low, close] = ohlc;
        let volume = match record[volume_at].parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                error(
                    "volume",
                    format!(
                        "volume `{}` is not a whole number",
                        record[volume_at].chars().take(32).collect::<String>()
                    ),
                );
                None
            }
        };
        let (Some(volume), false) = (volume, bad) else {
            continue;
        };
        if low > open.min(close) || high < open.max(close) {
            error(
                "row",
                format!("low {low} ≤ open {open}, close {close} ≤ high {high} does not hold"),
            );
            continue;
        }
        let bar = Bar {
            date: market.bar_times(opens, interval).date,
            ts: opens.timestamp(),
            open,
            high,
            low,
            close,
            volume,
        };
        let at = match series.iter().position(|s| s.symbol == row_symbol) {
            Some(at) => at,
            None => {
                series.push(Series {
                    symbol: row_symbol,
                    interval,
                    bars: Vec::new(),
                });
                series.len() - 1
            }
        };
        let bars = &mut series[at].bars;
        let overlaps = |previous: &Bar| match interval {
            Interval::OneDay => bar.date <= previous.date,
            _ => bar.ts < previous.ts + interval.length().num_seconds(),
        };
        if let Some(previous) = bars.last()
            && overlaps(previous)
        {
            error(
                "time",
                format!(
                    "{} is not a {} bar after the previous row's {}",
                    opens.to_rfc3339(),
                    interval.as_str(),
                    DateTime::from_timestamp(previous.ts, 0)
                        .unwrap_or_default()
                        .to_rfc3339()
                ),
            );
            continue;
        }
        bars.push(bar);
    }
    if count > 0 {
        return Err(ImportError { errors, count });
    }
    if series.is_empty() {
        return Err(ImportError::one(
            2,
            "row",
            "no bars: the CSV has only its header",
        ));
    }
    Ok(series)
}

/// `existing` with `new` in it: a new bar replaces one opening at the same
/// time, the rest stay, in time order.
pub fn merge(existing: Vec<Bar>, new: &[Bar]) -> Vec<Bar> {
    let mut by_time: std::collections::BTreeMap<i64, Bar> =
        existing.into_iter().map(|b| (b.ts, b)).collect();
    by_time.extend(new.iter().map(|b| (b.ts, *b)));
    by_time.into_values().collect()
}

/// A stored series: 48 bytes a bar (open time, open, high, low, close in
/// ticks of 10⁻⁸, volume; little-endian), the dates recomputed from the
/// market's calendar.
pub fn encode(bars: &[Bar]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bars.len() * 48);
    for b in bars {
        out.extend_from_slice(&b.ts.to_le_bytes());
        for p in [b.open, b.high, b.low, b.close] {
            out.extend_from_slice(&p.ticks().to_le_bytes());
        }
        out.extend_from_slice(&b.volume.to_le_bytes());
    }
    out
}

/// [`encode`]'s bars back, `None` if `data` is not such a series.
pub fn decode(data: &[u8], market: Market, interval: Interval) -> Option<Vec<Bar>> {
    let (records, rest) = data.as_chunks::<48>();
    if !rest.is_empty() {
        return None;
    }
    let word = |r: &[u8; 48], i: usize| {
        i64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().expect("eight bytes"))
    };
    let mut day: Option<(NaiveDate, i64)> = None;
    let mut bars = Vec::with_capacity(records.len());
    for r in records {
        let ts = word(r, 0);
        // A day's bars share its date: the calendar is asked once a day.
        let date = match day {
            Some((date, close)) if ts < close => date,
            _ => {
                let times = market.bar_times(DateTime::from_timestamp(ts, 0)?, interval);
                day = Some((times.date, times.day_close.timestamp()));
                times.date
            }
        };
        bars.push(Bar {
            date,
            ts,
            open: Price::from_ticks(word(r, 1)),
            high: Price::from_ticks(word(r, 2)),
            low: Price::from_ticks(word(r, 3)),
            close: Price::from_ticks(word(r, 4)),
            volume: u64::from_le_bytes(r[40..48].try_into().expect("eight bytes")),
        });
    }
    Some(bars)
}

/// Daily bars of `bars` (intraday, in time order) by their trading day:
/// open of the first, high and low of all, close of the last, volumes summed.
pub fn daily(market: Market, bars: impl IntoIterator<Item = Bar>) -> Vec<Bar> {
    let mut days: Vec<Bar> = Vec::new();
    for bar in bars {
        match days.last_mut() {
            Some(day) if day.date == bar.date => {
                day.high = day.high.max(bar.high);
                day.low = day.low.min(bar.low);
                day.close = bar.close;
                day.volume = day.volume.saturating_add(bar.volume);
            }
            _ => days.push(Bar {
                // A daily bar's time is its session's open.
                ts: market.session_open(bar.date).timestamp(),
                ..bar
            }),
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toyota() -> Symbol {
        Symbol::parse("7203.T").unwrap()
    }

    const MINUTES: &str = "time,open,high,low,close,volume
2025-11-28 09:00,2500,2510,2495,2505,12000
2025-11-28 09:01,2505,2512,2504,2511,8000
2025-11-28T03:30:00Z,2511,2515,2509,2514,9000
";

    #[test]
    fn a_brokers_minute_bars_in_local_time() {
        let series = parse_csv(MINUTES.as_bytes(), Interval::OneMinute, Some(&toyota())).unwrap();
        assert_eq!(series.len(), 1);
        let bars = &series[0].bars;
        assert_eq!(bars.len(), 3);
        // 09:00 JST is 00:00 UTC; 03:30 UTC is 12:30 JST, the afternoon's open.
        assert_eq!(
            DateTime::from_timestamp(bars[0].ts, 0)
                .unwrap()
                .to_rfc3339(),
            "2025-11-28T00:00:00+00:00"
        );
        assert!(
            bars.iter()
                .all(|b| b.date == NaiveDate::from_ymd_opt(2025, 11, 28).unwrap())
        );
        assert_eq!(bars[1].close, "2511".parse().unwrap());
        let stored = encode(bars);
        assert_eq!(stored.len(), 3 * 48);
        assert_eq!(
            decode(&stored, Market::Tse, Interval::OneMinute).as_deref(),
            Some(bars.as_slice())
        );
        let day = daily(Market::Tse, bars.iter().copied());
        assert_eq!(day.len(), 1);
        assert_eq!(
            (
                day[0].open,
                day[0].high,
                day[0].low,
                day[0].close,
                day[0].volume
            ),
            (
                "2500".parse().unwrap(),
                "2515".parse().unwrap(),
                "2495".parse().unwrap(),
                "2514".parse().unwrap(),
                29_000
            )
        );
    }

    #[test]
    fn every_bad_row_is_named_by_its_line_and_nothing_is_taken() {
        let csv = "Symbol,Date,Open,High,Low,Close,Volume
7203.T,2025-11-28 09:00,2500,2510,2495,2505,12000
7203.T,2025-11-28 12:00,2500,2510,2495,2505,12000
7203.T,2025-11-28 12:30,2500,2490,2495,2505,12000
7203.T,2025-11-28 12:31,abc,2510,2495,2505,12000
7203.T,2025-11-28 12:32,2500,2510,2495,2505,-4
7203.T,2025-11-28 12:33,0,2510,2495,2505,4
72O3.T,2025-11-28 12:34,2500,2510,2495,2505,4
7203.T,yesterday,2500,2510,2495,2505,4
7203.T,2025-11-28 09:00,2500,2510,2495,2505,12000
7203.T,2025-11-28 12:40,2500,2510
";
        let err = parse_csv(csv.as_bytes(), Interval::OneMinute, None).unwrap_err();
        let got: Vec<(usize, &str)> = err
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "time"),   // 12:00 is the lunch break
                (4, "row"),    // high below the open
                (5, "open"),   // not a number
                (6, "volume"), // negative
                (7, "open"),   // zero
                (8, "symbol"), // letter O
                (9, "time"),   // not a time
                (10, "time"),  // before the previous row
                (11, "row"),   // too few fields
            ]
        );
        assert_eq!(err.count, 9);
        assert!(
            err.errors[0].message.contains("outside tse's sessions"),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("9 row(s)"));
    }

    #[test]
    fn headers_and_dates_are_checked() {
        let parse = |csv: &str, interval| parse_csv(csv.as_bytes(), interval, None);
        for (csv, message) in [
            (
                "time,open,high,low,close,volume\n2025-11-28,1,1,1,1,1\n",
                "no `symbol` column",
            ),
            ("symbol,time,open,high,low,close\n", "no `volume` column"),
            (
                "symbol,time,open,high,low,close,volume,vwap\n",
                "unknown column `vwap`",
            ),
            (
                "symbol,time,open,high,low,close,volume\n",
                "only its header",
            ),
        ] {
            let err = parse(csv, Interval::OneDay).unwrap_err();
            assert!(err.errors[0].message.contains(message), "{csv}: {err:?}");
        }
        let daily = "symbol,date,open,high,low,close,volume
AAPL,2010-08-20,250,252,248,251,100
AAPL,2010-08-21,250,252,248,251,100
";
        let err = parse(daily, Interval::OneDay).unwrap_err();
        assert_eq!(err.errors[0].line, 3);
        assert!(err.errors[0].message.contains("not a trading day"));
        let err = parse(daily, Interval::OneHour).unwrap_err();
        assert!(err.errors[0].message.contains("need a time"), "{err:?}");
        let ok = parse(
            &daily.lines().take(2).collect::<Vec<_>>().join("\n"),
            Interval::OneDay,
        )
        .unwrap();
        assert_eq!(
            ok[0].bars[0].ts,
            Market::Us
                .session_open(NaiveDate::from_ymd_opt(2010, 8, 20).unwrap())
                .timestamp()
        );
    }

    #[test]
    fn a_new_import_replaces_bars_at_the_same_time_and_keeps_the_rest() {
        let bars = parse_csv(MINUTES.as_bytes(), Interval::OneMinute, Some(&toyota()))
            .unwrap()
            .remove(0)
            .bars;
        let mut changed = bars[1];
        changed.close = "2600".parse().unwrap();
        let merged = merge(bars.clone(), &[changed]);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[1].close, "2600".parse().unwrap());
        assert_eq!(merged[0], bars[0]);
    }
}

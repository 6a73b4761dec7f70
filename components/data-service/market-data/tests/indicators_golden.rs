//! The indicators against golden values computed by the `ta` Python library
//! (and pandas, for returns and volatility) on the same real bars:
//! `tests/golden/generate.py`. Warm-up periods must match exactly (both
//! report nothing), values to 1e-9 relative.

use chrono::NaiveDate;
use market_data::History;
use market_data::indicators::{self, Columns, Series};

struct Golden {
    dates: Vec<String>,
    columns: Vec<(String, Vec<Option<f64>>)>,
}

fn golden(name: &str) -> Golden {
    let path = format!("{}/tests/golden/{name}.csv", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut dates = Vec::new();
    let mut columns: Vec<(String, Vec<Option<f64>>)> = header[1..]
        .iter()
        .map(|h| (h.to_string(), Vec::new()))
        .collect();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        dates.push(cells[0].to_string());
        for (i, cell) in cells[1..].iter().enumerate() {
            columns[i]
                .1
                .push((!cell.is_empty()).then(|| cell.parse().unwrap()));
        }
    }
    Golden { dates, columns }
}

fn computed(c: &Columns, column: &str) -> Series {
    let m = indicators::macd(&c.close, 12, 26, 9);
    let bb = indicators::bollinger(&c.close, 20, 2.0);
    match column {
        "sma20" => indicators::sma(&c.close, 20),
        "ema12" => indicators::ema(&c.close, 12),
        "ema26" => indicators::ema(&c.close, 26),
        "macd" => m.macd,
        "macd_signal" => m.signal,
        "macd_hist" => m.histogram,
        "rsi14" => indicators::rsi(&c.close, 14),
        "bb_upper" => bb.upper,
        "bb_middle" => bb.middle,
        "bb_lower" => bb.lower,
        "bb_pctb" => bb.percent_b,
        "atr14" => indicators::atr(&c.high, &c.low, &c.close, 14),
        "ret1" => indicators::returns(&c.close, 1),
        "ret5" => indicators::returns(&c.close, 5),
        "ret20" => indicators::returns(&c.close, 20),
        "vol20" => indicators::volatility(&c.close, 20),
        "volz20" => indicators::volume_zscore(&c.volume, 20),
        other => panic!("no indicator for golden column {other}"),
    }
}

fn check(name: &str, symbol: &str, range: Option<(&str, &str)>, head: Option<usize>) {
    let history = History::bundled().unwrap();
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let mut bars = match range {
        Some((from, to)) => history
            .bars(symbol, Some(date(from)), Some(date(to)))
            .unwrap(),
        None => history.bars(symbol, None, None).unwrap(),
    };
    if let Some(n) = head {
        bars.truncate(n);
    }
    let golden = golden(name);
    let dates: Vec<String> = bars.iter().map(|b| b.date.to_string()).collect();
    assert_eq!(dates, golden.dates, "{name}: the same bars");
    let columns = Columns::of(&bars);
    for (column, expected) in &golden.columns {
        let actual = computed(&columns, column);
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            match (a, e) {
                (None, None) => {}
                (Some(a), Some(e)) => {
                    let tolerance = 1e-9 * e.abs().max(1.0);
                    assert!(
                        (a - e).abs() <= tolerance,
                        "{name} {column} at {} ({i}): {a} vs ta {e}",
                        golden.dates[i]
                    );
                }
                _ => panic!(
                    "{name} {column} at {} ({i}): {a:?} vs ta {e:?} (warm-up differs)",
                    golden.dates[i]
                ),
            }
        }
    }
}

#[test]
fn warm_up_from_the_first_bar_matches_ta() {
    check("ibm-warmup", "IBM", None, Some(300));
}

#[test]
fn market_closure_gap_matches_ta() {
    check(
        "ibm-2001-closure",
        "IBM",
        Some(("2001-06-01", "2001-12-31")),
        None,
    );
}

#[test]
fn adjusted_split_series_matches_ta() {
    check(
        "aapl-2005-split",
        "AAPL",
        Some(("2004-10-01", "2005-06-30")),
        None,
    );
}

#[test]
fn repaired_rows_match_ta() {
    check(
        "pdco-repaired",
        "PDCO",
        Some(("2009-08-21", "2010-08-20")),
        None,
    );
}

#[test]
fn indicator_set_reports_the_last_bar() {
    let history = History::bundled().unwrap();
    let bars = history.bars("IBM", None, None).unwrap();
    let set = indicators::IndicatorSet::of(&bars[..300]);
    let golden = golden("ibm-warmup");
    let last = |col: &str| golden.columns.iter().find(|(c, _)| c == col).unwrap().1[299].unwrap();
    assert!((set.rsi_14.unwrap() - last("rsi14")).abs() < 1e-9);
    assert!((set.atr_14.unwrap() - last("atr14")).abs() < 1e-9);
    // Too short a series: everything is still warming up.
    let short = indicators::IndicatorSet::of(&bars[..10]);
    assert_eq!(short.rsi_14, None);
    assert_eq!(short.macd_signal, None);
}

/// The feature vector against `training/features.py` (the training pipeline's
/// own definitions) on the same bars: training and serving compute the same thing.
fn check_features(name: &str, symbol: &str, head: Option<usize>) {
    let history = History::bundled().unwrap();
    let mut bars = history.bars(symbol, None, None).unwrap();
    if let Some(n) = head {
        bars.truncate(n);
    }
    let golden = golden(name);
    let dates: Vec<String> = bars.iter().map(|b| b.date.to_string()).collect();
    assert_eq!(dates, golden.dates, "{name}: the same bars");
    let names: Vec<&str> = golden.columns.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        names,
        market_data::features::FEATURE_NAMES,
        "same features, same order"
    );
    let rows = market_data::features::feature_rows(&bars);
    for (i, row) in rows.iter().enumerate() {
        match row {
            None => assert!(
                golden.columns.iter().all(|(_, v)| v[i].is_none()),
                "{name} {}: Rust is warming up, Python is not",
                golden.dates[i]
            ),
            Some(values) => {
                for (j, (column, expected)) in golden.columns.iter().enumerate() {
                    let e = expected[i].unwrap_or_else(|| {
                        panic!("{name} {} {column}: Python is warming up", golden.dates[i])
                    });
                    assert!(
                        (values[j] - e).abs() <= 1e-9 * e.abs().max(1.0),
                        "{name} {} {column}: {} vs training {e}",
                        golden.dates[i],
                        values[j]
                    );
                }
            }
        }
    }
}

#[test]
fn features_match_the_training_pipeline() {
    check_features("features-msft", "MSFT", Some(400));
    check_features("features-xom", "XOM", None);
}

//! Indicator throughput, natively: every indicator and the feature vector
//! over the whole bundled history (525 series, 133,757 bars), repeated.
//! Prints bars per second. Natively: `cargo run --release -p market-data
//! --example indicators_bench`; in Wasm: build it for wasm32-wasip2 and run it
//! with runtime-host's `run_command` example (`make bench` does both).

use std::time::Instant;

use market_data::History;
use market_data::features::feature_rows;
use market_data::indicators::{self, Columns};

fn main() {
    let history = History::bundled().expect("bundled history");
    let series: Vec<_> = history
        .series()
        .iter()
        .map(|s| history.bars(&s.symbol, None, None).expect("bars"))
        .collect();
    let bars: usize = series.iter().map(Vec::len).sum();
    let rounds = 20;
    let started = Instant::now();
    let mut checksum = 0.0;
    for _ in 0..rounds {
        for bars in &series {
            let c = Columns::of(bars);
            let m = indicators::macd(&c.close, 12, 26, 9);
            let bb = indicators::bollinger(&c.close, 20, 2.0);
            let rsi = indicators::rsi(&c.close, 14);
            let atr = indicators::atr(&c.high, &c.low, &c.close, 14);
            checksum += m.histogram.last().copied().flatten().unwrap_or(0.0)
                + bb.percent_b.last().copied().flatten().unwrap_or(0.0)
                + rsi.last().copied().flatten().unwrap_or(0.0)
                + atr.last().copied().flatten().unwrap_or(0.0);
        }
    }
    let indicators_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..rounds {
        for bars in &series {
            checksum += feature_rows(bars).len() as f64;
        }
    }
    let features_secs = started.elapsed().as_secs_f64();
    let total = (bars * rounds) as f64;
    let place = if cfg!(target_family = "wasm") {
        "in wasm32-wasip2"
    } else {
        "natively"
    };
    println!(
        "indicators (MACD, Bollinger, RSI, ATR) {place}: {:.2} M bars/s",
        total / indicators_secs / 1e6
    );
    println!(
        "feature vector (10 features, all rows) {place}: {:.2} M bars/s",
        total / features_secs / 1e6
    );
    println!(
        "({} series, {bars} bars, {rounds} rounds; checksum {checksum:.3})",
        series.len()
    );
}

//! Technical indicators over a daily series, and the feature vector the
//! ML model consumes.
//!
//! Definitions follow the `ta` Python library (0.11) exactly, warm-up
//! included, so that training (Python) and serving (this crate) compute the
//! same numbers; `tests/golden/` holds values produced by `ta` on real bars
//! and the tests compare against them. Every output is aligned with its input
//! and is `None` while the indicator is still warming up:
//!
//! | indicator | definition | first value at index |
//! |---|---|---|
//! | SMA(n) | mean of the last n closes | n − 1 |
//! | EMA(n) | α = 2/(n+1), seeded with the first close (pandas `ewm(adjust=False)`) | n − 1 |
//! | MACD(12, 26, 9) | EMA12 − EMA26; signal = EMA9 of MACD from its first value; histogram = MACD − signal | 25; signal 33 |
//! | RSI(14) | Wilder smoothing (α = 1/14) of gains and losses seeded at 0; 100 when losses average 0 | 13 |
//! | Bollinger(20, 2) | SMA20 ± 2 × population std (ddof 0); %B = (close − lower)/(upper − lower) | 19 |
//! | ATR(14) | true range max(h−l, ∣h−c₋₁∣, ∣l−c₋₁∣); seed = mean of the first 14 (first is h−l), then Wilder | 13 |
//! | volatility(n) | sample std (ddof 1) of the last n simple returns | n |
//! | volume z-score(n) | (v − mean of last n)/population std of last n | n − 1 |
//! | return(k) | close / close k bars ago − 1 | k |

use serde::Serialize;

use crate::bar::Bar;

pub type Series = Vec<Option<f64>>;

pub fn sma(values: &[f64], n: usize) -> Series {
    (0..values.len())
        .map(|i| {
            (n > 0 && i + 1 >= n).then(|| values[i + 1 - n..=i].iter().sum::<f64>() / n as f64)
        })
        .collect()
}

/// pandas `ewm(alpha, adjust=False)` from the first value, reported after `min_periods` values.
fn ewm(values: &[Option<f64>], alpha: f64, min_periods: usize) -> Series {
    let mut out = vec![None; values.len()];
    let mut state: Option<f64> = None;
    let mut seen = 0;
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            state = Some(match state {
                None => *v,
                Some(s) => (1.0 - alpha) * s + alpha * v,
            });
            seen += 1;
        }
        if seen >= min_periods {
            out[i] = state;
        }
    }
    out
}

pub fn ema(values: &[f64], n: usize) -> Series {
    let values: Vec<Option<f64>> = values.iter().copied().map(Some).collect();
    ewm(&values, 2.0 / (n as f64 + 1.0), n)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Macd {
    pub macd: Series,
    pub signal: Series,
    pub histogram: Series,
}

pub fn macd(close: &[f64], fast: usize, slow: usize, signal: usize) -> Macd {
    let fast = ema(close, fast);
    let slow = ema(close, slow);
    let line: Series = fast
        .iter()
        .zip(&slow)
        .map(|(f, s)| Some((*f)? - (*s)?))
        .collect();
    let signal = ewm(&line, 2.0 / (signal as f64 + 1.0), signal);
    let histogram = line
        .iter()
        .zip(&signal)
        .map(|(m, s)| Some((*m)? - (*s)?))
        .collect();
    Macd {
        macd: line,
        signal,
        histogram,
    }
}

pub fn rsi(close: &[f64], n: usize) -> Series {
    let mut gains = Vec::with_capacity(close.len());
    let mut losses = Vec::with_capacity(close.len());
    for i in 0..close.len() {
        let change = if i == 0 { 0.0 } else { close[i] - close[i - 1] };
        gains.push(Some(change.max(0.0)));
        losses.push(Some((-change).max(0.0)));
    }
    let alpha = 1.0 / n as f64;
    let up = ewm(&gains, alpha, n);
    let down = ewm(&losses, alpha, n);
    up.iter()
        .zip(&down)
        .map(|(u, d)| {
            let (u, d) = ((*u)?, (*d)?);
            Some(if d == 0.0 {
                100.0
            } else {
                100.0 - 100.0 / (1.0 + u / d)
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bollinger {
    pub upper: Series,
    pub middle: Series,
    pub lower: Series,
    pub percent_b: Series,
}

/// Population standard deviation of each window of `n` (ddof 0), or sample (ddof 1).
fn rolling_std(values: &[f64], n: usize, ddof: usize) -> Series {
    (0..values.len())
        .map(|i| {
            if i + 1 < n || n <= ddof {
                return None;
            }
            let window = &values[i + 1 - n..=i];
            let mean = window.iter().sum::<f64>() / n as f64;
            let ss: f64 = window.iter().map(|v| (v - mean).powi(2)).sum();
            Some((ss / (n - ddof) as f64).sqrt())
        })
        .collect()
}

pub fn bollinger(close: &[f64], n: usize, k: f64) -> Bollinger {
    let middle = sma(close, n);
    let std = rolling_std(close, n, 0);
    let mut upper = vec![None; close.len()];
    let mut lower = vec![None; close.len()];
    let mut percent_b = vec![None; close.len()];
    for i in 0..close.len() {
        if let (Some(m), Some(s)) = (middle[i], std[i]) {
            let (u, l) = (m + k * s, m - k * s);
            upper[i] = Some(u);
            lower[i] = Some(l);
            percent_b[i] = (u != l).then(|| (close[i] - l) / (u - l));
        }
    }
    Bollinger {
        upper,
        middle,
        lower,
        percent_b,
    }
}

pub fn atr(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Series {
    let len = close.len();
    let tr: Vec<f64> = (0..len)
        .map(|i| {
            let range = high[i] - low[i];
            if i == 0 {
                range
            } else {
                let pc = close[i - 1];
                range.max((high[i] - pc).abs()).max((low[i] - pc).abs())
            }
        })
        .collect();
    let mut out = vec![None; len];
    if n == 0 || len < n {
        return out;
    }
    let mut value = tr[..n].iter().sum::<f64>() / n as f64;
    out[n - 1] = Some(value);
    for i in n..len {
        value = (value * (n - 1) as f64 + tr[i]) / n as f64;
        out[i] = Some(value);
    }
    out
}

/// Simple returns over `lag` bars.
pub fn returns(close: &[f64], lag: usize) -> Series {
    (0..close.len())
        .map(|i| (i >= lag && lag > 0).then(|| close[i] / close[i - lag] - 1.0))
        .collect()
}

/// Sample standard deviation of the last `n` one-bar returns.
pub fn volatility(close: &[f64], n: usize) -> Series {
    let r1 = returns(close, 1);
    let values: Vec<f64> = r1.iter().map(|r| r.unwrap_or(f64::NAN)).collect();
    rolling_std(&values, n, 1)
        .into_iter()
        .map(|v| v.filter(|v| v.is_finite()))
        .collect()
}

pub fn volume_zscore(volume: &[f64], n: usize) -> Series {
    let mean = sma(volume, n);
    let std = rolling_std(volume, n, 0);
    (0..volume.len())
        .map(|i| {
            let (m, s) = (mean[i]?, std[i]?);
            (s > 0.0).then(|| (volume[i] - m) / s)
        })
        .collect()
}

/// The columns of a bar series as floats, for the statistics above.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

impl Columns {
    pub fn of(bars: &[Bar]) -> Self {
        Self {
            high: bars.iter().map(|b| b.high.to_f64()).collect(),
            low: bars.iter().map(|b| b.low.to_f64()).collect(),
            close: bars.iter().map(|b| b.close.to_f64()).collect(),
            volume: bars.iter().map(|b| b.volume as f64).collect(),
        }
    }
}

/// WIT `indicator-set`: every indicator at the last bar of a series.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct IndicatorSet {
    pub sma_20: Option<f64>,
    pub ema_12: Option<f64>,
    pub ema_26: Option<f64>,
    pub macd: Option<f64>,
    pub macd_signal: Option<f64>,
    pub macd_histogram: Option<f64>,
    pub rsi_14: Option<f64>,
    pub bollinger_upper: Option<f64>,
    pub bollinger_middle: Option<f64>,
    pub bollinger_lower: Option<f64>,
    pub bollinger_percent_b: Option<f64>,
    pub atr_14: Option<f64>,
}

fn last(series: &Series) -> Option<f64> {
    series.last().copied().flatten()
}

impl IndicatorSet {
    pub fn of(bars: &[Bar]) -> Self {
        let c = Columns::of(bars);
        let m = macd(&c.close, 12, 26, 9);
        let bb = bollinger(&c.close, 20, 2.0);
        Self {
            sma_20: last(&sma(&c.close, 20)),
            ema_12: last(&ema(&c.close, 12)),
            ema_26: last(&ema(&c.close, 26)),
            macd: last(&m.macd),
            macd_signal: last(&m.signal),
            macd_histogram: last(&m.histogram),
            rsi_14: last(&rsi(&c.close, 14)),
            bollinger_upper: last(&bb.upper),
            bollinger_middle: last(&bb.middle),
            bollinger_lower: last(&bb.lower),
            bollinger_percent_b: last(&bb.percent_b),
            atr_14: last(&atr(&c.high, &c.low, &c.close, 14)),
        }
    }
}

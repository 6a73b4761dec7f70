#!/usr/bin/env python3
"""Golden indicator values from the `ta` library (the reference), on real bars
from the bundled history. Regenerate with:

    pip install ta==0.11.0 pandas numpy
    python3 tests/golden/generate.py

Windows: IBM's first 300 bars (warm-up from the very first bar), IBM around
the September 2001 closure (a four-day gap and a gap down), AAPL across its
2005 split (adjusted: no jump), and an S&P member with repaired rows (PDCO).
"""
import sys
from pathlib import Path

import pandas as pd
import ta

HERE = Path(__file__).parent
# The bundled-history reader is training's (one reader for both).
sys.path.insert(0, str(HERE.parents[4] / "training"))
import history  # noqa: E402


def bars(symbol):
    df = history.bars(symbol)
    df["date"] = df["date"].dt.strftime("%Y-%m-%d")
    return df


def indicators(df):
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    out = pd.DataFrame({"date": df["date"]})
    out["sma20"] = ta.trend.SMAIndicator(c, 20).sma_indicator()
    out["ema12"] = ta.trend.EMAIndicator(c, 12).ema_indicator()
    out["ema26"] = ta.trend.EMAIndicator(c, 26).ema_indicator()
    m = ta.trend.MACD(c, window_slow=26, window_fast=12, window_sign=9)
    out["macd"], out["macd_signal"], out["macd_hist"] = m.macd(), m.macd_signal(), m.macd_diff()
    out["rsi14"] = ta.momentum.RSIIndicator(c, 14).rsi()
    bb = ta.volatility.BollingerBands(c, window=20, window_dev=2)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = bb.bollinger_hband(), bb.bollinger_mavg(), bb.bollinger_lband()
    out["bb_pctb"] = bb.bollinger_pband()
    atr = ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range()
    atr[: 13] = float("nan")  # ta reports 0 during warm-up; we report nothing
    out["atr14"] = atr
    # Not in `ta`; plain pandas with the definitions in src/indicators.rs.
    r1 = c.pct_change(1, fill_method=None)
    out["ret1"], out["ret5"], out["ret20"] = r1, c.pct_change(5, fill_method=None), c.pct_change(20, fill_method=None)
    out["vol20"] = r1.rolling(20, min_periods=20).std(ddof=1)
    out["volz20"] = (v - v.rolling(20, min_periods=20).mean()) / v.rolling(20, min_periods=20).std(ddof=0)
    return out


def window(symbol, start=None, end=None, head=None):
    df = bars(symbol)
    if start:
        df = df[(df["date"] >= start) & (df["date"] <= end)].reset_index(drop=True)
    if head:
        df = df.head(head).reset_index(drop=True)
    return indicators(df)


CASES = {
    "ibm-warmup": ("IBM", None, None, 300),
    "ibm-2001-closure": ("IBM", "2001-06-01", "2001-12-31", None),
    "aapl-2005-split": ("AAPL", "2004-10-01", "2005-06-30", None),
    "pdco-repaired": ("PDCO", "2009-08-21", "2010-08-20", None),
}

if __name__ == "__main__":
    for name, (symbol, start, end, head) in CASES.items():
        out = window(symbol, start, end, head)
        path = HERE / f"{name}.csv"
        out.to_csv(path, index=False, float_format="%.12g", na_rep="")
        print(f"{path.name}: {symbol} {len(out)} bars")

"""The model's features, with exactly the definitions data-service uses
(components/data-service/market-data/src/features.rs; indicators as in the
`ta` library). A Rust test compares both on the same bars
(tests/golden/features-*.csv, written by `python3 features.py`)."""
from pathlib import Path

import numpy as np
import pandas as pd
import ta

FEATURE_NAMES = [
    "ret_1",
    "ret_5",
    "ret_20",
    "rsi_14",
    "macd_hist_rel",
    "bb_percent_b",
    "atr_14_rel",
    "volatility_20",
    "volume_z_20",
    "close_sma_20_rel",
]


def features(df: pd.DataFrame) -> pd.DataFrame:
    """One row per bar; NaN while any feature is warming up."""
    c, h, lo, v = df["close"], df["high"], df["low"], df["volume"]
    r1 = c.pct_change(1, fill_method=None)
    macd = ta.trend.MACD(c, window_slow=26, window_fast=12, window_sign=9)
    bb = ta.volatility.BollingerBands(c, window=20, window_dev=2)
    atr = ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range()
    atr[:13] = np.nan  # ta reports 0 during warm-up
    sma = c.rolling(20, min_periods=20).mean()
    out = pd.DataFrame(
        {
            "ret_1": r1,
            "ret_5": c.pct_change(5, fill_method=None),
            "ret_20": c.pct_change(20, fill_method=None),
            "rsi_14": ta.momentum.RSIIndicator(c, 14).rsi() / 100.0,
            "macd_hist_rel": macd.macd_diff() / c,
            "bb_percent_b": bb.bollinger_pband(),
            "atr_14_rel": atr / c,
            "volatility_20": r1.rolling(20, min_periods=20).std(ddof=1),
            "volume_z_20": (v - v.rolling(20, min_periods=20).mean()) / v.rolling(20, min_periods=20).std(ddof=0),
            "close_sma_20_rel": c / sma - 1.0,
        },
        index=df.index,
    )
    # A row is usable only when every feature is out of warm-up (as in Rust).
    out[out.isna().any(axis=1)] = np.nan
    return out[FEATURE_NAMES]


if __name__ == "__main__":
    import history

    golden = Path(__file__).resolve().parent.parent / "components/data-service/market-data/tests/golden"
    for symbol, head in (("MSFT", 400), ("XOM", None)):
        df = history.bars(symbol)
        if head:
            df = df.head(head)
        out = features(df)
        out.insert(0, "date", df["date"].dt.strftime("%Y-%m-%d"))
        path = golden / f"features-{symbol.lower()}.csv"
        out.to_csv(path, index=False, float_format="%.12g", na_rep="")
        print(f"{path.name}: {len(out)} rows")

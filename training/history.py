"""Read the bundled history (components/data-service/market-data/data/history.bin),
the same file data-service embeds. Format: see src/history.rs."""
import struct
from pathlib import Path

import pandas as pd

HISTORY = Path(__file__).resolve().parent.parent / "components/data-service/market-data/data/history.bin"


def _table(data: bytes):
    assert data[:8] == b"DTBARS1\0", "not a DTBARS1 file"
    _version, nsym, _nbars = struct.unpack_from("<III", data, 8)
    pos, table = 20, {}
    for _ in range(nsym):
        n = data[pos]
        name = data[pos + 1 : pos + 1 + n].decode()
        first, count, flags = struct.unpack_from("<IIB", data, pos + 1 + n)
        table[name] = (first, count, flags)
        pos += 1 + n + 9
    return table, pos


def symbols(path: Path = HISTORY):
    table, _ = _table(path.read_bytes())
    return sorted(table)


def bars(symbol: str, path: Path = HISTORY) -> pd.DataFrame:
    """Daily bars of `symbol`, oldest first: date, open, high, low, close, volume."""
    data = path.read_bytes()
    table, offset = _table(data)
    first, count, _ = table[symbol]
    rows = [struct.unpack_from("<iIIIIQ", data, offset + (first + i) * 28) for i in range(count)]
    df = pd.DataFrame(rows, columns=["day", "open", "high", "low", "close", "volume"])
    df["date"] = pd.to_datetime(df["day"], unit="D")
    for c in ("open", "high", "low", "close"):
        df[c] = df[c] / 10_000
    df["volume"] = df["volume"].astype(float)
    return df.drop(columns="day")

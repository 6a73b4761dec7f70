#!/usr/bin/env python3
"""onnxruntime's figures for the ml-service benchmark (runtime-host/examples/ml_bench.rs).

Same model files and inputs as the Rust side: per version, the session load
time, the latency of one row and of a batch of 100 (the golden inputs tiled),
on one thread — for the shipped file and for skl2onnx's tree-op form of the
same fit (onnxruntime's fastest). Prints one JSON object per version and form.
Run: python3 bench_onnxruntime.py <models dir>
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def mean_seconds(run, n):
    run()
    started = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - started) / n


def main(models: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    for version, form, file in [(v, f, p) for v in ("v1", "v2")
                                for f, p in (("shipped", "model.onnx"), ("tree-op", "reference/tree-op.onnx"))]:
        raw = (models / version / file).read_bytes()
        inputs = np.array(json.loads((models / version / "golden.json").read_text())["inputs"], np.float32)
        started = time.perf_counter()
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
        load = time.perf_counter() - started
        one = inputs[:1]
        batch = np.resize(inputs, (100, inputs.shape[1]))
        row = mean_seconds(lambda: session.run(["probabilities"], {"features": one}), 2000)
        hundred = mean_seconds(lambda: session.run(["probabilities"], {"features": batch}), 300)
        print(json.dumps({"version": version, "form": form, "onnxruntime": ort.__version__, "load_ms": load * 1e3,
                          "row_us": row * 1e6, "batch100_us": hundred * 1e6}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

#!/usr/bin/env python3
"""Train, evaluate and export the ml-service models (v1 and v2).

Data: the bundled daily history of the five long-history US large caps
(AAPL, IBM, MSFT, GOOG, FB; 2000-03..2013-03). Features: features.py, the
same definitions data-service serves. Label: 1 if the next session's close
is above this close, else 0.

Evaluation is walk-forward with an expanding window: for each test year Y in
2005..2012 (and 2013 to March), fit on every row dated before Y, predict Y.
Reported per fold and pooled: accuracy, AUC, Brier score, a 10-bin
calibration table; against always-up and previous-direction baselines and
each single learner; with a one-sided binomial test of the ensemble's hits
against the always-up hit rate of the same rows. Nothing is tuned on the test
folds: the hyper-parameters below were fixed before the first evaluation.

Exports, per version, to components/ml-service/models/<version>/:
model.onnx (fit on all rows), metadata.json (features, window, label,
evaluation, sha256), golden.json (inputs and onnxruntime outputs for tests).

Run: pip install -r requirements.txt && python3 train.py
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from scipy.stats import binomtest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import history
from features import FEATURE_NAMES, features

SYMBOLS = ["AAPL", "IBM", "MSFT", "GOOG", "FB"]
TEST_YEARS = list(range(2005, 2014))
SEED = 7
MODELS_DIR = Path(__file__).resolve().parent.parent / "components/ml-service/models"


def dataset() -> pd.DataFrame:
    frames = []
    for symbol in SYMBOLS:
        bars = history.bars(symbol)
        x = features(bars)
        frame = x.copy()
        frame["symbol"] = symbol
        frame["date"] = bars["date"]
        frame["prev_up"] = (bars["close"].diff() > 0).astype(float)
        frame["label"] = (bars["close"].shift(-1) > bars["close"]).astype(float)
        frame.loc[bars["close"].shift(-1).isna(), "label"] = np.nan
        frames.append(frame.dropna())
    return pd.concat(frames).sort_values(["date", "symbol"]).reset_index(drop=True)


def learners(version: str):
    scaled = lambda model: make_pipeline(StandardScaler(), model)  # noqa: E731
    if version == "v1":
        return [
            ("gbt", GradientBoostingClassifier(n_estimators=60, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=SEED)),
            ("logreg", scaled(LogisticRegression(C=0.1, max_iter=1000))),
            ("mlp", scaled(MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=400, early_stopping=True, random_state=SEED))),
        ]
    if version == "v2":
        return [
            ("forest", RandomForestClassifier(n_estimators=40, max_depth=4, min_samples_leaf=50, random_state=SEED)),
            ("logreg", scaled(LogisticRegression(C=1.0, max_iter=1000))),
            ("mlp", scaled(MLPClassifier(hidden_layer_sizes=(32, 8), alpha=1e-2, max_iter=400, early_stopping=True, random_state=SEED))),
        ]
    raise ValueError(version)


def ensemble(version: str) -> VotingClassifier:
    return VotingClassifier(learners(version), voting="soft", flatten_transform=False)


def calibration(y, p, bins=10):
    edges = np.linspace(0, 1, bins + 1)
    table = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if mask.sum():
            table.append({"bin": [round(lo, 2), round(hi, 2)], "n": int(mask.sum()),
                          "mean_predicted": float(p[mask].mean()), "observed_up": float(y[mask].mean())})
    return table


def scores(y, p):
    out = {"n": int(len(y)), "accuracy": float(accuracy_score(y, p >= 0.5)), "brier": float(brier_score_loss(y, p))}
    out["auc"] = float(roc_auc_score(y, p)) if len(set(y)) > 1 else None
    return out


def evaluate(data: pd.DataFrame, version: str):
    folds, pooled = [], {"y": [], "ensemble": [], "always_up": [], "prev": []}
    names = [name for name, _ in learners(version)]
    for name in names:
        pooled[name] = []
    for year in TEST_YEARS:
        train = data[data["date"].dt.year < year]
        test = data[data["date"].dt.year == year]
        x_train, y_train = train[FEATURE_NAMES].to_numpy(np.float32), train["label"].to_numpy()
        x_test, y_test = test[FEATURE_NAMES].to_numpy(np.float32), test["label"].to_numpy()
        model = ensemble(version).fit(x_train, y_train)
        p = model.predict_proba(x_test)[:, 1]
        singles = {name: est.predict_proba(x_test)[:, 1] for name, est in zip(names, model.estimators_)}
        up_rate = float(y_train.mean())
        always_up = np.full(len(y_test), up_rate)
        prev = test["prev_up"].to_numpy()
        fold = {"test_year": year, "train_rows": int(len(train)), "ensemble": scores(y_test, p),
                "always_up": {"accuracy": float((y_test == 1).mean()), "n": int(len(y_test))},
                "previous_direction": {"accuracy": float((y_test == prev).mean())},
                "learners": {n: scores(y_test, q) for n, q in singles.items()},
                "calibration": calibration(y_test, p)}
        folds.append(fold)
        pooled["y"].append(y_test); pooled["ensemble"].append(p); pooled["always_up"].append(always_up); pooled["prev"].append(prev)
        for n, q in singles.items():
            pooled[n].append(q)
        print(f"{version} {year}: acc {fold['ensemble']['accuracy']:.4f} auc {fold['ensemble']['auc']:.4f} "
              f"always-up {fold['always_up']['accuracy']:.4f} prev {fold['previous_direction']['accuracy']:.4f}")
    y = np.concatenate(pooled["y"])
    p = np.concatenate(pooled["ensemble"])
    hits = int(((p >= 0.5) == (y == 1)).sum())
    always_up_rate = float((y == 1).mean())
    summary = {
        "ensemble": scores(y, p),
        "always_up": {"accuracy": always_up_rate},
        "previous_direction": {"accuracy": float((y == np.concatenate(pooled["prev"])).mean())},
        "learners": {n: scores(y, np.concatenate(pooled[n])) for n in names},
        "calibration": calibration(y, p),
        "significance": {
            "test": "one-sided binomial: ensemble hits vs the always-up hit rate on the same rows",
            "hits": hits, "n": int(len(y)), "p0": always_up_rate,
            "p_value": float(binomtest(hits, len(y), always_up_rate, alternative="greater").pvalue),
        },
    }
    return folds, summary


def fold_gbt_base_values(model: onnx.ModelProto) -> int:
    """tract rejects a TreeEnsembleClassifier whose `base_values` has one entry (binary
    GradientBoosting). Every row reaches exactly one leaf of tree 0, so adding the base
    value to tree 0's leaf weights and dropping the attribute gives the same scores."""
    folded = 0
    for node in model.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "base_values" not in attrs or len(attrs["base_values"].floats) != 1:
            continue
        base = attrs["base_values"].floats[0]
        tree_ids = list(attrs["class_treeids"].ints)
        weights = attrs["class_weights"].floats
        for i, tree in enumerate(tree_ids):
            if tree == 0:
                weights[i] += base
        node.attribute.remove(attrs["base_values"])
        folded += 1
    return folded


def export(version: str, data: pd.DataFrame, folds, summary):
    x = data[FEATURE_NAMES].to_numpy(np.float32)
    y = data["label"].to_numpy()
    model = ensemble(version).fit(x, y)
    onx = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURE_NAMES)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={VotingClassifier: {"zipmap": False}, StandardScaler: {"div": "div"}},
    )
    folded = fold_gbt_base_values(onx)
    out_dir = MODELS_DIR / version
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = onx.SerializeToString()
    (out_dir / "model.onnx").write_bytes(raw)

    # The exported graph must reproduce scikit-learn; its outputs become the golden file.
    session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED)
    sample = x[rng.choice(len(x), size=32, replace=False)]
    outputs = session.run(None, {"features": sample})
    probabilities = next(o for o in outputs if o.ndim == 2)
    drift = float(np.abs(probabilities[:, 1] - model.predict_proba(sample)[:, 1]).max())
    assert drift < 1e-5, f"ONNX differs from scikit-learn by {drift}"
    (out_dir / "golden.json").write_text(json.dumps({
        "inputs": sample.astype(float).tolist(),
        "probability_up": probabilities[:, 1].astype(float).tolist(),
        "max_difference_from_sklearn": drift,
    }, indent=1))

    metadata = {
        "version": version,
        "members": [name for name, _ in learners(version)],
        "voting": "soft",
        "features": FEATURE_NAMES,
        "input": {"name": "features", "shape": [None, len(FEATURE_NAMES)], "dtype": "float32"},
        "label": "1 if the next session's close is above this close, else 0",
        "symbols": SYMBOLS,
        "training_window": [str(data["date"].min().date()), str(data["date"].max().date())],
        "training_rows": int(len(data)),
        "evaluation": {"method": "walk-forward, expanding window, test years " + f"{TEST_YEARS[0]}..{TEST_YEARS[-1]}",
                       "pooled": summary, "folds": folds},
        "onnx": {"opsets": {"": 17, "ai.onnx.ml": 3}, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
                 "gbt_base_values_folded": folded},
    }
    (out_dir / "metadata.json").write_text(json.dumps(metadata, indent=1))
    print(f"{version}: {len(raw)} bytes, sha256 {metadata['onnx']['sha256'][:16]}…, onnx vs sklearn {drift:.2e}")


if __name__ == "__main__":
    data = dataset()
    print(f"{len(data)} rows, {data['date'].min().date()}..{data['date'].max().date()}, up rate {data['label'].mean():.4f}")
    for version in ("v1", "v2"):
        folds, summary = evaluate(data, version)
        e = summary["ensemble"]
        print(f"{version} pooled: acc {e['accuracy']:.4f} auc {e['auc']:.4f} brier {e['brier']:.4f}; "
              f"always-up {summary['always_up']['accuracy']:.4f}; prev {summary['previous_direction']['accuracy']:.4f}; "
              f"p {summary['significance']['p_value']:.3f}")
        export(version, data, folds, summary)

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
model.onnx (fit on all rows), walk-forward/<year>.onnx (each fold's model, fit
on the rows before <year>: ml-service serves a replayed date with the model that
existed then, never one trained on that date's future), metadata.json
(features, window, label, evaluation, snapshots, sha256), golden.json (inputs
and onnxruntime outputs, ensemble and members, for tests).

The ONNX graphs are shaped for tract (see `to_onnx`): ZipMap off, the scaler as
Sub/Div, GBT base values folded into tree 0, each tree ensemble rewritten as
plain tensor ops (tensorize_tree_ensembles), and each member's probabilities as
a graph output. reference/tree-op.onnx is skl2onnx's own form of the full model,
kept only as the onnxruntime benchmark's reference.

Run: pip install -r requirements.txt && python3 train.py
"""
import hashlib
import os
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
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
OPSETS = {"": 17, "ai.onnx.ml": 3}
MODELS_DIR = Path(os.environ.get("MODELS_DIR", Path(__file__).resolve().parent.parent / "components/ml-service/models"))


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
    """Walk-forward evaluation; also exports each fold's model as a snapshot."""
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
        snapshot = export_snapshot(version, year, model, train, x_test, p)
        singles = {name: est.predict_proba(x_test)[:, 1] for name, est in zip(names, model.estimators_)}
        up_rate = float(y_train.mean())
        always_up = np.full(len(y_test), up_rate)
        prev = test["prev_up"].to_numpy()
        fold = {"test_year": year, "train_rows": int(len(train)), "ensemble": scores(y_test, p),
                "always_up": {"accuracy": float((y_test == 1).mean()), "n": int(len(y_test))},
                "previous_direction": {"accuracy": float((y_test == prev).mean())},
                "learners": {n: scores(y_test, q) for n, q in singles.items()},
                "calibration": calibration(y_test, p), "snapshot": snapshot}
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


def tensorize_tree_ensembles(model: onnx.ModelProto) -> int:
    """Replace every TreeEnsembleClassifier by plain tensor ops that walk all
    trees of all rows at once (hummingbird's "tree traversal" form).

    Why: tract 0.23's tree op builds an error value at every leaf it reaches and
    finds a leaf's weights by skipping along the ensemble's whole leaf table, so
    a row costs trees x leaves. In this form a batch of 100 runs ~5x faster in
    tract than the tree op split into small nodes, and ~25x faster than as is.

    Nodes of all trees are laid out in flat tables (tree t's node m at t * M + m).
    Each row starts at every tree's root; one level of descent is
    `x = GatherElements(features, feature[idx])`, `idx = Where(x <= threshold[idx],
    left[idx], right[idx])`; leaves point to themselves, so depth-many levels
    reach every leaf. The class-1 leaf weights are gathered and summed per row,
    then post-transformed as the original node was. Branches are BRANCH_LEQ; NaN
    never reaches the graph (ml-service rejects non-finite features)."""
    nodes, replaced, extra = [], 0, []
    for node in model.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        post = attrs.get("post_transform", b"NONE")
        if post not in (b"NONE", b"LOGISTIC") or "base_values" in attrs:
            raise ValueError(f"cannot tensorize a tree ensemble with {post} and base values")
        if set(attrs["nodes_modes"]) - {b"BRANCH_LEQ", b"LEAF"} or any(attrs["nodes_missing_value_tracks_true"]):
            raise ValueError("only BRANCH_LEQ trees without missing-value tracking")
        trees = sorted(set(attrs["nodes_treeids"]))
        width = max(attrs["nodes_nodeids"]) + 1
        size = len(trees) * width
        feature = np.zeros(size, np.int64)
        threshold = np.zeros(size, np.float32)
        left = np.arange(size, dtype=np.int64)   # leaves (and padding) point to themselves
        right = np.arange(size, dtype=np.int64)
        value = np.zeros(size, np.float32)
        position = {tree: i for i, tree in enumerate(trees)}
        depth = {}
        for i, tree in enumerate(attrs["nodes_treeids"]):
            at = position[tree] * width + attrs["nodes_nodeids"][i]
            if attrs["nodes_modes"][i] == b"BRANCH_LEQ":
                feature[at] = attrs["nodes_featureids"][i]
                threshold[at] = attrs["nodes_values"][i]
                left[at] = position[tree] * width + attrs["nodes_truenodeids"][i]
                right[at] = position[tree] * width + attrs["nodes_falsenodeids"][i]
        for i, tree in enumerate(attrs["class_treeids"]):
            if attrs["class_ids"][i] == 0 and len(attrs["classlabels_int64s"]) == 2:
                value[position[tree] * width + attrs["class_nodeids"][i]] += attrs["class_weights"][i]
            else:
                raise ValueError("binary ensembles with class-0 weights only")
        # Depth: the longest root-to-leaf path, found by walking the tables.
        levels = 0
        frontier = [position[t] * width for t in trees]
        while any(left[i] != i for i in frontier):
            frontier = [c for i in frontier for c in ({left[i], right[i]} if left[i] != i else {i})]
            levels += 1
        name = node.output[1]
        tables = {"feature": feature, "threshold": threshold, "left": left, "right": right, "value": value}
        for key, array in tables.items():
            extra.append(numpy_helper.from_array(array, f"{name}_{key}"))
        extra.append(numpy_helper.from_array(np.array([[position[t] * width for t in trees]], np.int64), f"{name}_roots"))
        x = node.input[0]
        # Every row starts at every root: [N, T].
        nodes += [
            helper.make_node("Shape", [x], [f"{name}_shape"], end=1),
            helper.make_node("Concat", [f"{name}_shape", "trav_trees"], [f"{name}_grid"], axis=0),
            helper.make_node("Expand", [f"{name}_roots", f"{name}_grid"], [f"{name}_idx0"]),
        ]
        extra.append(numpy_helper.from_array(np.array([len(trees)], np.int64), "trav_trees"))
        idx = f"{name}_idx0"
        for level in range(levels):
            at = f"{name}_l{level}"
            nodes += [
                helper.make_node("Gather", [f"{name}_feature", idx], [at + "_f"]),
                helper.make_node("Gather", [f"{name}_threshold", idx], [at + "_t"]),
                helper.make_node("GatherElements", [x, at + "_f"], [at + "_x"], axis=1),
                helper.make_node("LessOrEqual", [at + "_x", at + "_t"], [at + "_go_left"]),
                helper.make_node("Gather", [f"{name}_left", idx], [at + "_l"]),
                helper.make_node("Gather", [f"{name}_right", idx], [at + "_r"]),
                helper.make_node("Where", [at + "_go_left", at + "_l", at + "_r"], [at + "_idx"]),
            ]
            idx = at + "_idx"
        up = name + "_up"
        nodes += [
            helper.make_node("Gather", [f"{name}_value", idx], [name + "_leaves"]),
            helper.make_node("ReduceSum", [name + "_leaves", "trav_axis"], [up + ("_raw" if post == b"LOGISTIC" else "")], keepdims=1),
        ]
        if post == b"LOGISTIC":
            nodes.append(helper.make_node("Sigmoid", [up + "_raw"], [up]))
        nodes += [
            helper.make_node("Sub", ["split_unit", up], [name + "_down"]),
            helper.make_node("Concat", [name + "_down", up], [name], axis=1),
        ]
        replaced += 1
    if replaced:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        names = {t.name for t in model.graph.initializer}
        extra += [numpy_helper.from_array(np.array([1], np.int64), "trav_axis"),
                  helper.make_tensor("split_unit", TensorProto.FLOAT, [1, 1], [1.0])]
        seen = set()
        for t in extra:
            if t.name not in names and t.name not in seen:
                model.graph.initializer.append(t)
                seen.add(t.name)
    return replaced


def expose_members(model: onnx.ModelProto, names) -> None:
    """Each member's [N, 2] probabilities as a graph output `member_<name>`: the
    tensors skl2onnx weights (Mul) before the soft vote (Sum), in member order."""
    producers = {out: node for node in model.graph.node for out in node.output}
    vote = next(n for n in model.graph.node if n.op_type == "Sum" and n.output[0] == "probabilities")
    for name, weighted in zip(names, vote.input, strict=True):
        member = producers[weighted].input[0]
        model.graph.node.append(helper.make_node("Identity", [member], [f"member_{name}"]))
        model.graph.output.append(helper.make_tensor_value_info(f"member_{name}", TensorProto.FLOAT, [None, 2]))


def to_onnx(version: str, model: VotingClassifier, tree_form: str = "traversal") -> bytes:
    onx = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, len(FEATURE_NAMES)]))],
        target_opset=OPSETS,
        options={VotingClassifier: {"zipmap": False}, StandardScaler: {"div": "div"}},
    )
    if tree_form == "tree-op":
        # skl2onnx's own form (what onnxruntime runs fastest): the benchmark's reference.
        expose_members(onx, [name for name, _ in learners(version)])
        return onx.SerializeToString()
    fold_gbt_base_values(onx)
    tensorize_tree_ensembles(onx)
    expose_members(onx, [name for name, _ in learners(version)])
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def run_onnx(raw: bytes, x: np.ndarray):
    """onnxruntime's ensemble and member probabilities of class 1."""
    session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"features": x})))
    members = {n.removeprefix("member_"): v[:, 1] for n, v in outputs.items() if n.startswith("member_")}
    return outputs["probabilities"][:, 1], members


def export_snapshot(version: str, year: int, model: VotingClassifier, train: pd.DataFrame, x_test, p_sklearn):
    """A fold's model, served for replayed dates in its test year."""
    raw = to_onnx(version, model)
    p, _ = run_onnx(raw, x_test)
    drift = float(np.abs(p - p_sklearn).max())
    assert drift < 1e-5, f"{version} {year}: ONNX differs from scikit-learn by {drift}"
    path = MODELS_DIR / version / "walk-forward" / f"{year}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return {"serves_from": f"{year}-01-01", "file": str(path.relative_to(MODELS_DIR / version)),
            "training_window": [str(train["date"].min().date()), str(train["date"].max().date())],
            "training_rows": int(len(train)), "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
            "max_difference_from_sklearn": drift}


def export(version: str, data: pd.DataFrame, folds, summary):
    x = data[FEATURE_NAMES].to_numpy(np.float32)
    y = data["label"].to_numpy()
    model = ensemble(version).fit(x, y)
    raw = to_onnx(version, model)
    out_dir = MODELS_DIR / version
    (out_dir / "model.onnx").write_bytes(raw)
    # Not served: the same fit in skl2onnx's tree-op form, for the onnxruntime benchmark.
    (out_dir / "reference").mkdir(exist_ok=True)
    (out_dir / "reference" / "tree-op.onnx").write_bytes(to_onnx(version, model, "tree-op"))

    # The exported graph must reproduce scikit-learn; its outputs become the golden file.
    rng = np.random.default_rng(SEED)
    sample = x[rng.choice(len(x), size=32, replace=False)]
    probability_up, members = run_onnx(raw, sample)
    drift = float(np.abs(probability_up - model.predict_proba(sample)[:, 1]).max())
    assert drift < 1e-5, f"ONNX differs from scikit-learn by {drift}"
    (out_dir / "golden.json").write_text(json.dumps({
        "inputs": sample.astype(float).tolist(),
        "probability_up": probability_up.astype(float).tolist(),
        "members": {name: q.astype(float).tolist() for name, q in members.items()},
        "max_difference_from_sklearn": drift,
    }, indent=1))
    # The full model serves every date after the last label it was fit on.
    last_label = data.groupby("symbol")["date"].max().max() + pd.Timedelta(days=1)

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
        "outputs": {"probabilities": "probabilities",
                    "members": {name: f"member_{name}" for name, _ in learners(version)}},
        "snapshots": [fold["snapshot"] for fold in folds]
        + [{"serves_from": str(last_label.date()), "file": "model.onnx",
            "training_window": [str(data["date"].min().date()), str(data["date"].max().date())],
            "training_rows": int(len(data)), "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
            "max_difference_from_sklearn": drift}],
        "evaluation": {"method": "walk-forward, expanding window, test years " + f"{TEST_YEARS[0]}..{TEST_YEARS[-1]}",
                       "pooled": summary, "folds": folds},
        "onnx": {"opsets": OPSETS, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw),
                 "tree_form": "traversal"},
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

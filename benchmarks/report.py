"""What the report adds to a trained comparison: 4 heads x 3 seeds on the synthetic dataset (3,000 records).

The report (``utils.experiment.report``) adds three costs to training the heads:

- per result row, the bootstrap intervals, ECE and Brier score (``result_row``);
- per fusion head, the test predictions with each modality replaced (``fit_head`` keeps them), and the
  validation logits;
- the report itself: Shapley subsets trained (early fusion on one modality reuses the single-modality
  rows; late fusion on one modality is trained), one vectorised bootstrap over every model, seed, stand-in
  and subset, temperature scaling, subgroups (the synthetic shape and background columns), four figures,
  and saving.

The bootstrap is also measured against the naive way, a Python loop over resamples and models calling
scikit-learn's ``f1_score`` and ``roc_auc_score`` on resampled rows (timed on ``--naive-resamples`` resamples
and scaled to the same count).

    python benchmarks/report.py                # embeddings are extracted once and cached (about 2 minutes)
    python benchmarks/report.py --repeats 1    # a smoke run

Last lines: ``report_added_s: <seconds>`` and ``bootstrap_speedup_vs_loop: <ratio>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_argument, describe_device, median_time  # noqa: E402  benchmarks/_timing.py


def naive_bootstrap(y, probas, n_resamples: int, seed: int = 0) -> float:
    """Seconds for the loop way: per resample (stratified), per model, scikit-learn metrics on the drawn rows."""
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(y == c) for c in np.unique(y)]
    t0 = time.perf_counter()
    for _ in range(n_resamples):
        idx = np.concatenate([rng.choice(s, size=len(s)) for s in strata])
        for p in probas:
            f1_score(y[idx], p[idx].argmax(1), average="macro")
            roc_auc_score(y[idx], p[idx], multi_class="ovr", average="macro")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000, help="synthetic records")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--text", default="minilm-offline")
    p.add_argument("--image", default="effnet-lite0")
    p.add_argument("--repeats", type=int, default=3, help="report runs timed (median reported)")
    p.add_argument("--naive-resamples", type=int, default=50, help="resamples the naive loop is timed on")
    add_device_argument(p)
    a = p.parse_args(argv)

    import torch

    dev = describe_device(a.device)

    from utils import experiment as ex
    from utils.evaluation import bootstrap_intervals, brier, ece, label_strata, ScoreTable
    from utils.experiment.heads import missing_modality_proba
    from utils.features import stack
    from utils.models.fusion import build_head
    from utils.train import predict_logits

    ex.setup_logging("WARNING")
    ds = ex.load_dataset("synthetic", n=a.n)
    emb = ex.extract_embeddings(ds, {"text": a.text, "image": a.image}, show_progress=False, device=str(dev))
    t0 = time.perf_counter()
    rows = ex.train_heads(ds, emb, ex.DEFAULT_HEADS, epochs=a.epochs, seeds=list(range(a.seeds)), show_progress=False,
                          device=str(dev))
    train_s = time.perf_counter() - t0
    recipe = rows.recipe
    y_test = recipe.y[recipe.parts["test"]]
    print(f"dataset: {ds.spec.key}, {len(y_test)} test rows; {len(rows)} rows ({len(ex.DEFAULT_HEADS)} heads x "
          f"{a.seeds} seeds); extractors {emb.extractors}; threads {torch.get_num_threads()}, cores {os.cpu_count()}")

    # 1. what result_row adds per row: intervals, ECE, Brier
    def row_extras():
        for o in rows.outputs:
            bootstrap_intervals(y_test, o.test_proba, ds.spec.task)
            ece(y_test, o.test_proba, ds.spec.task)
            brier(y_test, o.test_proba, ds.spec.task)

    row_s = median_time(row_extras, a.repeats)

    # 2. what fit_head adds when it keeps outputs: validation logits, and the stand-in predictions of fusion heads
    def outputs():
        for row in rows:
            mods = row["modalities"]
            X = stack(recipe.vectors, mods)
            dims = {m: recipe.vectors[m].shape[1] for m in mods}
            head = build_head(row["model"], dims, ds.spec.num_outputs, recipe.head_config).eval()
            predict_logits(head, X[recipe.parts["val"]])
            if len(mods) > 1:
                missing_modality_proba(head, X[recipe.parts["test"]], dims, X[recipe.parts["train"]], None, ds.spec.task)

    outputs_s = median_time(outputs, a.repeats)

    # 3. the report
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        def one_report():
            rep = ex.report(rows, out_dir=tmp, name="bench", device="auto" if dev.type == "cuda" else "cpu")
            sections.append(rep.seconds)
            return rep

        report_s = median_time(one_report, a.repeats)
        rep = one_report()
    print(rep.to_text())
    for k in sections[0]:
        print(f"report_{k}_s: {statistics.median(s[k] for s in sections):.2f}")

    # 4. the bootstrap against the loop way, on the 12 rows' probabilities (macro-F1 and ROC-AUC)
    probas = [o.test_proba for o in rows.outputs]
    table = ScoreTable(y_test, probas, ds.spec.task)
    strata = label_strata(y_test, ds.spec.task)
    vec_s = median_time(lambda: table.samples(strata, 1000, 0, metrics=("macro_f1", "roc_auc")), a.repeats)
    naive_s = naive_bootstrap(y_test, probas, a.naive_resamples) * (1000 / a.naive_resamples)

    added = row_s + outputs_s + report_s
    print(f"train_heads_s: {train_s:.2f}")
    print(f"row_intervals_s: {row_s:.2f}")
    print(f"kept_outputs_s: {outputs_s:.2f}")
    print(f"report_s: {report_s:.2f}")
    print(f"bootstrap_vectorised_s: {vec_s:.3f}")
    print(f"bootstrap_loop_s: {naive_s:.1f}")
    print(f"report_added_s: {added:.2f}")
    print(f"bootstrap_speedup_vs_loop: {naive_s / vec_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train / val / test splits: stratified by label, grouped by patient/lesion/place where needed."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import pandas as pd


def _strat_key(labels: Sequence) -> np.ndarray:
    # multilabel rows stratify on their first label (a cheap, common approximation)
    out = []
    for lab in labels:
        if isinstance(lab, (list, tuple, np.ndarray)):
            out.append(str(lab[0]) if len(lab) else "")
        else:
            out.append(str(lab))
    return np.asarray(out)


def assign_splits(
    labels: Sequence,
    fractions: Tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    groups: Optional[Sequence] = None,
) -> np.ndarray:
    """A ``split`` value (train/val/test) per row.

    Stratified by label; when ``groups`` is given, every group lands in exactly one split (rows of one
    patient never sit in two splits), stratifying on the group's most common label.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}")
    keys = _strat_key(labels)
    n = len(keys)
    rng = np.random.default_rng(seed)
    if groups is None:
        unit_of_row = np.arange(n)
        unit_keys = keys
    else:
        g = pd.Series(np.asarray(groups, dtype=object).astype(str))
        codes, uniques = pd.factorize(g)
        unit_of_row = codes
        unit_keys = (
            pd.DataFrame({"u": codes, "k": keys}).groupby("u")["k"].agg(lambda s: s.value_counts().index[0])
        ).reindex(range(len(uniques))).to_numpy()
    unit_split = np.empty(len(unit_keys), dtype=object)
    for key in np.unique(unit_keys):
        units = np.flatnonzero(unit_keys == key)
        rng.shuffle(units)
        m = len(units)
        n_test = int(round(fractions[2] * m))
        n_val = int(round(fractions[1] * m))
        if m >= 3:  # every class gets at least one unit in val and test when it can
            n_test = max(n_test, 1) if fractions[2] > 0 else 0
            n_val = max(n_val, 1) if fractions[1] > 0 else 0
        unit_split[units[:n_test]] = "test"
        unit_split[units[n_test : n_test + n_val]] = "val"
        unit_split[units[n_test + n_val :]] = "train"
    return unit_split[unit_of_row].astype(str)


def carve_validation(
    df: pd.DataFrame, fraction: float = 0.1, seed: int = 0, group_column: Optional[str] = None
) -> pd.DataFrame:
    """Move a stratified (and grouped, if ``group_column``) ``fraction`` of the train rows to ``val``.

    For datasets published with train/test only. Returns a copy.
    """
    df = df.copy()
    train = df.index[df["split"] == "train"]
    groups = df.loc[train, group_column].to_numpy() if group_column else None
    sub = assign_splits(df.loc[train, "label"].tolist(), (1 - fraction, fraction, 0.0), seed, groups)
    df.loc[train, "split"] = sub
    return df

"""Cut loaded texts into the four tables a classification run works from: pool, seed, dev and test.

Pure and deterministic for a given seed. Texts are cleaned (whitespace, length cap), duplicates dropped, and
any text of the test split removed from the others, so no score is inflated by a test text seen in training.
The gold-labelled sets are drawn stratified, so a 100-example seed holds every class in its usual share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from protege.core.errors import UserError
from protege.data.packaged import Splits, stratified_fraction


@dataclass(frozen=True)
class SplitSizes:
    seed: int = 0
    dev: int = 0
    test: int | None = None  # None: all of the test split
    pool: int | None = None  # None: everything left
    test_fraction: float = 0.2  # share of train held out as test when the source has no test split


def clean(frame: pd.DataFrame, max_chars: int) -> pd.DataFrame:
    text = frame["text"].astype(str).str.split().str.join(" ").str.slice(0, max_chars)
    out = frame.assign(text=text)
    out = out[out["text"].str.len() > 0]
    return out.drop_duplicates("text").reset_index(drop=True)


def stratified_take(labels: pd.Series, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``n`` rows, each class represented in proportion (largest remainders), in random order."""
    if n >= len(labels):
        return rng.permutation(len(labels))
    if labels.isna().all():
        return rng.permutation(len(labels))[:n]
    keys = labels.astype(str).to_numpy()
    classes, counts = np.unique(keys, return_counts=True)
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    for c in np.argsort(-(quota - take), kind="stable")[: n - take.sum()]:
        take[c] += 1
    chosen = [rng.permutation(np.flatnonzero(keys == c))[:k] for c, k in zip(classes, take)]
    return rng.permutation(np.concatenate(chosen))


def _refuse(what: str, wanted: int, have: int, fix: str) -> UserError:
    return UserError(f"data.{what} = {wanted} but only {have} texts are available for it; {fix}. Sizes are "
                     "taken as given or refused, never changed silently.", code="size_refused")


def split(splits: Splits, sizes: SplitSizes, *, seed: int, max_chars: int) -> dict[str, pd.DataFrame]:
    """Tables ``pool``, ``seed``, ``dev``, ``test`` (columns ``text``, ``label``) from a source's splits.

    Every size given is honoured exactly or refused with an error naming the key: ``test`` rows are drawn from
    the labelled texts only (exactly ``sizes.test`` of them, or ``test_fraction`` of them when no size is given
    and the source has no test split), then ``seed`` and ``dev`` from the remaining labelled texts; the pool is
    everything else (labelled or not), cut to ``sizes.pool``.
    """
    rng = np.random.default_rng(seed)
    train = clean(splits["train"], max_chars)
    if "test" in splits:
        test = clean(splits["test"], max_chars)
        test = test[test["label"].notna()].reset_index(drop=True)
        if sizes.test is not None and sizes.test > len(test):
            raise _refuse("test_size", sizes.test, len(test), "the source's test split has no more labelled texts: "
                          "lower test_size, or leave it unset to use them all")
    else:
        labelled = train["label"].notna().to_numpy()
        if sizes.test is not None:
            if sizes.test > int(labelled.sum()):
                raise _refuse("test_size", sizes.test, int(labelled.sum()), "lower test_size or label more texts")
            gold = np.flatnonzero(labelled)
            carve = np.zeros(len(train), dtype=bool)
            carve[gold[stratified_take(train["label"].iloc[gold].reset_index(drop=True), sizes.test, rng)]] = True
        else:
            carve = np.zeros(len(train), dtype=bool)
            gold = np.flatnonzero(labelled)
            if len(gold):
                carve[gold] = stratified_fraction(train["label"].iloc[gold].astype(str).reset_index(drop=True),
                                                  sizes.test_fraction, seed)
        train, test = train[~carve].reset_index(drop=True), train[carve].reset_index(drop=True)
    train = train[~train["text"].isin(set(test["text"]))].reset_index(drop=True)
    if sizes.test is not None and sizes.test < len(test):
        test = test.iloc[np.sort(stratified_take(test["label"], sizes.test, rng))].reset_index(drop=True)

    labelled = train["label"].notna()
    wanted = sizes.seed + sizes.dev
    if wanted > int(labelled.sum()):
        raise _refuse("seed_size + dev_size", wanted, int(labelled.sum()),
                      "lower them, or label more texts (the test texts are drawn from the labelled ones first)")
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    gold = train[train["label"].notna()]
    seed_index = gold.index.to_numpy()[stratified_take(gold["label"], sizes.seed, rng)]
    rest = gold.drop(index=seed_index)
    dev_index = rest.index.to_numpy()[stratified_take(rest["label"], sizes.dev, rng)]
    gold_index = np.concatenate([seed_index, dev_index])
    pool = train.drop(index=gold_index)
    if sizes.pool is not None:
        if sizes.pool > len(pool):
            raise _refuse("pool_size", sizes.pool, len(pool), "lower pool_size, or leave it unset to use every "
                          "text not taken for test, seed and dev")
        pool = pool.iloc[: sizes.pool]
    return {
        "pool": pool.reset_index(drop=True),
        "seed": train.loc[seed_index].reset_index(drop=True),
        "dev": train.loc[dev_index].reset_index(drop=True),
        "test": test,
    }

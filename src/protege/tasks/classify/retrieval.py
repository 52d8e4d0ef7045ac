"""Which labelled pool texts to show beside a text: the pool ranked by similarity (BM25) or at random.

:class:`Ranker` is built once over the pool's texts and ranks the *whole* pool for every query, most similar
first, so a caller can walk down the ranking until it has the demonstrations it wants (feedback ICL looks for
wrong ones first). BM25 comes from the ``bm25s`` package (sparse-matrix BM25, English stop words removed);
pool texts that share no word with the query score 0 and keep their pool order after the scored ones, so the
ranking is deterministic. ``random`` ranks by a permutation drawn per query from ``seed`` and the query's
position, so the same run shows the same demonstrations again (and the ledger recognises the prompts).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from protege.core.errors import UserError

Retrieval = Literal["bm25", "random"]


class Ranker:
    """Ranks pool positions for query texts; ``exclude`` leaves one position out (a pool text's own)."""

    def __init__(self, pool: Sequence[str], how: Retrieval, *, seed: int = 0):
        if not len(pool):
            raise UserError("retrieval over an empty pool: the demonstration pool has no gold-labelled texts; "
                            "give the data stage a seed (data.seed_size) or point icl.pool_table at a gold table")
        self.size, self.how, self.seed = len(pool), how, seed
        self._index = None
        if how == "bm25":
            import bm25s

            self._bm25s = bm25s
            self._index = bm25s.BM25()
            self._index.index(self._tokens(pool), show_progress=False)

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        # Plain token lists (not vocabulary ids): a query's ids would index its own vocabulary, not the pool's.
        tokens = self._bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)
        return [list(t) for t in tokens]

    def rank(self, queries: Sequence[str], *, exclude: Sequence[int | None] | None = None) -> list[list[int]]:
        """For each query, every pool position (minus its excluded one), most similar first."""
        exclude = list(exclude) if exclude is not None else [None] * len(queries)
        if self.how == "random":
            orders = [np.random.default_rng([self.seed, i]).permutation(self.size) for i in range(len(queries))]
        else:
            scores = np.zeros((len(queries), self.size))
            tokens = self._tokens(queries)
            nonempty = [i for i, t in enumerate(tokens) if t]
            if nonempty:
                ids, values = self._index.retrieve([tokens[i] for i in nonempty], k=self.size, show_progress=False)
                for row, i in enumerate(nonempty):
                    scores[i, ids[row]] = values[row]
            orders = [np.argsort(-row, kind="stable") for row in scores]
        return [[int(j) for j in order if j != skip] for order, skip in zip(orders, exclude)]

"""KNN baseline of the STUDY paper: recommend the items that followed the most similar training contexts.

No training: the model is an index of the training data.

Contexts. Every training occurrence of an item at position ``t`` of a student is keyed by the *context*
of the ``K`` interactions of the same student just before ``t`` (``K = context_size``, 2 in the paper's
appendix), read within the row (the same row, the same ``student_index``, by ``positions``). A context
is a count vector over the vocabulary: order inside the context is ignored, a repeated item counts twice,
``OOV`` is an ordinary dimension, ``PAD``/``SEP`` never occur. Occurrences with fewer than ``K`` earlier
interactions use the ones that exist; an occurrence with no earlier interaction has no context and only
adds to the global popularity. Occurrences of ``OOV`` itself are not indexed (OOV is never recommended).

Index. Identical contexts are merged: ``contexts [U, V]`` holds each distinct context's counts and
``next_items [U, V]`` how often each item followed it (both ``scipy.sparse`` CSR, ``V`` = vocab size
including the reserved ids); ``popularity [V]`` counts every indexed training interaction of each item.

Query. At a position of a row the query is the count vector of the same student's ``K`` most recent
interactions strictly before it in the row (``history_contexts``), so a score never depends on the
position's own item, on later positions or on another student of the row. Similarities are cosines,
``S = normalize(Q) @ normalize(contexts).T``: a CSR ``query x vocab`` times ``vocab x context`` sparse
product, i.e. a walk over the posting lists of the query's few items (an inverted index), never a scan
over all contexts.

Item score, compared lexicographically (best first):

1. ``max_sim(i)``: the largest similarity of a context that item ``i`` followed (nearest contexts first);
2. ``votes(i) = sum_c sim(q, c) * next_items[c, i]``: similarity-weighted count of the occurrences of
   ``i`` after any similar context (how often the close contexts led to ``i``);
3. global popularity, then the smaller item id.

Similarities are rounded to 1e-9 and votes to 1e-6 (to fewer decimals only if an item's training count
could overflow the packed int64 key, beyond about 10^8 occurrences) so that mathematically equal scores
tie exactly.
Items that followed no context with a positive similarity come after all scored items, in popularity
order; so a query with no earlier interaction (a student's first interaction in the row) or with no
similar training context gets the global popularity ranking. Reserved ids (``PAD``, ``OOV``, ``SEP``)
are never recommended; when the vocabulary holds fewer than ``top_k`` items the lists end with ``PAD``.

Usage::

    index = fit(train_batches, vocab_size, context_size=2)   # or index_from_occurrences(...) of a study run
    save_index(index, "artifacts/knn"); index = load_index("artifacts/knn")
    model = NearestContexts(index, top_k=20)
    result = evaluate(model.predict, batches, output="top_k")       # study.eval.evaluate
"""

import json
import os
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from study.data import reserved_ids

INDEX_FORMAT = "study.knn/1"
MISSING = -1  # an empty slot of a context (fewer than K earlier interactions)
_SIMILARITY_DECIMALS = 9
_VOTE_DECIMALS = 6


class KnnIndex:
    """The fitted model: distinct training contexts, the items that followed them, item popularity.

    Attributes:
      contexts: ``[U, V]`` CSR int32, counts of each distinct context (row) over the vocabulary.
      next_items: ``[U, V]`` CSR int32, ``next_items[c, i]`` = training occurrences of item ``i`` after
        context ``c``; zero in the reserved columns.
      popularity: ``[V]`` int64, training interactions of each item; zero on the reserved ids.
      context_size: ``K``, the number of earlier interactions in a context.
    """

    def __init__(self, contexts: sp.csr_matrix, next_items: sp.csr_matrix, popularity: np.ndarray,
                 context_size: int):
        if contexts.shape != next_items.shape or contexts.shape[1] != len(popularity):
            raise ValueError(
                f"inconsistent KNN index: contexts {contexts.shape}, next_items {next_items.shape}, "
                f"popularity {popularity.shape}; expected [U, V], [U, V], [V]"
            )
        self.contexts = sp.csr_matrix(contexts, dtype=np.int32)
        self.next_items = sp.csr_matrix(next_items, dtype=np.int32)
        self.popularity = np.asarray(popularity, dtype=np.int64)
        self.context_size = int(context_size)

    @property
    def vocab_size(self) -> int:
        return int(self.contexts.shape[1])

    @property
    def num_contexts(self) -> int:
        return int(self.contexts.shape[0])

    def summary(self) -> dict:
        """Sizes of the index (JSON-serializable)."""
        return {
            "context_size": self.context_size,
            "vocab_size": self.vocab_size,
            "num_contexts": self.num_contexts,
            "contexts_nnz": int(self.contexts.nnz),
            "next_items_nnz": int(self.next_items.nnz),
            "indexed_occurrences": int(self.next_items.sum()),
            "popularity_total": int(self.popularity.sum()),
        }


def history_contexts(item_ids: np.ndarray, student_index: np.ndarray, positions: np.ndarray,
                     context_size: int) -> np.ndarray:
    """The ``K`` most recent earlier interactions of the same student, within each row.

    Args:
      item_ids, student_index, positions: ``[B, L]`` int arrays in the ``study.data.row_format`` layout.
      context_size: ``K >= 1``.

    Returns:
      ``[B, L, K] int32``: ``out[b, i, k]`` is the item of the ``(k+1)``-th most recent interaction of
      the student of position ``i`` among the positions of row ``b`` with the same ``student_index`` and
      a smaller ``positions`` value; ``MISSING`` (-1) where there are fewer, and everywhere at ``PAD``/``SEP``.
    """
    item_ids = np.asarray(item_ids)
    student_index = np.asarray(student_index)
    positions = np.asarray(positions)
    if not (item_ids.shape == student_index.shape == positions.shape) or item_ids.ndim != 2:
        raise ValueError(
            f"item_ids {item_ids.shape}, student_index {student_index.shape} and positions "
            f"{positions.shape} must all be [B, L]"
        )
    if context_size < 1:
        raise ValueError(f"context_size must be >= 1, got {context_size}")
    out = np.full(item_ids.shape + (context_size,), MISSING, dtype=np.int32)
    rows, cols = np.nonzero(reserved_ids.is_item(item_ids) & (student_index >= 0))
    # Interactions sorted by (row, student, position): a student's history is a run of this order.
    order = np.lexsort((positions[rows, cols], student_index[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    students, items = student_index[rows, cols], item_ids[rows, cols]
    for lag in range(1, context_size + 1):
        current = np.arange(lag, len(rows))
        previous = current - lag
        same = (rows[previous] == rows[current]) & (students[previous] == students[current])
        out[rows[current[same]], cols[current[same]], lag - 1] = items[previous[same]]
    return out


def canonical_contexts(contexts: np.ndarray) -> np.ndarray:
    """``[N, K]`` contexts as sorted rows (``MISSING`` first): equal count vectors, equal rows."""
    return np.sort(np.asarray(contexts, dtype=np.int32), axis=1)


def count_vectors(contexts: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """``[N, K]`` item ids (``MISSING`` = empty slot) -> ``[N, V]`` CSR int32 count vectors."""
    contexts = np.asarray(contexts)
    filled = contexts >= 0
    rows = np.broadcast_to(np.arange(len(contexts))[:, None], contexts.shape)[filled]
    counts = sp.csr_matrix(
        (np.ones(len(rows), np.int32), (rows, contexts[filled])), shape=(len(contexts), vocab_size)
    )
    counts.sum_duplicates()
    return counts


def _normalized_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty), float64."""
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)


def _check_item_ids(item_ids: np.ndarray, vocab_size: int, where: str) -> None:
    if item_ids.size and (item_ids.min() < 0 or item_ids.max() >= vocab_size):
        raise ValueError(
            f"{where} holds item id {int(item_ids.max())} (min {int(item_ids.min())}) outside the KNN "
            f"vocabulary [0, {vocab_size}); fit and evaluate on the same processed dataset"
        )


def occurrences(batch: dict, vocab_size: int, context_size: int = 2) -> dict:
    """The indexed occurrences of one batch of training rows: ``{"keys": [n, K] int32`` canonical contexts,
    ``"targets": [n] int32`` the items that followed them, ``"popularity": [V] int64`` counts of every indexed
    item occurrence}``.

    ``batch``: NumPy dict with ``item_ids``, ``student_index``, ``positions`` ``[B, L]`` and optionally
    ``row_valid [B]``. Adding the occurrences of every batch (any order, any batching) and passing them to
    :func:`index_from_occurrences` gives the index of all rows.
    """
    item_ids = np.asarray(batch["item_ids"])
    _check_item_ids(item_ids, vocab_size, "a training batch")
    history = history_contexts(item_ids, batch["student_index"], batch["positions"], context_size)
    valid = np.asarray(batch.get("row_valid", np.ones(len(item_ids))), dtype=bool)
    occurs = reserved_ids.is_item(item_ids) & (np.asarray(batch["student_index"]) >= 0) & valid[:, None]
    items, history = item_ids[occurs], history[occurs]
    indexed = items >= reserved_ids.FIRST_ITEM_ID
    with_context = indexed & (history != MISSING).any(axis=1)
    return {"keys": canonical_contexts(history[with_context]).astype(np.int32),
            "targets": items[with_context].astype(np.int32),
            "popularity": np.bincount(items[indexed], minlength=vocab_size).astype(np.int64)}


def index_from_occurrences(keys: np.ndarray, targets: np.ndarray, popularity: np.ndarray,
                           context_size: int) -> KnnIndex:
    """The index (module docstring) of all training occurrences: ``keys [n, K]`` canonical contexts,
    ``targets [n]`` the items after them, ``popularity [V]`` item counts (``vocab_size = V``)."""
    vocab_size = len(popularity)
    keys = np.asarray(keys, np.int32).reshape(-1, context_size)
    targets = np.asarray(targets, np.int32).reshape(-1)
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    next_items = sp.csr_matrix(
        (np.ones(len(targets), np.int32), (inverse.ravel(), targets)), shape=(len(distinct), vocab_size)
    )
    next_items.sum_duplicates()
    return KnnIndex(count_vectors(distinct, vocab_size), next_items, np.asarray(popularity, np.int64), context_size)


def fit(batches: Iterable[dict], vocab_size: int, context_size: int = 2) -> KnnIndex:
    """Builds the index from training rows (NumPy batch dicts, as :func:`occurrences` takes them)."""
    keys, targets = [np.zeros((0, context_size), np.int32)], [np.zeros((0,), np.int32)]
    popularity = np.zeros(vocab_size, np.int64)
    for batch in batches:
        found = occurrences(batch, vocab_size, context_size)
        keys.append(found["keys"])
        targets.append(found["targets"])
        popularity += found["popularity"]
    return index_from_occurrences(np.concatenate(keys), np.concatenate(targets), popularity, context_size)


def save_index(index: KnnIndex, directory: str, **metadata) -> None:
    """Writes ``contexts.npz``, ``next_items.npz`` (``scipy.sparse.save_npz``), ``popularity.npy`` and
    ``index.json`` (format, sizes and ``metadata``) into ``directory``; no pickles."""
    os.makedirs(directory, exist_ok=True)
    sp.save_npz(os.path.join(directory, "contexts.npz"), index.contexts)
    sp.save_npz(os.path.join(directory, "next_items.npz"), index.next_items)
    np.save(os.path.join(directory, "popularity.npy"), index.popularity, allow_pickle=False)
    # index.json last: a folder without it is an unfinished save and is not loaded.
    with open(os.path.join(directory, "index.json"), "w", encoding="utf-8") as handle:
        json.dump({"format": INDEX_FORMAT, **index.summary(), **metadata}, handle, indent=1)


def load_index(directory: str) -> KnnIndex:
    """The ``KnnIndex`` saved by ``save_index`` in ``directory``."""
    meta_path = os.path.join(directory, "index.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"no KNN index in {directory} (index.json missing); fit one first")
    with open(meta_path, encoding="utf-8") as handle:
        meta = json.load(handle)
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{meta_path} has format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
    return KnnIndex(
        sp.load_npz(os.path.join(directory, "contexts.npz")).tocsr(),
        sp.load_npz(os.path.join(directory, "next_items.npz")).tocsr(),
        np.load(os.path.join(directory, "popularity.npy"), allow_pickle=False),
        meta["context_size"],
    )


class NearestContexts:
    """Ranks items for queries against a ``KnnIndex`` (module docstring: similarity and item score).

    Ranking is exact and vectorized: per block of distinct queries, the sparse similarities give each
    item its similarity level (the rank of ``max_sim`` among the block's distinct similarity values, one
    sparse product per level) and its votes (one sparse product); both and the popularity rank are packed
    into one int64 per (query, item), whose row-wise sort is the lexicographic order of the item score.

    Args:
      index: the fitted index.
      top_k: length of each ranked list (>= the largest n of hits@n).
      max_similarities: bound on the query-context similarities of one sparse product (memory: about
        12 bytes each); the distinct queries of a batch share one product unless they exceed it.
      dense_elements: ``queries x V`` packed scores held at once while ranking (memory: 10 bytes each).
      cache_size: ranked lists of this many distinct queries are kept for reuse by later batches (a
        query's list depends on nothing else); 0 disables the cache.
    """

    def __init__(self, index: KnnIndex, top_k: int = 20, *, max_similarities: int = 1 << 24,
                 dense_elements: int = 1 << 22, cache_size: int = 1 << 20):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.index = index
        self.top_k = int(top_k)
        self.cache_size = int(cache_size)
        self._cache: dict[bytes, np.ndarray] = {}
        self.max_similarities = int(max_similarities)
        self.dense_rows = max(1, int(dense_elements) // index.vocab_size)
        # Inverted index: for each vocabulary item, the normalized contexts holding it (its posting list).
        self._postings = _normalized_rows(index.contexts).T.tocsr()
        self._posting_lengths = np.append(np.diff(self._postings.indptr), 0)  # [-1]: a MISSING slot
        self._next_counts = sp.csr_matrix(index.next_items, dtype=np.float64)
        vocab_size = index.vocab_size
        popularity = index.popularity.astype(np.float64)
        popularity[: reserved_ids.FIRST_ITEM_ID] = -1.0
        # Items by decreasing popularity, then increasing id; reserved ids last.
        self._by_popularity = np.lexsort((np.arange(vocab_size), -popularity))
        self._popularity_bits = max(1, int(vocab_size - 1).bit_length())
        # Lowest bits of the packed score: larger for more popular items; -1 marks reserved ids.
        self._popularity_code = np.empty(vocab_size, np.int64)
        self._popularity_code[self._by_popularity] = np.arange(vocab_size - 1, -1, -1)
        self._popularity_code[: reserved_ids.FIRST_ITEM_ID] = -1
        self._max_votes = max(1, int(index.popularity.max(initial=0)))  # votes(i) <= popularity(i)
        self._popular = self._items_of(self._largest(self._popularity_code[None]))[0]

    @property
    def num_cached_queries(self) -> int:
        """Distinct queries whose ranked lists are cached (all distinct queries seen, up to ``cache_size``)."""
        return len(self._cache)

    def predict(self, batch: dict) -> np.ndarray:
        """``[B, L, top_k] int32`` ranked item ids for every position of ``batch`` (best first).

        ``batch`` holds ``item_ids``, ``student_index``, ``positions`` ``[B, L]``; the list at position
        ``i`` depends only on the earlier interactions of its student in its row. Positions that are not
        interactions get the popularity list. This is the ``predict_fn`` of ``study.eval.evaluate``
        (``output="top_k"``).
        """
        item_ids = np.asarray(batch["item_ids"])
        _check_item_ids(item_ids, self.index.vocab_size, "the batch")
        history = history_contexts(item_ids, batch["student_index"], batch["positions"],
                                   self.index.context_size)
        out = np.broadcast_to(self._popular, item_ids.shape + (self.top_k,)).copy()
        has_context = (history != MISSING).any(axis=-1)
        out[has_context] = self.rank(history[has_context])
        return out

    def rank(self, queries: np.ndarray) -> np.ndarray:
        """``[N, K]`` query contexts (item ids, ``MISSING`` = empty) -> ``[N, top_k] int32`` ranked ids."""
        queries = canonical_contexts(np.asarray(queries).reshape(-1, self.index.context_size))
        _check_item_ids(queries[queries != MISSING], self.index.vocab_size, "a query")
        if not len(queries):
            return np.zeros((0, self.top_k), np.int32)
        distinct, inverse = np.unique(queries, axis=0, return_inverse=True)
        keys = [query.tobytes() for query in distinct]
        cached = [self._cache.get(key) for key in keys]
        missing = [i for i, lists in enumerate(cached) if lists is None]
        ranked = np.empty((len(distinct), self.top_k), np.int32)
        if len(missing) < len(distinct):
            hits = [i for i, lists in enumerate(cached) if lists is not None]
            ranked[hits] = np.stack([cached[i] for i in hits])
        if missing:
            ranked[missing] = self._rank_distinct(distinct[missing])
            room = max(0, self.cache_size - len(self._cache))
            self._cache.update((keys[i], ranked[i]) for i in missing[:room])
        return ranked[inverse.ravel()]

    def _rank_distinct(self, queries: np.ndarray) -> np.ndarray:
        """Distinct canonical ``[N, K]`` queries -> ``[N, top_k]`` ranked ids (no cache)."""
        ranked = np.empty((len(queries), self.top_k), np.int32)
        for start, stop in self._matmul_groups(queries):
            group = queries[start:stop]
            similarities = _normalized_rows(count_vectors(group, self.index.vocab_size)) @ self._postings
            similarities = sp.csr_matrix(similarities)
            for row in range(0, len(group), self.dense_rows):
                block = similarities[row:row + self.dense_rows]
                ranked[start + row:start + row + block.shape[0]] = self._rank_block(block)
        return ranked

    def _matmul_groups(self, queries: np.ndarray) -> list[tuple[int, int]]:
        """``[start, stop)`` runs of ``queries`` whose posting lists (an upper bound on their nonzero
        similarities) add up to at most ``max_similarities`` (at least one query per run)."""
        bound = np.cumsum(self._posting_lengths[queries].sum(axis=1))
        groups, start = [], 0
        while start < len(queries):
            before = bound[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(bound, before + self.max_similarities, side="right")))
            groups.append((start, stop))
            start = stop
        return groups

    def _rank_block(self, similarities: sp.csr_matrix) -> np.ndarray:
        """``[n, U]`` CSR query-context similarities -> ``[n, top_k]`` ranked ids."""
        similarities = similarities.copy()
        similarities.data = np.round(similarities.data, _SIMILARITY_DECIMALS)
        levels = self._max_levels(similarities)  # [n, V] int16, 0 = followed no similar context
        votes = sp.csr_matrix(similarities @ self._next_counts)
        rows = np.repeat(np.arange(votes.shape[0]), np.diff(votes.indptr))
        cols = votes.indices
        level_bits = int(levels.max(initial=0)).bit_length()
        vote_bits = 62 - level_bits - self._popularity_bits
        decimals = min(_VOTE_DECIMALS, int(np.floor(np.log10((2**vote_bits - 1) / self._max_votes))))
        quantized = np.rint(votes.data * 10.0**decimals).astype(np.int64)
        packed = np.broadcast_to(self._popularity_code, levels.shape).copy()
        packed[rows, cols] += (
            (levels[rows, cols].astype(np.int64) << (vote_bits + self._popularity_bits))
            + (quantized << self._popularity_bits)
        )
        return self._items_of(self._largest(packed))

    def _largest(self, packed: np.ndarray) -> np.ndarray:
        """The ``top_k`` largest values of each row, largest first (-1 beyond the row length)."""
        num_rows, width = packed.shape
        keep = min(self.top_k, width)
        if keep < width:  # the row's values are distinct (popularity codes), so partition is fast
            packed = np.partition(packed, width - keep, axis=1)[:, width - keep:]
        best = np.sort(packed, axis=1)[:, ::-1]
        return np.pad(best, ((0, 0), (0, self.top_k - keep)), constant_values=-1)

    def _max_levels(self, similarities: sp.csr_matrix) -> np.ndarray:
        """``[n, V] int16``: for each (query, item), 1 + the rank (ascending) of the largest similarity of a
        context the item followed among the distinct similarity values of the block; 0 if none."""
        values = np.unique(similarities.data)
        level_of = np.searchsorted(values, similarities.data) + 1
        levels = np.zeros((similarities.shape[0], self.index.vocab_size), np.int16)
        for level in range(1, len(values) + 1):  # ascending: a higher level overwrites a lower one
            members = similarities.copy()
            members.data = (level_of == level).astype(np.float64)
            members.eliminate_zeros()
            reached = sp.csr_matrix(members @ self._next_counts)
            levels[np.repeat(np.arange(reached.shape[0]), np.diff(reached.indptr)), reached.indices] = level
        return levels

    def _items_of(self, packed: np.ndarray) -> np.ndarray:
        """Item ids of packed scores (``PAD`` where the packed score marks a reserved id), int32."""
        valid = packed >= 0
        code = np.where(valid, packed & ((1 << self._popularity_bits) - 1), 0)
        items = self._by_popularity[self.index.vocab_size - 1 - code]
        return np.where(valid, items, reserved_ids.PAD).astype(np.int32)

"""Class-based TF-IDF (c-TF-IDF), the terms that characterize each cluster, as BERTopic computes them.

BERTopic joins a cluster's documents into one document per class, counts terms with scikit-learn's
``CountVectorizer`` and weights them (``ClassTfidfTransformer``, defaults)::

    W[t, c] = tf[t, c] / sum_t' tf[t', c]  *  log(1 + A / f[t])

with ``f[t]`` the frequency of term ``t`` over all classes and ``A`` the average number of words per
class (an integer, as BERTopic truncates it). Counts are accumulated batch by batch (each batch's own
vocabulary folded into one), so a million documents never sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer


class ClassTermCounts:
    """Term counts per class, added batch by batch; ``top_terms`` weighs them by c-TF-IDF."""

    def __init__(self, stop_words: str | None = "english") -> None:
        self.stop_words = stop_words
        self.vocabulary: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, texts: Sequence[str], classes: np.ndarray) -> None:
        """Count ``texts`` (one class id per text, any integers)."""
        vectorizer = CountVectorizer(stop_words=self.stop_words)
        try:
            counts = vectorizer.fit_transform(texts)
        except ValueError:  # nothing but stop words (or empty texts) in this batch
            return
        names = vectorizer.get_feature_names_out()
        index = np.fromiter((self.vocabulary.setdefault(t, len(self.vocabulary)) for t in names), np.int64, len(names))
        per_class = sp.coo_matrix(_one_hot(classes).T @ counts)
        self._rows.append(np.unique(classes)[per_class.row])
        self._cols.append(index[per_class.col])
        self._counts.append(per_class.data)

    def matrix(self) -> tuple[np.ndarray, sp.csr_matrix]:
        """(the class ids, their counts as a classes x terms matrix)."""
        if not self._rows:
            return np.empty(0, np.int64), sp.csr_matrix((0, 0))
        rows = np.concatenate(self._rows)
        classes, positions = np.unique(rows, return_inverse=True)
        shape = (len(classes), len(self.vocabulary))
        counts = sp.coo_matrix((np.concatenate(self._counts), (positions, np.concatenate(self._cols))), shape=shape)
        return classes, counts.tocsr()

    def top_terms(self, n: int) -> dict[int, list[tuple[str, float]]]:
        """The ``n`` best terms of every class by c-TF-IDF, best first (ties by term)."""
        classes, counts = self.matrix()
        weights = ctfidf(counts)
        terms = np.empty(len(self.vocabulary), dtype=object)
        for term, column in self.vocabulary.items():
            terms[column] = term
        best: dict[int, list[tuple[str, float]]] = {}
        for row, cls in enumerate(classes):
            line = weights.getrow(row)
            order = np.lexsort((terms[line.indices], -line.data))[:n]
            best[int(cls)] = [(str(terms[line.indices[i]]), float(line.data[i])) for i in order]
        return best


def ctfidf(counts: sp.csr_matrix) -> sp.csr_matrix:
    """BERTopic's ``ClassTfidfTransformer`` (default settings) applied to a classes x terms count matrix."""
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    average_words = int(counts.sum(axis=1).mean())
    idf = np.log(average_words / np.maximum(frequency, 1) + 1)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    tf = sp.diags(1.0 / np.maximum(totals, 1)) @ counts
    return sp.csr_matrix(tf @ sp.diags(idf))


def _one_hot(classes: np.ndarray) -> sp.csr_matrix:
    """texts x (distinct classes, sorted) indicator matrix."""
    _, column = np.unique(classes, return_inverse=True)
    return sp.csr_matrix((np.ones(len(classes)), (np.arange(len(classes)), column)))

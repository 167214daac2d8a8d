"""Okapi BM25 over an inverted index (Robertson & Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", 2009), with the "+1" IDF of Lucene so no term scores negative.

Besides the score, `coverage` says how much of a question a document answers: the share of
the question's IDF mass whose terms the document contains. A document can top the ranking
by matching one common word; coverage is what lets the runtime say "I don't know" instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    index: int
    score: float
    coverage: float
    matched: frozenset[str]


class BM25Index:
    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75) -> None:
        """`documents` are lists of index terms (see `text.terms`)."""
        self.k1, self.b = k1, b
        self.size = len(documents)
        self.lengths = [len(doc) for doc in documents]
        self.avg_length = (sum(self.lengths) / self.size) if self.size else 0.0
        self.postings: dict[str, list[tuple[int, int]]] = {}
        for index, doc in enumerate(documents):
            for term, freq in Counter(doc).items():
                self.postings.setdefault(term, []).append((index, freq))
        # Per-document length normalisation, computed once: k1 * (1 - b + b * len / avg).
        avg = self.avg_length or 1.0
        self._norm = [k1 * (1 - b + b * length / avg) for length in self.lengths]

    def idf(self, term: str) -> float:
        df = len(self.postings.get(term, ()))
        return math.log((self.size - df + 0.5) / (df + 0.5) + 1.0)

    def search(self, query_terms: Sequence[str], *, limit: int = 5, allowed: Sequence[bool] | None = None) -> list[Hit]:
        """The best `limit` documents for the query, best first (only those matching a term)."""
        unique = list(dict.fromkeys(query_terms))
        if not unique or not self.size:
            return []
        weights = {term: self.idf(term) for term in unique}
        total_weight = sum(weights.values()) or 1.0
        scores: dict[int, float] = {}
        matched: dict[int, set[str]] = {}
        k1 = self.k1
        for term in unique:
            postings = self.postings.get(term)
            if not postings:
                continue
            weight = weights[term]
            for index, freq in postings:
                if allowed is not None and not allowed[index]:
                    continue
                scores[index] = scores.get(index, 0.0) + weight * freq * (k1 + 1) / (freq + self._norm[index])
                matched.setdefault(index, set()).add(term)
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [
            Hit(
                index=index,
                score=round(score, 6),
                coverage=round(sum(weights[t] for t in matched[index]) / total_weight, 4),
                matched=frozenset(matched[index]),
            )
            for index, score in best
        ]

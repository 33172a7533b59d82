"""Hybrid head inputs: the encoder's vector beside a dense block derived from TF-IDF n-grams.

``ModelConfig.features == "hybrid"``: a TF-IDF of word 1-2-grams and char 2-5-grams (within word
boundaries, sublinear tf, l2 per block) is fitted on the texts given to ``fit_hybrid`` (the project's
pool: unsupervised), and a seeded TruncatedSVD reduces the two sparse blocks, stacked, to
``ModelConfig.sparse_dims`` dense columns. The head then sees (N, H + R) vectors, so its fold
ensemble, MC dropout, calibration and the artifact format of its weights are unchanged; only the
input side grows. The state (vocabularies, idf weights, SVD components) is plain arrays and strings,
saved beside the head by ``modelsvc.artifacts`` (safetensors + JSON, no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from threadpoolctl import threadpool_limits

#: The vectorizers' settings, fixed so a saved vocabulary is re-applied the same way (word, char).
_WORD = {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2, "lowercase": True}
_CHAR = {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 2, "lowercase": True}
#: Most terms kept per block (by corpus frequency): bounds the artifact (R x V float32 components).
MAX_TERMS = {"word": 20_000, "char": 40_000}
#: Most texts the vectorizers and the SVD are fitted on (a seeded sample of a larger pool).
MAX_FIT_TEXTS = 20_000


def _vectorizer(kind: str, vocabulary: Sequence[str] | None = None) -> TfidfVectorizer:
    params = _WORD if kind == "word" else _CHAR
    if vocabulary is None:
        return TfidfVectorizer(max_features=MAX_TERMS[kind], dtype=np.float32, **params)
    return TfidfVectorizer(vocabulary={t: i for i, t in enumerate(vocabulary)}, dtype=np.float32, **params)


@dataclass
class HybridFeatures:
    """Fitted TF-IDF + SVD state: vocabularies (V_w,), (V_c,), idf (V_w,), (V_c,), components (R, V_w + V_c)."""

    word_vocabulary: list[str]
    char_vocabulary: list[str]
    word_idf: np.ndarray
    char_idf: np.ndarray
    components: np.ndarray

    def __post_init__(self) -> None:
        self.word_idf = np.asarray(self.word_idf, dtype=np.float32)
        self.char_idf = np.asarray(self.char_idf, dtype=np.float32)
        self.components = np.asarray(self.components, dtype=np.float32)
        n_terms = len(self.word_vocabulary) + len(self.char_vocabulary)
        if self.word_idf.shape != (len(self.word_vocabulary),) or self.char_idf.shape != (len(self.char_vocabulary),):
            raise ValueError("idf weights do not match the vocabularies")
        if self.components.ndim != 2 or self.components.shape[1] != n_terms:
            raise ValueError(f"components must be (R, {n_terms}), got {self.components.shape}")
        self._word = self._restore("word", self.word_vocabulary, self.word_idf)
        self._char = self._restore("char", self.char_vocabulary, self.char_idf)

    @staticmethod
    def _restore(kind: str, vocabulary: list[str], idf: np.ndarray) -> TfidfVectorizer | None:
        if not vocabulary:
            return None
        vec = _vectorizer(kind, vocabulary)
        vec.idf_ = idf.astype(np.float64)
        return vec

    @property
    def dims(self) -> int:
        """R, the width of the block ``transform`` returns."""
        return int(self.components.shape[0])

    def sparse(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The stacked TF-IDF blocks (N, V_w + V_c), each row l2-normalized per block."""
        blocks = [vec.transform(list(texts)) for vec in (self._word, self._char) if vec is not None]
        if not blocks:
            return sp.csr_matrix((len(texts), 0), dtype=np.float32)
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """texts (N) -> dense block (N, R) float32: the TF-IDF rows projected on the SVD components."""
        if len(texts) == 0:
            return np.zeros((0, self.dims), dtype=np.float32)
        return np.asarray(self.sparse(texts) @ self.components.T, dtype=np.float32)

    def augment(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Head inputs (N, H + R): the embeddings (N, H) of ``texts`` (N) with their dense TF-IDF block."""
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings")
        dense = np.asarray(embeddings, dtype=np.float32)
        return np.concatenate([dense, self.transform(texts)], axis=1)


def fit_hybrid(texts: Sequence[str], *, dims: int, seed: int = 0, svd: bool = True) -> HybridFeatures:
    """Fit the TF-IDF vocabularies and a ``dims``-component TruncatedSVD on ``texts`` (unlabeled is fine).

    Seeded (the text sample and the randomized SVD). Fewer components than ``dims`` when the corpus
    is too small to carry them (at most terms - 1 and texts - 1); none with ``svd=False`` (the
    vocabularies and idf weights alone, as the sparse path reads them).
    """
    unique = list(dict.fromkeys(str(t) for t in texts))
    if len(unique) > MAX_FIT_TEXTS:
        pick = np.sort(np.random.default_rng(seed).choice(len(unique), MAX_FIT_TEXTS, replace=False))
        unique = [unique[i] for i in pick]
    fitted: dict[str, tuple[list[str], np.ndarray]] = {}
    blocks = []
    for kind in ("word", "char"):
        vec = _vectorizer(kind)
        try:
            blocks.append(vec.fit_transform(unique))
        except ValueError:  # no term reaches min_df (a tiny corpus): the block is left out
            fitted[kind] = ([], np.zeros(0, dtype=np.float32))
            continue
        vocabulary = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
        fitted[kind] = (vocabulary, vec.idf_.astype(np.float32))
    n_terms = sum(b.shape[1] for b in blocks)
    r = min(dims, n_terms - 1, len(unique) - 1) if svd else 0
    if r < 1:
        components = np.zeros((0, n_terms), dtype=np.float32)
    else:
        reducer = TruncatedSVD(n_components=r, algorithm="randomized", n_iter=4, random_state=seed)
        # One BLAS thread: the products are small, and on a busy worker more threads only contend
        # (measured on trec's pool: 4.5 s on one thread, 55 s with the default pool on a loaded host).
        with threadpool_limits(limits=1, user_api="blas"):
            reducer.fit(sp.hstack(blocks, format="csr"))
        components = reducer.components_.astype(np.float32)
    return HybridFeatures(
        word_vocabulary=fitted["word"][0],
        char_vocabulary=fitted["char"][0],
        word_idf=fitted["word"][1],
        char_idf=fitted["char"][1],
        components=components,
    )


# --- The sparse path (``ModelConfig.features == "sparse"``) -------------------------------------------

#: Inverse regularisation strengths tried for the path's logistic regression, and the weights w of its
#: log-probabilities in the pooled logits (0 switches the path off); both chosen on out-of-fold NLL.
SPARSE_C_GRID = (1.0, 4.0, 16.0)
SPARSE_WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0)
#: The log-probability a class absent from the regression's training labels gets (about 1e-6).
_ABSENT_LOGIT = float(np.log(1e-6))


@dataclass(frozen=True)
class SparseDesign:
    """What the sparse path trains on: the fitted vectorizers, and the labeled texts' rows ``x`` (N, V)."""

    tfidf: HybridFeatures
    x: sp.csr_matrix

    @classmethod
    def build(cls, texts: Sequence[str], unlabeled_texts: Sequence[str] = (), *, seed: int = 0) -> SparseDesign:
        """Vectorizers fitted on ``texts`` + ``unlabeled_texts`` (no labels used), applied to ``texts``."""
        tfidf = fit_tfidf([*texts, *unlabeled_texts], seed=seed)
        return cls(tfidf=tfidf, x=tfidf.sparse(texts))


def fit_tfidf(texts: Sequence[str], *, seed: int = 0) -> HybridFeatures:
    """The TF-IDF vocabularies and idf weights alone (no SVD block): what the sparse path reads."""
    return fit_hybrid(texts, dims=1, seed=seed, svd=False)


@dataclass
class SparsePath:
    """A logistic regression on the TF-IDF n-grams beside the head: w x its log-probabilities are added
    to every MC sample of the head's logits (log-linear pooling), so the head's spread is kept.

    ``tfidf``: the vectorizers (no SVD components); ``coef`` (C, V) and ``intercept`` (C,): the
    regression as C log-linear scores (a binary regression's one row becomes [0, z]); ``weight``: w.
    """

    tfidf: HybridFeatures
    coef: np.ndarray
    intercept: np.ndarray
    weight: float

    def __post_init__(self) -> None:
        self.coef = np.asarray(self.coef, dtype=np.float32)
        self.intercept = np.asarray(self.intercept, dtype=np.float32)
        self.weight = float(self.weight)
        n_terms = len(self.tfidf.word_vocabulary) + len(self.tfidf.char_vocabulary)
        if self.coef.ndim != 2 or self.coef.shape[1] != n_terms or self.intercept.shape != (self.coef.shape[0],):
            raise ValueError(
                f"need coef (C, {n_terms}) and intercept (C,), got {self.coef.shape}, {self.intercept.shape}"
            )
        if not (np.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0, got {self.weight}")

    @property
    def n_classes(self) -> int:
        return int(self.coef.shape[0])

    def offsets(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) float32: w x the regression's log-probabilities of ``texts`` (zeros when w = 0)."""
        if self.weight == 0 or len(texts) == 0:
            return np.zeros((len(texts), self.n_classes), dtype=np.float32)
        return (self.weight * linear_log_proba(self.tfidf.sparse(texts), self.coef, self.intercept)).astype(np.float32)

    def augment(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Head inputs (N, H + C): the embeddings (N, H) with the path's offsets (N, C) as the last columns."""
        if len(texts) != len(embeddings):
            raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings")
        return np.concatenate([np.asarray(embeddings, dtype=np.float32), self.offsets(texts)], axis=1)


def linear_log_proba(x: sp.csr_matrix, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """(N, C) log-softmax of x (N, V) @ coef.T (V, C) + intercept (C,)."""
    z = np.asarray(x @ np.asarray(coef, dtype=np.float64).T) + np.asarray(intercept, dtype=np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_linear(x: sp.csr_matrix, y: np.ndarray, c: float, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression (L2, strength 1 / c) as (coef (C, V), intercept (C,)) over all classes.

    A class without labels here gets coefficients 0 and a log-probability near 1e-6; one label
    class alone gives every document that class.
    """
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((n_classes, x.shape[1]))
    intercept = np.full(n_classes, _ABSENT_LOGIT)
    present = np.unique(y)
    if len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    with threadpool_limits(limits=1, user_api="blas"):
        model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    classes = model.classes_
    if len(classes) == 2:  # one row of log-odds for classes_[1]: scores [0, z] give the same softmax
        coef[classes[0]], intercept[classes[0]] = 0.0, 0.0
        coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[classes], intercept[classes] = model.coef_, model.intercept_
    return coef, intercept

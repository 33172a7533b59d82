"""Cold start orders on real embeddings: 240 TREC questions embedded by the packaged encoder."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from modelsvc.coldstart import label_prompt, typiclust_order, zero_shot_order, zero_shot_probabilities
from modelsvc.config import ModelConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import TextEncoder

pytestmark = pytest.mark.slow  # embeds 240 questions with the packaged encoder

TREC_LABELS = {
    "ABBR": ("abbreviation", "asks what an abbreviation or acronym stands for"),
    "DESC": ("description", "asks for a definition, description, manner or reason"),
    "ENTY": ("entity", "asks for a thing: an animal, product, color, substance, event or other entity"),
    "HUM": ("human", "asks for a person or a group of people"),
    "LOC": ("location", "asks for a place: a city, country, mountain or other location"),
    "NUM": ("numeric", "asks for a number, date, count, size, price or other numeric value"),
}


@pytest.fixture(scope="module")
def trec_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (240, H), labels (240,) as indices into TREC_LABELS, label embeddings (6, H))."""
    texts, labels = load_builtin("trec")
    idx = np.random.default_rng(0).permutation(len(texts))[:240]
    encoder = TextEncoder(ModelConfig())
    names = list(TREC_LABELS)
    x = encoder.encode([texts[i] for i in idx])
    y = np.array([names.index(labels[i]) for i in idx])
    prompts = encoder.encode([label_prompt(n, *TREC_LABELS[n]) for n in names])
    return x, y, prompts


def test_typiclust_is_deterministic_for_a_seed_and_takes_one_document_per_cluster(trec_sample) -> None:
    x, _, _ = trec_sample
    order = typiclust_order(x, budget=12, seed=3)
    assert np.array_equal(order, typiclust_order(x, budget=12, seed=3))
    assert len(order) == 12 and len(set(order.tolist())) == 12
    # The same seeded k-means TypiClust runs: every cluster gives exactly one document.
    clusters = KMeans(n_clusters=12, n_init=1, random_state=3).fit_predict(x.astype(np.float64))
    assert sorted(clusters[order].tolist()) == list(range(12))


def test_typiclust_picks_the_most_typical_document_of_the_largest_cluster_first(trec_sample) -> None:
    x, _, _ = trec_sample
    order = typiclust_order(x, budget=8, seed=0, k=5)
    clusters = KMeans(n_clusters=8, n_init=1, random_state=0).fit_predict(x.astype(np.float64))
    sizes = np.bincount(clusters, minlength=8)
    first = clusters[order[0]]
    assert sizes[first] == sizes.max()
    members = np.flatnonzero(clusters == first)
    d = np.linalg.norm(x[members, None, :] - x[None, members, :], axis=-1)
    mean_knn = np.sort(d, axis=1)[:, 1:6].mean(axis=1)  # the 5 nearest others
    assert members[np.argmin(mean_knn)] == order[0]


def test_typiclust_leaves_labeled_documents_and_their_clusters_out(trec_sample) -> None:
    x, _, _ = trec_sample
    labeled = [0, 1, 2, 3]
    order = typiclust_order(x, budget=10, seed=1, labeled=labeled)
    assert len(order) == 10 and not set(order.tolist()) & set(labeled)
    clusters = KMeans(n_clusters=14, n_init=1, random_state=1).fit_predict(x.astype(np.float64))
    assert not set(clusters[order].tolist()) & set(clusters[labeled].tolist())
    assert len(set(clusters[order].tolist())) == 10


def test_typiclust_small_pools_and_empty_budgets() -> None:
    x = np.eye(4, dtype=np.float32)
    assert typiclust_order(x, budget=0, seed=0).tolist() == []
    assert typiclust_order(x, budget=9, seed=0, labeled=[1]).tolist() == [0, 2, 3]


def test_zero_shot_probabilities_rank_real_questions_better_than_chance(trec_sample) -> None:
    x, y, prompts = trec_sample
    probs = zero_shot_probabilities(x, prompts)
    assert probs.shape == (240, 6) and np.allclose(probs.sum(axis=1), 1.0)
    majority = np.bincount(y).max() / len(y)
    assert (probs.argmax(axis=1) == y).mean() > majority + 0.1
    order = zero_shot_order(probs, budget=20)
    gaps = np.diff(np.sort(probs, axis=1)[:, -2:], axis=1)[:, 0]
    assert np.all(np.diff(gaps[order]) >= 0)  # the smallest top-two gap (most uncertain) first
    assert gaps[order[-1]] <= np.sort(gaps)[20]
    with pytest.raises(ValueError, match="temperature"):
        zero_shot_probabilities(x, prompts, temperature=0.0)


def test_label_prompt_joins_name_text_and_note_once_each() -> None:
    assert label_prompt("pos", "Positive", "The critic liked  the film") == "pos: Positive. The critic liked the film"
    assert label_prompt("Positive", "positive") == "Positive"
    assert label_prompt("neg", "", "") == "neg"

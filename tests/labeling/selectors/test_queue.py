"""Queue ranking: what the champion would ask next, and the near-copy rule."""

from __future__ import annotations

import pytest

from labeling.models import AssignmentState, Document, ModelStatus, Split
from labeling.selectors.queue import (
    Candidate,
    diversify,
    lease_context,
    leased_points,
    offer,
    pool_candidates,
    queue_size,
)
from tests.factories import (
    AssignmentFactory,
    DocumentFactory,
    ModelVersionFactory,
    PredictionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranked():
    champion = ModelVersionFactory(status=ModelStatus.CHAMPION)
    docs = [DocumentFactory(project=champion.project) for _ in range(6)]
    for i, doc in enumerate(docs):
        PredictionFactory(
            document=doc, model_version=champion, acquisition_score=i, map_x=float(i), map_y=0.0
        )
    return champion, docs


def test_candidates_are_unlabeled_unleased_unskipped_pool_documents_best_first(ranked):
    champion, docs = ranked
    me = UserFactory()
    Document.objects.filter(pk=docs[5].pk).update(is_labeled=True)
    Document.objects.filter(pk=docs[4].pk).update(split=Split.HOLDOUT)
    AssignmentFactory(document=docs[3])  # leased by someone
    AssignmentFactory(document=docs[2], annotator=me, state=AssignmentState.SKIPPED)
    AssignmentFactory(document=docs[1], state=AssignmentState.EXPIRED)  # an old lease does not count
    ids = [c.document_id for c in pool_candidates(champion, annotator_id=me.pk)]
    assert ids == [docs[1].pk, docs[0].pk]
    other = UserFactory()
    assert [c.document_id for c in pool_candidates(champion, annotator_id=other.pk)][:2] == [
        docs[2].pk,
        docs[1].pk,
    ]
    assert queue_size(champion.project) == 5


def test_leased_points_and_the_near_copy_rule(ranked):
    champion, docs = ranked
    AssignmentFactory(document=docs[5])
    hashes, points = leased_points(champion.project, champion)
    assert hashes == {docs[5].content_hash} and points == [(5.0, 0.0)]
    candidates = [Candidate(d.pk, 1.0, d.content_hash, (float(i), 0.0)) for i, d in enumerate(docs[:5])]
    # A copy of the leased text and the point right next to it go to the back, in their order.
    candidates[0] = Candidate(docs[0].pk, 1.0, docs[5].content_hash, (0.0, 0.0))
    candidates[4] = Candidate(docs[4].pk, 1.0, docs[4].content_hash, (4.99, 0.0))
    ordered = diversify(candidates, hashes, points)
    assert [c.document_id for c in ordered] == [docs[i].pk for i in (1, 2, 3, 0, 4)]
    assert diversify(candidates, set(), []) == candidates


def test_the_queue_index_flag_prefilters_and_the_document_has_the_last_word(ranked):
    champion, docs = ranked
    me = UserFactory()
    docs[5].predictions.update(in_queue=False)  # closed: not walked at all
    Document.objects.filter(pk=docs[4].pk).update(is_labeled=True)  # flag still open (stale): skipped anyway
    ids = [c.document_id for c in pool_candidates(champion, annotator_id=me.pk)]
    assert ids == [docs[i].pk for i in (3, 2, 1, 0)]


def test_the_ranking_window_widens_when_its_top_rows_are_taken(ranked, monkeypatch):
    """The index is read a window at a time; leased and skipped rows at the top never starve the queue."""
    import labeling.selectors.queue as q

    champion, docs = ranked
    me = UserFactory()
    AssignmentFactory(document=docs[5])
    AssignmentFactory(document=docs[4], annotator=me, state=AssignmentState.SKIPPED)
    monkeypatch.setattr(q, "WINDOW", 2)  # the two best rows are both unavailable to me
    ids = [c.document_id for c in pool_candidates(champion, annotator_id=me.pk, limit=3)]
    assert ids == [docs[3].pk, docs[2].pk, docs[1].pk]
    # Fewer left than asked for: every remaining row, and the walk stops at the end of the index.
    assert [c.document_id for c in pool_candidates(champion, annotator_id=me.pk, limit=10)] == [
        docs[i].pk for i in (3, 2, 1, 0)
    ]


def test_a_candidate_carries_what_the_response_shows(ranked):
    champion, docs = ranked
    best = pool_candidates(champion, annotator_id=UserFactory().pk)[0]
    document, prediction = offer(best, champion)
    assert document.pk == docs[5].pk and document.text == docs[5].text
    assert document.metadata == docs[5].metadata and document.is_labeled is False
    stored = docs[5].predictions.get()
    assert prediction.probabilities == stored.probabilities
    assert prediction.acquisition_score == stored.acquisition_score == best.score
    assert prediction.model_version == champion


def test_lease_context_counts_the_callers_leases_in_this_project_only(ranked):
    champion, docs = ranked
    me, other = UserFactory(), UserFactory()
    AssignmentFactory(document=docs[0], annotator=me, state=AssignmentState.DONE)
    live = AssignmentFactory(document=docs[1], annotator=me)
    AssignmentFactory(document=docs[2], annotator=other)
    AssignmentFactory(annotator=me)  # another project
    context = lease_context(project_id=champion.project_id, annotator_id=me.pk)
    assert (context.lease_count, context.active_id, context.live_leases) == (2, live.pk, 2)
    assert context.champion is not None and context.champion.pk == champion.pk
    assert context.champion.label_map == champion.label_map and context.champion.version == champion.version
    assert lease_context(project_id=AssignmentFactory().project_id, annotator_id=me.pk).champion is None

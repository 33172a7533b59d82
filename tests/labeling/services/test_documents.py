"""document_bulk_create: dedupe, all-or-nothing, seeded holdout, one scoring message, few queries."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from labeling.models import Document, Split, text_hash
from labeling.services.documents import document_bulk_create, holdout_draw
from labeling.services.errors import ExternalIdConflictError
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return project_create(name="ingest", labels=["a", "b"], holdout_fraction=0.2, seed=11)


def test_documents_get_hash_split_and_metadata(project):
    [(doc, created)] = document_bulk_create(project=project, items=[{"text": "hello", "metadata": {"k": 1}}])
    assert created
    doc.refresh_from_db()
    assert doc.content_hash == text_hash("hello")
    assert doc.metadata == {"k": 1}
    assert doc.split == (
        Split.HOLDOUT if holdout_draw(seed=11, content_hash=doc.content_hash, fraction=0.2) else Split.POOL
    )


def test_holdout_share_is_seeded_and_close_to_the_fraction(project):
    items = [{"text": f"text {i}"} for i in range(1000)]
    results = document_bulk_create(project=project, items=items)
    holdout = {doc.text for doc, _ in results if doc.split == Split.HOLDOUT}
    assert 150 <= len(holdout) <= 250
    twin = project_create(name="twin", labels=["a", "b"], holdout_fraction=0.2, seed=11)
    again = {
        doc.text for doc, _ in document_bulk_create(project=twin, items=items) if doc.split == Split.HOLDOUT
    }
    assert again == holdout  # same seed and texts: the same documents are held out
    other = project_create(name="other seed", labels=["a", "b"], holdout_fraction=0.2, seed=12)
    assert {
        d.text for d, _ in document_bulk_create(project=other, items=items) if d.split == Split.HOLDOUT
    } != holdout


def test_known_external_ids_return_the_stored_document(project):
    first = document_bulk_create(project=project, items=[{"text": "one", "external_id": "e1"}])
    again = document_bulk_create(
        project=project,
        items=[{"text": "one, edited", "external_id": "e1"}, {"text": "two", "external_id": "e2"}],
        on_conflict="skip",
    )
    assert again[0] == (first[0][0], False)
    assert again[1][1] is True
    assert Document.objects.filter(project=project).count() == 2


def test_a_known_external_id_with_another_text_raises_by_default_and_stores_nothing(project):
    document_bulk_create(project=project, items=[{"text": "one", "external_id": "e1"}])
    with pytest.raises(ExternalIdConflictError) as info:
        document_bulk_create(
            project=project,
            items=[{"text": "two", "external_id": "e2"}, {"text": "one, edited", "external_id": "e1"}],
        )
    assert "items[1].text" in info.value.fields
    assert list(Document.objects.filter(project=project).values_list("text", flat=True)) == ["one"]


def test_a_bad_item_stores_nothing_and_names_its_index(project):
    with pytest.raises(ValidationError) as info:
        document_bulk_create(project=project, items=[{"text": "ok"}, {"text": "ok"}, {"text": "bad\x00"}])
    assert "items[2].text" in info.value.message_dict
    assert not Document.objects.exists()


def test_one_scoring_message_per_call_and_a_constant_number_of_queries(
    project, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    items = [{"text": f"t{i}", "external_id": f"id{i}"} for i in range(1000)]
    with django_capture_on_commit_callbacks() as sent, django_assert_max_num_queries(6):
        document_bulk_create(project=project, items=items)
    assert len(sent) == 1
    with django_capture_on_commit_callbacks() as sent:
        document_bulk_create(project=project, items=items[:10])  # nothing new: nothing to score
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_the_same_external_ids_store_each_once():
    project = project_create(name="race", labels=["a", "b"])
    items = [{"text": f"t{i}", "external_id": f"same{i}"} for i in range(200)]
    results: list[list] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            results.append(document_bulk_create(project=project, items=items))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Document.objects.filter(project=project).count() == 200
    ids = {tuple(doc.pk for doc, _ in r) for r in results}
    assert len(ids) == 1  # every caller got the same stored documents back
    assert sum(created for r in results for _, created in r) == 200

"""The re-scorer's walk over a project: newest first, skipping what the model already scored."""

from __future__ import annotations

import pytest

from labeling.selectors.models import champion_has_gaps, documents_unscored_page
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_keyset_walk_visits_every_unscored_document_once_newest_first() -> None:
    project = f.ProjectFactory()
    docs = [f.DocumentFactory(project=project) for _ in range(11)]
    model = f.ModelVersionFactory(project=project)
    for doc in docs[::3]:  # already scored by this model
        f.PredictionFactory(document=doc, model_version=model)
    f.PredictionFactory(document=docs[1], model_version=f.ModelVersionFactory(project=project))  # another model

    seen: list[int] = []
    cursor = None
    while True:
        page, cursor = documents_unscored_page(model, below=cursor, size=4)
        if cursor is None:
            break
        assert all(text for _, text in page)
        seen.extend(doc_id for doc_id, _ in page)
    expected = [d.pk for d in reversed(docs) if d not in docs[::3]]
    assert seen == expected


def test_gap_check_counts_only_this_models_predictions() -> None:
    project = f.ProjectFactory()
    docs = [f.DocumentFactory(project=project) for _ in range(3)]
    model = f.ModelVersionFactory(project=project)
    f.DocumentFactory()  # another project's document does not count
    for doc in docs[:2]:
        f.PredictionFactory(document=doc, model_version=model)
    assert champion_has_gaps(model)
    f.PredictionFactory(document=docs[2], model_version=model)
    assert not champion_has_gaps(model)

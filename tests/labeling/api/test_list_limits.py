"""The documents list is bounded: pages of at most 100 full texts, and ``q=`` reads a trigram index."""

from __future__ import annotations

import pytest
from django.db import connection

from labeling.models import Document, text_hash

pytestmark = pytest.mark.django_db


def test_page_size_is_capped_at_100(ingest_client, project):
    Document.objects.bulk_create(
        Document(project=project, text=f"text {i}", content_hash=text_hash(f"text {i}")) for i in range(130)
    )
    body = ingest_client.get(f"/api/v1/projects/{project.pk}/documents/", {"page_size": 1000}).json()
    assert len(body["results"]) == 100 and body["next"]


def test_search_uses_the_trigram_index(project, docs):
    from labeling.selectors.documents import DocumentFilters, document_list

    qs = document_list(project=project, filters=DocumentFilters(search="number 11"))
    # The search predicate alone, as the list compiles it: on a large project the planner picks the index.
    sql, params = Document.objects.filter(text__icontains="number 11").values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        # A 12-row table would be read whole; with plain scans off, only an index on the predicate helps.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "document_text_upper_trgm" in plan
    assert [d.pk for d in qs] == [docs[11].pk]

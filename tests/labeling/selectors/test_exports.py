"""Export rows survive awkward text: quotes, commas, newlines, HTML."""

from __future__ import annotations

import csv
import io
import json

import pytest

from labeling.selectors.exports import csv_chunks, jsonl_chunks
from tests.factories import AnnotationFactory, DocumentFactory

pytestmark = pytest.mark.django_db

AWKWARD = 'She said "no", then\nleft. <script>alert(1)</script>, 🙂'


def test_awkward_text_round_trips_through_csv_and_jsonl():
    doc = DocumentFactory(text=AWKWARD, external_id="ext,1")
    AnnotationFactory(document=doc, label="rotten")
    rows = list(csv.DictReader(io.StringIO(b"".join(csv_chunks(doc.project)).decode())))
    assert [(r["text"], r["external_id"], r["label"]) for r in rows] == [(AWKWARD, "ext,1", "rotten")]
    [line] = b"".join(jsonl_chunks(doc.project)).decode().splitlines()
    assert json.loads(line)["text"] == AWKWARD


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tlead", "\rlead"])
def test_csv_cells_a_spreadsheet_would_run_as_formulas_get_a_quote_and_jsonl_is_unchanged(text):
    doc = DocumentFactory(text=text, external_id="=ext")
    AnnotationFactory(document=doc, label="rotten")
    [row] = list(csv.DictReader(io.StringIO(b"".join(csv_chunks(doc.project)).decode(), newline="")))
    assert (row["text"], row["external_id"], row["label"]) == ("'" + text, "'=ext", "rotten")
    [line] = b"".join(jsonl_chunks(doc.project)).decode().splitlines()
    assert (json.loads(line)["text"], json.loads(line)["external_id"]) == (text, "=ext")

"""Multi-label training labels in imports: a list (JSONL, Parquet), ','-joined (CSV); a bad set names row and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from labeling import roles
from labeling.models import Annotation, Document, ImportJob, LabelsAs
from labeling.services.import_rows import ImportLabelError
from labeling.services.imports import import_file
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests.factories import UserFactory
from tests.labeling.multilabel.conftest import LABELS, TEXTS
from tests.labeling.test_import_labels import write

pytestmark = pytest.mark.django_db

SETS = [["water"], ["shelter"], ["food", "water"], [], ["medical_help"], ["food"]]


def _project():
    return project_create(
        name="needs", labels=LABELS, task_type="multi_label", holdout_fraction=0.0, retrain_after=1000
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_sets_import_as_training_labels_in_every_format(tmp_path: Path, suffix: str) -> None:
    project = _project()
    as_csv = suffix == ".csv"
    rows = [
        {"id": f"m{i}", "text": text, "needs": ",".join(s) if as_csv else s}
        for i, (text, s) in enumerate(zip(TEXTS, SETS, strict=True))
    ]
    import_file(
        project=project,
        path=write(tmp_path / f"r{suffix}", rows),
        label_col="needs",
        external_id_col="id",
        labels_as=LabelsAs.TRAINING,
    )
    stored = dict(Annotation.objects.values_list("document__external_id", "label"))
    # a CSV's empty cell is "no label" (it cannot say "none applies"); a list's [] is the empty set
    expected = {"m0": "water", "m1": "shelter", "m2": "water,food", "m4": "medical_help", "m5": "food"}
    if not as_csv:
        expected["m3"] = ""
    assert stored == expected


@pytest.mark.parametrize(
    ("bad", "problem"),
    [(["water", "lava"], "lava"), (["food", "food"], "twice"), ("water,,food", "''"), (3, "list")],
)
def test_a_bad_set_fails_the_import_naming_row_and_column(tmp_path: Path, bad, problem: str) -> None:
    project = _project()
    rows = [{"text": t, "needs": s} for t, s in zip(TEXTS, SETS, strict=True)]
    rows[4]["needs"] = bad
    with pytest.raises(ImportLabelError) as caught:
        import_file(
            project=project, path=write(tmp_path / "r.jsonl", rows), label_col="needs", labels_as=LabelsAs.TRAINING
        )
    assert "row 5" in str(caught.value) and "'needs'" in str(caught.value) and problem in str(caught.value)
    assert not Document.objects.exists() and not Annotation.objects.exists()


def test_api_a_bad_set_is_a_400_naming_row_and_field(client, tmp_path: Path) -> None:
    project = _project()
    user = UserFactory()
    membership_ensure(project=project, user=user, role=roles.MANAGER)
    client.force_login(user)
    rows = [{"text": t, "needs": ",".join(s)} for t, s in zip(TEXTS, SETS, strict=True)]
    rows[2]["needs"] = "water;food"
    path = write(tmp_path / "r.csv", rows)
    with path.open("rb") as fh:
        response = client.post(
            reverse("api-imports", args=[project.pk]), {"file": fh, "label_col": "needs", "labels_as": "training"}
        )
    assert response.status_code == 400, response.content
    message = response.json()["error"]["fields"]["label_col"]
    assert "row 3" in message and "water;food" in message
    assert not ImportJob.objects.exists() and not Document.objects.exists()

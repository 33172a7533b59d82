"""Label-set changes and the model: an old set's model is never the champion; imports check the current set."""

from __future__ import annotations

import pytest

from labeling.models import ModelStatus, ModelVersion, RunStatus, RunTrigger, TrainingRun
from labeling.services.errors import PromotionError, RollbackError
from labeling.services.imports import import_file
from labeling.services.labelset import labelset_add, labelset_merge, labelset_rename
from labeling.services.training.promotion import challenger_decide, model_version_promote, model_version_rollback
from tests import factories as f
from tests.support.fixtures import shared_embedding_cache  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = f.ProjectFactory(labels=[{"name": n, "text": n, "key": str(i + 1)} for i, n in enumerate("abc")])
    f.ModelVersionFactory(project=project, version=1, status=ModelStatus.RETIRED, artifact_path="a1",
                          promoted_at="2026-01-01T00:00:00Z")
    f.ModelVersionFactory(project=project, version=2, status=ModelStatus.CHAMPION, artifact_path="a2")
    return project


@pytest.mark.parametrize("gate_says_promote", [True, False])
def test_a_challenger_trained_on_the_old_set_is_not_promoted_and_a_retrain_follows(
    project, django_capture_on_commit_callbacks, gate_says_promote
):
    run = f.TrainingRunFactory(project=project, status=RunStatus.RUNNING)
    challenger = f.ModelVersionFactory(project=project, version=3, status=ModelStatus.CANDIDATE, artifact_path="a3")
    user = f.UserFactory()
    with django_capture_on_commit_callbacks():
        change = labelset_rename(project=project, label="c", new_name="d", by=user)
    assert change.run is not None and change.run.pk == run.pk  # counted on the open run
    with django_capture_on_commit_callbacks() as sent:
        challenger_decide(
            run=run, challenger=challenger, promote=gate_says_promote, reason="gate", evaluated_against=None
        )
    challenger.refresh_from_db()
    assert challenger.status == ModelStatus.REJECTED and "label set changed" in challenger.decision_reason
    assert not ModelVersion.objects.filter(project=project, status=ModelStatus.CHAMPION).exists()
    follow_up = TrainingRun.objects.get(project=project, status=RunStatus.QUEUED)
    assert follow_up.trigger == RunTrigger.LABEL_SET and len(sent) == 1  # its TRAIN message, after commit


def test_a_model_of_an_older_set_is_neither_promoted_nor_rolled_back_to(project, django_capture_on_commit_callbacks):
    labelset_add(project=project, name="d", by=None)
    old = ModelVersion.objects.get(project=project, version=2)
    assert old.status == ModelStatus.RETIRED
    with pytest.raises(PromotionError, match="another label set"):
        model_version_promote(model_version=old)
    project.refresh_from_db()
    new = f.ModelVersionFactory(project=project, version=4, status=ModelStatus.CANDIDATE, artifact_path="a4")
    with django_capture_on_commit_callbacks():
        model_version_promote(model_version=new)
    with pytest.raises(RollbackError):  # v1 and v2 were champions, but of the old set
        model_version_rollback(project=project)


def test_an_import_checks_gold_labels_against_the_current_set(project, tmp_path):
    user = f.UserFactory()
    f.AnnotationFactory(document=f.DocumentFactory(project=project), label="b", annotator=user)
    labelset_merge(project=project, labels=["b"], into="a", by=user)
    assert project.label_names == ["a", "c"]  # the caller's instance follows the change
    path = tmp_path / "docs.csv"
    path.write_text("text,label\none,a\ntwo,b\nthree,c\n")
    report = import_file(project=project, path=str(path), text_col="text", label_col="label")
    assert (report.imported, report.rejected) == (2, 1)
    assert [r["reason"] for r in report.rejected_rows] == ["label 'b' is not in the project's label set"]


@pytest.mark.django_db(transaction=True)
def test_a_label_given_while_a_merge_commits_is_checked_against_the_merged_set():
    """The submit waits for the merge's lock on the project, then refuses the merged-away label:
    without the lock it would store "c" after the merge had moved every "c", and that label would be missed."""
    import threading

    from django.core.exceptions import ValidationError
    from django.db import connection, transaction

    from labeling.models import Annotation
    from labeling.services.annotations import annotation_submit

    project = f.ProjectFactory(labels=[{"name": n, "text": n, "key": str(i + 1)} for i, n in enumerate("abc")])
    manager = f.UserFactory()
    lease = f.AssignmentFactory(document=f.DocumentFactory(project=project))
    merged, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def merge() -> None:
        try:
            with transaction.atomic():
                labelset_merge(project=project, labels=["c"], into="a", by=manager)
                merged.set()
                release.wait(10)
        finally:
            connection.close()

    def submit() -> None:
        try:
            annotation_submit(assignment=lease, user=lease.annotator, label="c")
            outcome["stored"] = True
        except ValidationError as exc:
            outcome["error"] = exc.message_dict
        finally:
            connection.close()

    merging = threading.Thread(target=merge)
    merging.start()
    assert merged.wait(10)
    submitting = threading.Thread(target=submit)
    submitting.start()
    submitting.join(0.5)  # it is waiting for the merge's lock (or would have stored "c" by now)
    release.set()
    merging.join(10)
    submitting.join(10)
    assert "label" in outcome.get("error", {}), outcome
    assert not Annotation.objects.filter(label="c").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_after_a_rename_the_retrained_champion_outputs_the_new_set():
    """Real encoder and training (in this process, as the TRAIN task runs it): the old champion is retired at
    once, and the run the rename requested trains, promotes and scores with the new names."""
    from labeling.models import Prediction
    from labeling.selectors.models import champion_get
    from labeling.services.scoring import model_version_rescore
    from labeling.services.training.runs import training_run_execute
    from tests.support.fixtures import labeled_project, train_now  # noqa: F811

    project = labeled_project(pool=60, holdout=20, unlabeled=10)
    first = train_now(project)
    assert first.promoted
    manager = f.UserFactory()
    change = labelset_rename(project=project, label="rotten", new_name="bad", by=manager)
    assert champion_get(project_id=project.pk) is None  # nothing of the old set ranks or predicts meanwhile
    assert change.run is not None and change.run.trigger == RunTrigger.LABEL_SET
    run = training_run_execute(run_id=change.run.pk)
    assert run is not None and run.status == RunStatus.SUCCEEDED and run.promoted, run.decision_reason
    champion = champion_get(project_id=project.pk)
    assert champion is not None and champion.label_map == ["fresh", "bad"]
    model_version_rescore(run_id=run.pk, model_version_id=champion.pk)  # what the promotion enqueued
    predicted = set(Prediction.objects.filter(model_version=champion).values_list("predicted_label", flat=True))
    assert predicted and predicted <= {"fresh", "bad"}


def test_every_insert_path_records_the_version_a_label_was_given_under():
    """A bulk insert (an import, a script) that names no version gets the project's current one."""
    from labeling.models import Annotation

    project = f.ProjectFactory()
    document = f.DocumentFactory(project=project)
    Annotation.objects.bulk_create([Annotation(document=document, annotator=f.UserFactory(), label="fresh")])
    labelset_add(project=project, name="meh", by=None)
    Annotation.objects.bulk_create([Annotation(document=document, annotator=f.UserFactory(), label="meh")])
    assert list(Annotation.objects.order_by("pk").values_list("label_set_version", flat=True)) == [1, 2]

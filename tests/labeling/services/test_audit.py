"""The audit log: each audited change writes exactly one event, with its actor and what changed, in its
own transaction (a change that rolls back leaves none), and the log cannot be changed afterwards,
through the ORM or in PostgreSQL itself."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from labeling import roles
from labeling.models import (
    AnnotationSource,
    AuditAction,
    AuditEvent,
    AuditLogIsAppendOnly,
    ModelStatus,
    Project,
    ReviewItem,
    ReviewReason,
    RunTrigger,
)
from labeling.services.annotations import annotation_submit, annotation_update
from labeling.services.audit import REDACTED, audit_changes, audit_record
from labeling.services.memberships import membership_add, membership_change_role, membership_remove
from labeling.services.projects import project_create, project_delete, project_update_policy
from labeling.services.review import review_decide
from labeling.services.tokens import token_create, token_revoke
from labeling.services.training.promotion import model_version_promote, model_version_rollback
from labeling.services.training.triggers import training_run_request
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss() -> Any:
    return f.UserFactory(username="boss", is_staff=True)


@pytest.fixture
def project(boss: Any) -> Project:
    return project_create(name="audited", labels=["a", "b"], holdout_fraction=0.0, by=boss)


def only(action: str, **filters: Any) -> AuditEvent:
    """The one event of ``action`` (fails when there are none or several)."""
    events = list(AuditEvent.objects.filter(action=action, **filters))
    assert len(events) == 1, [str(e) for e in events]
    return events[0]


def test_creating_and_changing_a_project_records_who_and_the_old_and_new_values(boss, project):
    created = only(AuditAction.PROJECT_CREATED)
    assert (created.actor_id, created.actor_name, created.project_id, created.project_name) == (
        boss.pk, "boss", project.pk, "audited"
    )
    assert created.data["labels"] == ["a", "b"] and created.data["holdout_fraction"] == 0.0

    project_update_policy(project=project, by=boss, retrain_after=20, description=project.description)
    changed = only(AuditAction.PROJECT_UPDATED)
    assert changed.data == {"retrain_after": {"old": 50, "new": 20}}  # the unchanged description is left out
    project_update_policy(project=project, by=boss, retrain_after=20)  # changes nothing: records nothing
    assert AuditEvent.objects.filter(action=AuditAction.PROJECT_UPDATED).count() == 1


def test_a_refused_or_rolled_back_change_leaves_no_event(boss, project):
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError):
        project_update_policy(project=project, by=boss, retrain_after=0)
    member = f.UserFactory(username="m")
    with pytest.raises(RuntimeError), transaction.atomic():
        membership_add(project=project, user=member, role=roles.ANNOTATOR, by=boss)
        raise RuntimeError("something after it failed: the membership and its record roll back together")
    assert AuditEvent.objects.count() == before
    assert not project.memberships.filter(user=member).exists()


def test_membership_changes_record_the_member_and_both_roles(boss, project):
    member = f.UserFactory(username="carol")
    membership_add(project=project, user=member, role=roles.ANNOTATOR, by=boss)
    membership_change_role(project=project, user=member, role=roles.REVIEWER, by=boss)
    membership_change_role(project=project, user=member, role=roles.REVIEWER, by=boss)  # no change
    membership_remove(project=project, user=member, by=boss)
    events = list(AuditEvent.objects.filter(action__startswith="member.").order_by("id"))
    assert {(e.target_type, e.target_id, e.target_repr, e.actor_name) for e in events} == {
        ("user", str(member.pk), "carol", "boss")
    }
    assert [(e.action, e.data["old_role"], e.data["new_role"]) for e in events] == [
        ("member.added", "", "annotator"),
        ("member.role_changed", "annotator", "reviewer"),
        ("member.removed", "reviewer", ""),
    ]


def test_promote_and_rollback_by_hand_record_the_champions(boss, project):
    old = f.ModelVersionFactory(
        project=project, version=1, status=ModelStatus.CHAMPION, artifact_path="a/1", promoted_at=timezone.now()
    )
    new = f.ModelVersionFactory(project=project, version=2, status=ModelStatus.CANDIDATE, artifact_path="a/2")
    model_version_promote(model_version=new, by=boss)
    model_version_promote(model_version=new, by=boss)  # already champion: nothing happens, nothing recorded
    promoted = only(AuditAction.MODEL_PROMOTED)
    assert (promoted.target_type, promoted.target_id, promoted.target_repr) == ("model_version", str(new.pk), "v2")
    assert promoted.data == {"old_champion": 1, "new_champion": 2} and promoted.actor_name == "boss"
    model_version_rollback(project=project, by=boss)
    rolled = only(AuditAction.MODEL_ROLLED_BACK)
    assert rolled.data == {"old_champion": 2, "new_champion": 1} and rolled.target_id == str(old.pk)


def test_a_retrain_by_hand_is_recorded_and_automatic_triggers_are_not(boss, project):
    run = training_run_request(project=project, trigger=RunTrigger.MANUAL, requested_by=boss)
    training_run_request(project=project, trigger=RunTrigger.THRESHOLD)  # counted on the open run
    training_run_request(project=project, trigger=RunTrigger.MANUAL, requested_by=boss)  # coalesced
    events = list(AuditEvent.objects.filter(action=AuditAction.RETRAIN_REQUESTED).order_by("id"))
    assert [(e.target_id, e.data, e.actor_name) for e in events] == [
        (str(run.pk), {"run": run.pk, "coalesced": False}, "boss"),
        (str(run.pk), {"run": run.pk, "coalesced": True}, "boss"),
    ]


def test_a_first_label_is_not_an_edit_and_a_changed_one_is(project):
    annotator = f.UserFactory(username="ann")
    membership_add(project=project, user=annotator, role=roles.ANNOTATOR)
    doc = f.DocumentFactory(project=project)
    lease = f.AssignmentFactory(document=doc, annotator=annotator)
    before = AuditEvent.objects.count()
    annotation, _ = annotation_submit(assignment=lease, user=annotator, label="a", source=AnnotationSource.API)
    assert AuditEvent.objects.count() == before  # the hot path writes no audit event
    annotation_update(annotation=annotation, user=annotator, label="a")  # same label: not an edit
    annotation_update(annotation=annotation, user=annotator, label="b")
    edit = only(AuditAction.ANNOTATION_CHANGED)
    assert (edit.actor_name, edit.project_id, edit.target_type, edit.target_id) == (
        "ann", project.pk, "annotation", str(annotation.pk)
    )
    assert edit.data == {"document": doc.pk, "annotator_id": annotator.pk, "old_label": "a", "new_label": "b"}


def test_a_review_decision_is_recorded(project):
    reviewer = f.UserFactory(username="rev")
    membership_add(project=project, user=reviewer, role=roles.REVIEWER)
    doc = f.DocumentFactory(project=project)
    f.AnnotationFactory(document=doc, label="a")
    item = ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.AUDIT)
    review_decide(item=item, reviewer=reviewer, label="b", comment="b fits")
    decided = only(AuditAction.REVIEW_DECIDED)
    assert (decided.actor_name, decided.target_type, decided.target_id) == ("rev", "review_item", str(item.pk))
    assert decided.data == {
        "document": doc.pk, "decision": "override", "label": "b", "replaced_label": "a", "replaced_by": "annotators"
    }


def test_tokens_are_recorded_site_wide_without_the_key(boss):
    user = f.UserFactory(username="script")
    _, key = token_create(user=user, client="ci", ttl_days=0, by=boss)
    token_create(user=user, client="ci", ttl_days=0, by=boss)  # rotation
    created = list(AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).order_by("id"))
    assert [(e.project_id, e.target_repr, e.data) for e in created] == [
        (None, "script", {"client": "ci", "expires": None, "rotated": False}),
        (None, "script", {"client": "ci", "expires": None, "rotated": True}),
    ]
    assert token_revoke(user=user, client="ci", by=boss) == 1
    assert token_revoke(user=user, client="ci", by=boss) == 0  # nothing to revoke: nothing recorded
    revoked = only(AuditAction.TOKEN_REVOKED)
    assert revoked.data == {"client": "ci", "all_clients": False, "count": 1}
    assert key not in str(list(AuditEvent.objects.values_list("data", flat=True)))


def test_the_token_commands_are_recorded_without_an_actor(capsys):
    f.UserFactory(username="cli-user")
    call_command("token_create", "cli-user", "--client", "deploy")
    call_command("token_revoke", "cli-user")
    events = AuditEvent.objects.filter(target_repr="cli-user").order_by("id")
    assert [(e.action, e.actor_id, e.actor_name) for e in events] == [
        ("token.created", None, ""), ("token.revoked", None, "")
    ]


def test_secret_fields_never_reach_the_log():
    changes = audit_changes(
        before={"webhook_secret": "old-s3cret", "retrain_after": 5}, after={"webhook_secret": "new", "retrain_after": 6}
    )
    assert changes == {"webhook_secret": {"old": REDACTED, "new": REDACTED}, "retrain_after": {"old": 5, "new": 6}}
    with transaction.atomic():
        event = audit_record(actor=None, action=AuditAction.PROJECT_UPDATED, data={"nested": {"api_key": "k"}})
    assert event.data == {"nested": {"api_key": REDACTED}}


def test_deleting_a_project_or_a_user_keeps_their_history(boss, project):
    member = f.UserFactory(username="leaver")
    membership_add(project=project, user=member, role=roles.MANAGER, by=member)
    project_id = project.pk
    project_delete(project=project, by=boss)
    assert not Project.objects.filter(pk=project_id).exists()
    deleted = only(AuditAction.PROJECT_DELETED)
    assert deleted.data == {"documents": 0, "labels": 0, "members": 1} and deleted.actor_name == "boss"
    member.delete()  # no key from the log blocks it
    history = AuditEvent.objects.filter(project_id=project_id).values_list("action", "actor_name", "project_name")
    assert sorted(history) == [
        ("member.added", "leaver", "audited"), ("project.created", "boss", "audited"),
        ("project.deleted", "boss", "audited"),
    ]


def test_the_orm_refuses_to_change_or_delete_an_event(project):
    event = AuditEvent.objects.first()
    assert event is not None
    event.actor_name = "someone else"
    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(actor_name="x")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE labeling_auditevent SET actor_name = 'forged'",
        "UPDATE labeling_auditevent SET data = '{}'::jsonb WHERE id = %s",
        "DELETE FROM labeling_auditevent WHERE id = %s",
        "DELETE FROM labeling_auditevent",
    ],
)
def test_postgresql_refuses_update_and_delete(project, sql):
    event = AuditEvent.objects.get(action=AuditAction.PROJECT_CREATED)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk] if "%s" in sql else None)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor_name, stored.data) == (event.actor_name, event.data)
    with connection.cursor() as cursor:  # and INSERT still works: the log is append-only, not read-only
        cursor.execute(
            "INSERT INTO labeling_auditevent (created_at, action, actor_name, project_name, target_type, "
            "target_id, target_repr, data) VALUES (now(), 'project.updated', '', '', '', '', '', '{}')"
        )
    assert AuditEvent.objects.count() == 2


def test_manage_py_retrain_is_recorded_without_an_actor(project, capsys):
    call_command("retrain", project.name)
    event = only(AuditAction.RETRAIN_REQUESTED)
    assert (event.actor_id, event.actor_name, event.project_id, event.data["coalesced"]) == (
        None, "", project.pk, False
    )

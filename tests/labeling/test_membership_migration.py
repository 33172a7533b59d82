"""Upgrading keeps the history: 0007 turns group holders into members, 0016 folds their records into the audit log.

Both run for real: the database goes back to 0014 (where ``MembershipChange`` still exists), 0007's
function runs on that schema, then the executor migrates forward through 0016 and back again.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from labeling.models import AuditEvent, ProjectMembership

pytestmark = pytest.mark.django_db(transaction=True)
upgrade = importlib.import_module("labeling.migrations.0007_memberships_from_groups")
BEFORE = [("labeling", "0014_review_decision_item_restrict")]
FOLD = [("labeling", "0016_audit_log")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate labeling to ``targets``; the app registry as it was then."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0014() -> Iterator[Any]:
    old_apps = _migrate(BEFORE)
    try:
        yield old_apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_group_holders_become_members_and_their_records_fold_into_the_audit_log(at_0014: Any) -> None:
    apps = at_0014
    User, Group = apps.get_model("auth", "User"), apps.get_model("auth", "Group")
    Project, Change = apps.get_model("labeling", "Project"), apps.get_model("labeling", "MembershipChange")
    labels = [{"name": "a", "text": "a", "key": "1"}, {"name": "b", "text": "b", "key": "2"}]
    projects = [Project.objects.create(name=f"p{i}", labels=labels) for i in range(2)]
    ann, feeder, both, retired = (User.objects.create(username=n) for n in ("ann", "feeder", "both", "retired"))
    boss = User.objects.create(username="boss", is_staff=True)
    retired.is_active = False
    retired.save()
    annotators, ingest = (Group.objects.get_or_create(name=n)[0] for n in ("annotator", "ingest"))
    for user in (ann, both, retired):
        user.groups.add(annotators)
    for user in (feeder, both):
        user.groups.add(ingest)
    Membership = apps.get_model("labeling", "ProjectMembership")
    Membership.objects.create(project=projects[0], user=ann, role="manager")

    upgrade.groups_to_memberships(apps, None)
    upgrade.groups_to_memberships(apps, None)  # idempotent: a re-run adds nothing

    held = {(m.project_id, m.user_id): m.role for m in Membership.objects.all()}
    for p in projects:
        assert held[(p.pk, feeder.pk)] == "ingest"
        assert held[(p.pk, both.pk)] == "annotator"
        assert (p.pk, boss.pk) not in held and (p.pk, retired.pk) not in held
    assert held[(projects[0].pk, ann.pk)] == "manager"  # an existing membership stays
    assert held[(projects[1].pk, ann.pk)] == "annotator"
    assert Change.objects.filter(action="added", changed_by=None).count() == len(held) - 1
    # A manager's later change, with an author: it must keep its author and roles in the audit log.
    Change.objects.create(
        project=projects[0], member=feeder, changed_by=ann, action="role_changed", old_role="ingest",
        new_role="reviewer",
    )
    grants = Change.objects.count()

    _migrate(FOLD)

    events = AuditEvent.objects.order_by("created_at", "id")
    assert events.count() == grants
    assert events.filter(action="member.added", actor_id=None, actor_name="").count() == len(held) - 1
    rerole = events.get(action="member.role_changed")
    assert (rerole.actor_id, rerole.actor_name) == (ann.pk, "ann")
    assert (rerole.project_id, rerole.project_name) == (projects[0].pk, "p0")
    assert (rerole.target_type, rerole.target_id, rerole.target_repr) == ("user", str(feeder.pk), "feeder")
    assert rerole.data == {"old_role": "ingest", "new_role": "reviewer"}
    assert ProjectMembership.objects.count() == len(held)

    # And back: the membership events become MembershipChange rows again.
    old_apps = _migrate(BEFORE)
    back = old_apps.get_model("labeling", "MembershipChange").objects
    assert back.count() == grants
    assert back.get(action="role_changed").changed_by_id == ann.pk

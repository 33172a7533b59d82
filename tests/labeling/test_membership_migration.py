"""Upgrading locks nobody out: migration 0007 makes today's group holders members of today's projects."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group

from labeling.models import MembershipChange, ProjectMembership
from tests import factories as f

pytestmark = pytest.mark.django_db
upgrade = importlib.import_module("labeling.migrations.0007_memberships_from_groups")


def test_group_holders_become_members_of_every_project_and_staff_need_nothing() -> None:
    projects = [f.ProjectFactory(), f.ProjectFactory()]
    ann, feeder, both, retired = (f.UserFactory() for _ in range(4))
    boss = f.UserFactory(is_staff=True)
    retired.is_active = False
    retired.save()
    annotators, ingest = Group.objects.get_or_create(name="annotator")[0], Group.objects.get_or_create(name="ingest")[0]
    for user in (ann, both, retired):
        user.groups.add(annotators)
    for user in (feeder, both):
        user.groups.add(ingest)
    already = ProjectMembership.objects.create(project=projects[0], user=ann, role="manager")

    upgrade.groups_to_memberships(apps, None)
    upgrade.groups_to_memberships(apps, None)  # idempotent: a re-run adds nothing

    held = {(m.project_id, m.user_id): m.role for m in ProjectMembership.objects.all()}
    for p in projects:
        assert held[(p.pk, feeder.pk)] == "ingest"
        assert held[(p.pk, both.pk)] == "annotator"
        assert (p.pk, boss.pk) not in held and (p.pk, retired.pk) not in held
    assert held[(projects[0].pk, ann.pk)] == "manager" == already.role  # an existing membership stays
    assert held[(projects[1].pk, ann.pk)] == "annotator"
    assert MembershipChange.objects.filter(action="added", changed_by=None).count() == len(held) - 1

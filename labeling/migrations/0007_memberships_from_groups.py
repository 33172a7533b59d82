"""Upgrading locks nobody out: today's role holders become members of today's projects.

Before memberships, the ``annotator`` and ``ingest`` groups granted their role in every project.
This makes each holder a member of every project that exists now, with that role (annotator wins
over ingest for an account in both: it can label, and a manager can add an ingest role later), and
records each grant as a ``MembershipChange`` without an author. The groups stay, granting nothing,
so a rollback to the previous release still finds them; an admin may delete them.
"""

from django.db import migrations

# Earlier entries win for an account in several groups.
GROUP_ROLES = (("annotator", "annotator"), ("ingest", "ingest"))


def groups_to_memberships(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Project = apps.get_model("labeling", "Project")
    Membership = apps.get_model("labeling", "ProjectMembership")
    Change = apps.get_model("labeling", "MembershipChange")
    project_ids = list(Project.objects.values_list("pk", flat=True))
    granted: dict[int, str] = {}
    for group_name, role in GROUP_ROLES:
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            continue
        for user_id in group.user_set.filter(is_active=True).values_list("pk", flat=True):
            granted.setdefault(user_id, role)
    existing = set(Membership.objects.values_list("project_id", "user_id"))
    members, changes = [], []
    for user_id, role in sorted(granted.items()):
        for project_id in project_ids:
            if (project_id, user_id) in existing:
                continue
            members.append(Membership(project_id=project_id, user_id=user_id, role=role))
            changes.append(Change(project_id=project_id, member_id=user_id, action="added", new_role=role))
    Membership.objects.bulk_create(members, batch_size=1000)
    Change.objects.bulk_create(changes, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("labeling", "0006_project_membership"), ("auth", "0012_alter_user_first_name_max_length")]
    # Reversing drops the tables (0006); nothing to undo here.
    operations = [migrations.RunPython(groups_to_memberships, migrations.RunPython.noop)]

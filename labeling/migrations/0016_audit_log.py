"""The audit log: ``AuditEvent``, append-only in PostgreSQL too; membership changes folded into it.

1. Create ``labeling_auditevent`` (snapshot columns for the project and the actor, no foreign keys: a
   record outlives what it describes).
2. Copy every ``MembershipChange`` row into it as a ``member.*`` event (the member's and the author's
   usernames and the project's name as they are now), then drop ``MembershipChange``: one log, not two.
3. Extended statistics on (project_id, actor_name), for the actor filter's plan (see the model's indexes).
4. A trigger refuses UPDATE and DELETE on the table, whoever asks (the ORM refuses first, see
   ``AuditEvent.save``). TRUNCATE is not refused: it needs the table owner's privilege, which the
   service's database role should not hold in production (docs/SECURITY.md); the test suite empties
   tables with it between transactional tests.

Reversible: going back copies the membership events into ``MembershipChange`` again (those whose
member still exists) and drops the table.
"""

import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MEMBERSHIP_ACTIONS = {"added": "member.added", "role_changed": "member.role_changed", "removed": "member.removed"}

APPEND_ONLY = """
CREATE FUNCTION labeling_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'labeling_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER labeling_auditevent_append_only
    BEFORE UPDATE OR DELETE ON labeling_auditevent
    FOR EACH ROW EXECUTE FUNCTION labeling_auditevent_append_only();
-- A project's actors are few and belong to it: without this the planner takes the actor filter for
-- independent of the project, expects a handful of rows and sorts them all instead of walking the index.
CREATE STATISTICS labeling_auditevent_project_actor (dependencies, mcv) ON project_id, actor_name
    FROM labeling_auditevent;
"""
DROP_APPEND_ONLY = """
DROP STATISTICS IF EXISTS labeling_auditevent_project_actor;
DROP TRIGGER IF EXISTS labeling_auditevent_append_only ON labeling_auditevent;
DROP FUNCTION IF EXISTS labeling_auditevent_append_only();
"""




def _postgresql_only(sql: str):
    """PostgreSQL's triggers and statistics; SQLite (``make demo``) has none: a trigger there would break
    on its table rebuilds (a later field change recreates the table). The ORM's guards still hold there."""

    def run(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        for statement in connection.ops.prepare_sql_script(sql):
            schema_editor.execute(statement, params=None)

    return run


def fold_membership_changes(apps, schema_editor):
    Change = apps.get_model("labeling", "MembershipChange")
    Event = apps.get_model("labeling", "AuditEvent")
    events = []
    for change in Change.objects.select_related("project", "member", "changed_by").order_by("created_at", "id"):
        events.append(
            Event(
                created_at=change.created_at,
                action=MEMBERSHIP_ACTIONS[change.action],
                actor_id=change.changed_by_id,
                actor_name=change.changed_by.username if change.changed_by else "",
                project_id=change.project_id,
                project_name=change.project.name,
                target_type="user",
                target_id=str(change.member_id),
                target_repr=change.member.username,
                data={"old_role": change.old_role, "new_role": change.new_role},
            )
        )
    Event.objects.bulk_create(events, batch_size=1000)


def unfold_membership_changes(apps, schema_editor):
    Change = apps.get_model("labeling", "MembershipChange")
    Event = apps.get_model("labeling", "AuditEvent")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    Project = apps.get_model("labeling", "Project")
    back = {new: old for old, new in MEMBERSHIP_ACTIONS.items()}
    users = set(User.objects.values_list("pk", flat=True))
    projects = set(Project.objects.values_list("pk", flat=True))
    changes = []
    for event in Event.objects.filter(action__in=list(back)).order_by("created_at", "id"):
        member_id = int(event.target_id)
        if member_id not in users or event.project_id not in projects:
            continue  # the old table's foreign keys cannot hold it
        changes.append(
            Change(
                project_id=event.project_id,
                member_id=member_id,
                changed_by_id=event.actor_id if event.actor_id in users else None,
                action=back[event.action],
                old_role=event.data.get("old_role", ""),
                new_role=event.data.get("new_role", ""),
                created_at=event.created_at,
            )
        )
    Change.objects.bulk_create(changes, batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('labeling', '0015_sso_identity'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('action', models.CharField(choices=[('project.created', 'Project created'), ('project.updated', 'Project settings or policy changed'), ('project.deleted', 'Project deleted'), ('member.added', 'Member added'), ('member.role_changed', "Member's role changed"), ('member.removed', 'Member removed'), ('model.promoted', 'Model promoted by hand'), ('model.rolled_back', 'Model rolled back'), ('retrain.requested', 'Retrain requested by hand'), ('export.downloaded', 'Labels exported'), ('annotation.changed', 'Label edited'), ('review.decided', 'Review decision'), ('token.created', 'API token created or rotated'), ('token.revoked', 'API token revoked')], max_length=32)),
                ('actor_id', models.BigIntegerField(blank=True, null=True)),
                ('actor_name', models.CharField(blank=True, max_length=150)),
                ('project_id', models.BigIntegerField(blank=True, null=True)),
                ('project_name', models.CharField(blank=True, max_length=200)),
                ('target_type', models.CharField(blank=True, max_length=32)),
                ('target_id', models.CharField(blank=True, max_length=64)),
                ('target_repr', models.CharField(blank=True, max_length=200)),
                ('data', models.JSONField(blank=True, default=dict, help_text='what changed: old -> new values; never secrets')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['project_id', '-created_at', '-id'], name='audit_project_recent'), models.Index(fields=['-created_at', '-id'], name='audit_recent'), models.Index(fields=['action', '-created_at'], name='audit_action_recent'), models.Index(fields=['project_id', 'actor_name', '-created_at', '-id'], name='audit_project_actor_recent'), models.Index(fields=['actor_name', '-created_at', '-id'], name='audit_actor_name_recent'), models.Index(fields=['actor_id', '-created_at'], name='audit_actor_recent'), models.Index(fields=['target_type', 'target_id'], name='audit_target')],
                'constraints': [models.CheckConstraint(condition=models.Q(('action__in', ['project.created', 'project.updated', 'project.deleted', 'member.added', 'member.role_changed', 'member.removed', 'model.promoted', 'model.rolled_back', 'retrain.requested', 'export.downloaded', 'annotation.changed', 'review.decided', 'token.created', 'token.revoked'])), name='audit_action_is_known')],
            },
        ),
        migrations.RunPython(fold_membership_changes, unfold_membership_changes),
        migrations.DeleteModel(
            name='MembershipChange',
        ),
        migrations.RunPython(
            _postgresql_only(APPEND_ONLY), _postgresql_only(DROP_APPEND_ONLY)
        ),
    ]

"""Project members: list, add, change a role, remove, and the audit trail (the project's managers and staff)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, get_or_404, project_or_404
from labeling.api.permissions import IsProjectManager
from labeling.models import MEMBERSHIP_AUDIT_ACTIONS, AuditEvent, MembershipAction, ProjectMembership, ProjectRole
from labeling.selectors.memberships import membership_change_list, membership_list
from labeling.services.memberships import (
    membership_add,
    membership_change_role,
    membership_remove,
    user_resolve,
)


class MembershipOutputSerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    claim_managed = serializers.BooleanField(
        read_only=True, help_text="made by the single sign-on role claim: the next sign-in re-applies the claim"
    )

    class Meta:
        model = ProjectMembership
        ref_name = "Membership"
        fields = ("user_id", "username", "role", "created_at", "created_by", "claim_managed")


class MembershipChangeSerializer(serializers.Serializer):
    """A membership event of the audit log, in the shape this endpoint has always answered."""

    id = serializers.IntegerField()
    member = serializers.CharField(source="target_repr", help_text="the member's username then")
    action = serializers.SerializerMethodField()
    old_role = serializers.SerializerMethodField()
    new_role = serializers.SerializerMethodField()
    changed_by = serializers.SerializerMethodField(help_text="null: a migration or a script")
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "MembershipChange"

    @extend_schema_field(serializers.ChoiceField(choices=MembershipAction.choices))
    def get_action(self, event: AuditEvent) -> str:
        return str(MEMBERSHIP_AUDIT_ACTIONS[event.action])  # type: ignore[index]

    def get_old_role(self, event: AuditEvent) -> str:
        return str(event.data.get("old_role", ""))

    def get_new_role(self, event: AuditEvent) -> str:
        return str(event.data.get("new_role", ""))

    def get_changed_by(self, event: AuditEvent) -> str | None:
        return event.actor_name or None


class _StrictSerializer(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({field: "unknown field" for field in sorted(unknown)})
        return attrs


class MemberCollectionApi(BaseApi):
    """GET lists the members, POST adds one: the project's managers and staff."""

    permission_classes = [IsProjectManager]

    class InputSerializer(_StrictSerializer):
        username = serializers.CharField(required=False, max_length=150)
        user_id = serializers.IntegerField(required=False, min_value=1)
        role = serializers.ChoiceField(choices=ProjectRole.choices)

        class Meta:
            ref_name = "MembershipCreate"

    @extend_schema(operation_id="members_list", responses=MembershipOutputSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        members = membership_list(project=project_or_404(project_id))
        return Response(MembershipOutputSerializer(members, many=True).data)

    @extend_schema(
        operation_id="members_create",
        request=InputSerializer,
        responses={201: MembershipOutputSerializer},
        description="Add a user (by username or user_id) with a role; 400 names the field for an unknown "
        "user, a bad role or someone who is already a member.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        user = user_resolve(username=v.get("username"), user_id=v.get("user_id"))
        membership = membership_add(project=project, user=user, role=v["role"], by=request.user)
        return Response(MembershipOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberItemApi(BaseApi):
    """PATCH changes a member's role, DELETE removes the member: the project's managers and staff."""

    permission_classes = [IsProjectManager]

    class InputSerializer(_StrictSerializer):
        role = serializers.ChoiceField(choices=ProjectRole.choices)

        class Meta:
            ref_name = "MembershipUpdate"

    @extend_schema(
        operation_id="members_update",
        request=InputSerializer,
        responses=MembershipOutputSerializer,
        description="Change the member's role; 400 on role when it would leave the project without a manager.",
    )
    def patch(self, request: Request, project_id: int, user_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_or_404(get_user_model(), user_id)
        membership = membership_change_role(
            project=project, user=user, role=data.validated_data["role"], by=request.user
        )
        return Response(MembershipOutputSerializer(membership).data)

    @extend_schema(
        operation_id="members_destroy",
        request=None,
        responses={204: OpenApiResponse(description="removed")},
        description="Remove the member; 400 on role for the project's last manager.",
    )
    def delete(self, request: Request, project_id: int, user_id: int) -> Response:
        project = project_or_404(project_id)
        user = get_or_404(get_user_model(), user_id)
        membership_remove(project=project, user=user, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberChangeListApi(BaseApi):
    permission_classes = [IsProjectManager]

    @extend_schema(
        operation_id="members_changes",
        responses=MembershipChangeSerializer(many=True),
        description="Who added, re-roled or removed whom, and when; newest first (200 at most).",
    )
    def get(self, request: Request, project_id: int) -> Response:
        changes = membership_change_list(project=project_or_404(project_id))
        return Response(MembershipChangeSerializer(changes, many=True).data)

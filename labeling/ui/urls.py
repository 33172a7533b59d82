"""Annotator pages, the dashboard, and the small JSON reads their scripts fetch."""

from django.urls import path

from labeling.ui import labelset, members, sso, views

app_name = "ui"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("login/sso/", sso.SsoStartView.as_view(), name="sso-start"),
    path("login/sso/callback/", sso.SsoCallbackView.as_view(), name="sso-callback"),
    path("", views.project_list, name="project-list"),
    path("projects/<int:pk>/label/", views.label, name="label"),
    path("projects/<int:pk>/review/", views.review, name="review"),
    path("projects/<int:pk>/dashboard/", views.dashboard, name="dashboard"),
    path("projects/<int:pk>/documents/<int:doc_id>/", views.document_detail, name="document"),
    path("projects/<int:pk>/members/", members.members, name="members"),
    path("projects/<int:pk>/labelset/", labelset.labelset, name="labelset"),
    path("ui/projects/<int:pk>/progress.json", views.progress_json, name="progress-json"),
    path("ui/projects/<int:pk>/dashboard.json", views.dashboard_json, name="dashboard-json"),
    path(
        "ui/projects/<int:pk>/documents/<int:doc_id>/attributions.json",
        views.attributions_json, name="attributions-json",
    ),
]

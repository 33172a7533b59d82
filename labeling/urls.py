from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("labeling.api.urls")),
    path("", include("labeling.ui.urls")),
]

# JSON for /api/ paths, HTML pages elsewhere (see labeling.api.errors).
handler404 = "labeling.api.errors.handler404"
handler500 = "labeling.api.errors.handler500"

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("ovmweb.api.urls")),
    path("", include("ovmweb.consoles.urls")),
    path("", include("ovmweb.web.urls")),
]

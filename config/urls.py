from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.staff_views import urlpatterns as billing_staff_urlpatterns
from config.services import service_status
from copytrading.staff_views import urlpatterns as staff_urlpatterns


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: answers 503 naming the service that is down."""
    problems = service_status()
    return JsonResponse({"ok": not problems, "problems": problems}, status=503 if problems else 200)


admin.site.site_header = "Copy-trading back office"
admin.site.site_title = "Copy-trading back office"
admin.site.index_title = "Operations, compliance and support"

urlpatterns = [
    # Staff pages inside the admin frame (live positions, health, drift, lineage, history,
    # billing statements).
    path("admin/ops/", include((staff_urlpatterns + billing_staff_urlpatterns, "staff"))),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Client API (spec/client-api.md): public schema, docs for staff only.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        # The admin's own check: staff, and the two-factor login outside DEBUG.
        admin.site.admin_view(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("", include("accounts.api.urls")),
    path("", include("copytrading.api.urls")),
]

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.services import service_status


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: answers 503 naming the service that is down."""
    problems = service_status()
    return JsonResponse({"ok": not problems, "problems": problems}, status=503 if problems else 200)


admin.site.site_header = "Copy-trading back office"
admin.site.site_title = "Copy-trading back office"
admin.site.index_title = "Operations, compliance and support"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

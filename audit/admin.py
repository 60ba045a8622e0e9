"""The audit chain in the staff admin: read-only (only the database trigger writes it)."""

from django.contrib import admin
from unfold.admin import ModelAdmin

from .models import AuditChainEntry


@admin.register(AuditChainEntry)
class AuditChainEntryAdmin(ModelAdmin):
    list_display = ("seq", "table_name", "row_pk", "recorded_at", "hash")
    list_filter = ("table_name",)
    search_fields = ("row_pk", "hash")
    readonly_fields = [f.name for f in AuditChainEntry._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

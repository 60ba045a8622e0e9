"""The audit chain in the staff admin: read-only (only the database trigger writes it)."""

from django.contrib import admin

from copytrading.admin import ReadOnlyAdmin

from .models import AuditChainEntry


@admin.register(AuditChainEntry)
class AuditChainEntryAdmin(ReadOnlyAdmin):
    list_display = ("seq", "table_name", "row_pk", "recorded_at", "hash")
    list_filter = ("table_name",)
    search_fields = ("row_pk", "hash")
    readonly_fields = [f.name for f in AuditChainEntry._meta.fields]

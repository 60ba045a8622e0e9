from django.db import models


class AuditChainEntry(models.Model):
    """One link of the tamper-evident chain over compliance rows (history rows, the admin's
    log of staff changes, staff remedies): see audit/chain.py.

    Guards: written only by the PostgreSQL trigger `audit_chain_append` when the
    transaction that inserted the row commits; `seq` has no gaps; `hash` is
    sha256(prev_hash|seq|table|pk|row_hash), `row_hash` the sha256 of the row's JSON as
    it committed. Nothing edits or deletes these rows; verify_audit proves it.
    """

    seq = models.BigIntegerField(primary_key=True)
    table_name = models.CharField(max_length=100)
    row_pk = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit chain entries"
        constraints = [
            models.UniqueConstraint(fields=["table_name", "row_pk"], name="auditchain_row_once")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.table_name} {self.row_pk}"

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords


class KillSwitch(models.Model):
    """The platform-wide kill switch: while active, no new opening order is sent anywhere.

    Guards: a single row (id 1, enforced by a check constraint), changed only through
    risk.services.kill_switch_set with a reason; every change is kept in history.
    Closes always go through.
    """

    active = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    changed_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="killswitch_single_row")]

    def __str__(self) -> str:
        return "Kill switch ON" if self.active else "Kill switch off"

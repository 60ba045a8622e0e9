"""Billing in the staff admin: caps and fee schedules (Operations, with history), each
subscription's fee standing, accruals (Compliance reverses one with a reason), the ledger
(read-only), settlements with their balance operations, fee debts and cash movements.
Everything money-shaped is written by billing.services only: read-only here."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action

from copytrading.admin import ReadOnlyAdmin, StaffActionsMixin

from . import services
from .models import (
    BalanceOp,
    CashMovement,
    FeeAccrual,
    FeeCap,
    FeeDebt,
    FeeReversal,
    FeeSchedule,
    LedgerAccount,
    LedgerLeg,
    LedgerTransaction,
    Settlement,
    SettlementLine,
    SubscriptionFeeState,
)

REVERSE_PERMISSION = "billing.reverse_feeaccrual"


class ReadOnlyInline(TabularInline):
    """Rows of a settlement or posting, shown on its page: never added or edited there."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> Any:
        return self.fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


BALANCE_OP_FIELDS = (
    "client_op_id",
    "role",
    "trading_account",
    "amount",
    "status",
    "tries",
    "venue_deal_id",
    "error",
    "confirmed_at",
)


@admin.register(FeeCap)
class FeeCapAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ("kind", "max_pct", "max_amount", "updated_at")

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: FeeCap, form: Any, change: bool) -> None:
        services.fee_cap_set(
            kind=obj.kind, max_pct=obj.max_pct, max_amount=obj.max_amount, actor=request.user
        )


@admin.register(FeeSchedule)
class FeeScheduleAdmin(SimpleHistoryAdmin, ModelAdmin):
    """Adding a schedule for a master makes its next version (caps checked); existing
    versions are never edited, so the accruals that name them stay explained."""

    list_display = ("master", "version", *services.SCHEDULE_FIELDS[:-2], "created_at")
    list_select_related = ("master",)
    list_filter = ("period",)
    search_fields = ("master__strategy_name", "=master__account__login")
    raw_id_fields = ("master", "ib_account")
    readonly_fields = ("version", "created_by", "created_at")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: FeeSchedule, form: Any, change: bool) -> None:
        values = {
            f: form.cleaned_data[f] for f in services.SCHEDULE_FIELDS if f in form.cleaned_data
        }
        created = services.fee_schedule_create(
            master=form.cleaned_data["master"], values=values, actor=request.user
        )
        obj.pk, obj.version = created.pk, created.version

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        base_clean = form.clean

        def clean(form_self: Any) -> Any:
            data = base_clean(form_self)
            try:
                services.fee_schedule_check(values=data)
            except services.BillingError as exc:
                form_self.add_error(None, str(exc))
            return data

        form.clean = clean
        return form


@admin.register(SubscriptionFeeState)
class SubscriptionFeeStateAdmin(SimpleHistoryAdmin, ModelAdmin):
    """Each subscription's fee standing; the schedule version is changed only here, by
    Operations (a later version of the same master)."""

    list_display = (
        "subscription",
        "schedule",
        "hwm",
        "cumulative",
        "carried_loss",
        "period_start",
        "closed_at",
    )
    list_select_related = ("subscription", "schedule__master")
    search_fields = ("=subscription__id", "=subscription__follower_account__login")
    raw_id_fields = ("subscription",)
    readonly_fields = (
        "subscription",
        "currency",
        "joined_at",
        "hwm",
        "cumulative",
        "carried_loss",
        "floating_mark",
        "period_start",
        "management_through",
        "subscription_through",
        "closed_at",
    )
    fields = ("schedule", *readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "schedule":
            state_id = request.resolver_match.kwargs.get("object_id")
            state = SubscriptionFeeState.objects.filter(pk=state_id).first()
            if state is not None:
                kwargs["queryset"] = FeeSchedule.objects.filter(
                    master_id=state.schedule.master_id
                ).select_related("master")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: SubscriptionFeeState, form: Any, change: bool
    ) -> None:
        services.fee_state_move(state=obj, schedule=obj.schedule, actor=request.user)


@admin.register(FeeAccrual)
class FeeAccrualAdmin(StaffActionsMixin, ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "follower_account",
        "master_account",
        "period_start",
        "period_end",
        "base_amount",
        "rate",
        "amount",
        "currency",
        "schedule_version",
        "status",
        "lineage",
    )
    list_select_related = ("follower_account", "master_account")
    list_filter = ("kind", "status", "trigger")
    search_fields = ("=id", "=follower_account__login", "=master_account__login")
    date_hierarchy = "period_end"
    readonly_fields = [f.name for f in FeeAccrual._meta.fields]
    actions_row = ["row_reverse"]
    actions_detail = ["row_reverse"]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_reverse_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm(REVERSE_PERMISSION)

    @admin.display(description="lineage")
    def lineage(self, obj: FeeAccrual) -> str:
        return format_html('<a href="{}">trace</a>', reverse("staff:lineage-fee", args=[obj.pk]))

    @action(description="Reverse", url_path="reverse", permissions=["reverse"], icon="undo")
    def row_reverse(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def perform(obj: FeeAccrual, reason: str) -> str:
            services.fee_accrual_reverse(accrual=obj, reason=reason, actor=request.user)
            return f"Accrual {obj.pk} reversed."

        return self.reason_flow(
            request,
            object_id,
            name="reverse",
            title="Reverse fee accrual",
            verb="Reverse",
            danger=True,
            note="Posts the accrual's ledger legs negated and cancels its open fee debt; what "
            "the follower paid of it is refunded on the venue (the master's and IB's shares "
            "taken back). The accrual itself is never edited.",
            perform=perform,
        )


class LedgerLegInline(ReadOnlyInline):
    model = LedgerLeg
    fields = ("account", "amount", "currency")


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "key", "memo", "accrual", "settlement", "created_at")
    search_fields = ("key", "memo")
    inlines = [LedgerLegInline]
    readonly_fields = ("key", "memo", "accrual", "settlement", "created_at")


@admin.register(LedgerLeg)
class LedgerLegAdmin(ReadOnlyAdmin):
    list_display = ("id", "transaction", "account", "amount", "currency")
    list_select_related = ("transaction", "account")
    list_filter = ("currency", "account__kind")
    search_fields = ("account__code", "transaction__key")


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "kind", "trading_account", "currency")
    list_select_related = ("trading_account",)
    list_filter = ("kind", "currency")
    search_fields = ("code",)


@admin.register(FeeReversal)
class FeeReversalAdmin(ReadOnlyAdmin):
    list_display = ("accrual", "reason", "actor", "created_at")
    list_select_related = ("accrual", "actor")


class SettlementLineInline(ReadOnlyInline):
    model = SettlementLine
    fields = ("kind", "accrual", "debt", "due", "paid", "master_share", "broker_share", "ib_share")


class BalanceOpInline(ReadOnlyInline):
    model = BalanceOp
    fields = BALANCE_OP_FIELDS


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "reason",
        "follower_account",
        "subscription",
        "period_end",
        "due",
        "collected",
        "currency",
        "status",
        "final_at",
    )
    list_select_related = ("follower_account", "subscription")
    list_filter = ("status", "reason")
    search_fields = ("=id", "=follower_account__login", "key")
    readonly_fields = [f.name for f in Settlement._meta.fields]
    inlines = [SettlementLineInline, BalanceOpInline]


@admin.register(SettlementLine)
class SettlementLineAdmin(ReadOnlyAdmin):
    list_display = ("settlement", "kind", "accrual", "debt", "due", "paid")
    list_select_related = ("settlement", "accrual", "debt")


@admin.register(BalanceOp)
class BalanceOpAdmin(ReadOnlyAdmin):
    list_display = BALANCE_OP_FIELDS
    list_select_related = ("trading_account",)
    list_filter = ("status", "role")
    search_fields = ("client_op_id", "=trading_account__login")


@admin.register(FeeDebt)
class FeeDebtAdmin(ReadOnlyAdmin):
    list_display = ("follower_account", "kind", "amount", "remaining", "comment", "cleared_at")
    list_select_related = ("follower_account",)
    list_filter = ("kind", ("cleared_at", admin.EmptyFieldListFilter))
    search_fields = ("=follower_account__login", "comment")


@admin.register(CashMovement)
class CashMovementAdmin(ReadOnlyAdmin):
    list_display = ("trading_account", "kind", "amount", "venue_ts", "venue_deal_id", "handled_at")
    list_select_related = ("trading_account",)
    list_filter = ("kind",)
    search_fields = ("=trading_account__login", "venue_deal_id")

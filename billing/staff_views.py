"""Billing pages inside the admin frame: statements (page, CSV, PDF) and the lineage of
one fee (how it was worked out, what it posted, how it was settled)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path

from accounts.models import TradingAccount
from copytrading.models import TradeLink
from copytrading.staff_views import render, staff_page

from .models import FeeAccrual, LedgerTransaction
from .statements import PARTIES, statement_build, statement_csv, statement_pdf

VIEW_PERMISSION = "billing.view_feeaccrual"


class StatementForm(forms.Form):
    """Whose statement and for which period: a calendar month, or any [start, end) in days
    (a weekly or quarterly schedule's period)."""

    party = forms.ChoiceField(choices=[(p, p) for p in PARTIES], initial="follower")
    login = forms.IntegerField(min_value=1, help_text="The trading account's login.")
    month = forms.CharField(max_length=7, required=False, help_text="YYYY-MM (UTC).")
    start = forms.DateField(required=False, help_text="Or from this day (UTC)...")
    end = forms.DateField(required=False, help_text="...to this day, excluded.")

    def clean_month(self) -> datetime | None:
        raw = self.cleaned_data["month"].strip()
        if not raw:
            return None
        try:
            return datetime.strptime(raw + "-01", "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError as exc:
            raise forms.ValidationError("Write the month as YYYY-MM, e.g. 2026-12.") from exc

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        login = data.get("login")
        if login is not None:
            accounts = list(TradingAccount.objects.filter(login=login)[:2])
            if not accounts:
                self.add_error("login", f"No trading account has login {login}.")
            elif len(accounts) > 1:
                self.add_error("login", "Several broker servers have this login.")
            else:
                data["account"] = accounts[0]
        start, end, month = data.get("start"), data.get("end"), data.get("month")
        if start and end:
            if end <= start:
                self.add_error("end", "The period must end after it starts.")
            data["period"] = (_midnight(start), _midnight(end))
        elif month:
            data["period"] = (month, _month_end(month))
        elif "month" not in self.errors:
            self.add_error("month", "Give a month (YYYY-MM), or both a start and an end day.")
        return data


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_end(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


@staff_page(VIEW_PERMISSION)
def statements(request: HttpRequest) -> HttpResponse:
    """A follower's or master's statement for a month; `format=csv|pdf` downloads it."""
    form = StatementForm(request.GET or None)
    statement = None
    if form.is_bound and form.is_valid():
        start, end = form.cleaned_data["period"]
        statement = statement_build(
            party=form.cleaned_data["party"],
            account=form.cleaned_data["account"],
            start=start,
            end=end,
        )
        name = f"statement-{statement.account.login}-{statement.party}-{start:%Y%m%d}-{end:%Y%m%d}"
        fmt = request.GET.get("format")
        if fmt == "csv":
            response = HttpResponse(statement_csv(statement), content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
            return response
        if fmt == "pdf":
            response = HttpResponse(statement_pdf(statement), content_type="application/pdf")
            response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
            return response
    return render(
        request,
        "admin/billing/statement.html",
        {"form": form, "statement": statement, "query": request.GET.urlencode()},
        title="Fee statements",
    )


@staff_page(VIEW_PERMISSION)
def fee_lineage(request: HttpRequest, fee_id: int) -> HttpResponse:
    """One accrual: its schedule version, figures and inputs, the trades behind it, its
    ledger postings, settlement, venue operations, debt and reversal."""
    accrual = get_object_or_404(
        FeeAccrual.objects.select_related(
            "schedule", "subscription__master", "follower_account", "master_account"
        ),
        pk=fee_id,
    )
    postings = list(
        LedgerTransaction.objects.filter(accrual=accrual)
        .prefetch_related("legs__account")
        .order_by("id")
    )
    lines = list(accrual.lines.select_related("settlement").order_by("id"))
    settlements = [line.settlement for line in lines]
    settlement_postings = list(
        LedgerTransaction.objects.filter(settlement__in=settlements)
        .prefetch_related("legs__account")
        .order_by("id")
    )
    positions = set(accrual.inputs.get("open_positions") or [])
    links = list(
        TradeLink.objects.filter(subscription=accrual.subscription_id).order_by("id")
        if accrual.kind in ("performance", "volume")
        else []
    )
    return render(
        request,
        "admin/billing/fee_lineage.html",
        {
            "accrual": accrual,
            "inputs_json": json.dumps(accrual.inputs, indent=2, sort_keys=True),
            "postings": postings + settlement_postings,
            "lines": lines,
            "ops": [op for s in settlements for op in s.ops.order_by("id")],
            "debts": list(accrual.debts.order_by("id")),
            "reversal": getattr(accrual, "reversal", None),
            "links": links,
            "open_positions": positions,
        },
        title=f"Lineage of fee accrual {accrual.pk}",
    )


def fees_of_subscription(subscription_id: int) -> list[FeeAccrual]:
    """The fees a subscription has accrued, newest first (the trade lineage page's step 6)."""
    return list(
        FeeAccrual.objects.filter(subscription_id=subscription_id).order_by("-period_start", "-id")[
            :50
        ]
    )


urlpatterns = [
    path("billing/statements/", statements, name="billing-statements"),
]

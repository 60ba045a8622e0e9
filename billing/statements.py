"""Statements per follower and per master account per period, that a customer can check
by hand: every fee with its base, rate and amount (and how it was worked out), every
settlement with the money moved on the venue (with the venue's deal ids), fee debt left.

Periods are [start, end) in UTC. A fee belongs to the statement of the period in which its
own period started; money belongs to the period in which the venue confirmed it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from accounts.models import TradingAccount

from . import fees
from .choices import BalanceOpRole, BalanceOpStatus, FeeAccrualStatus
from .models import BalanceOp, FeeAccrual, FeeDebt

PARTIES = ("follower", "master")


@dataclass
class Statement:
    party: str  # "follower": what the account paid; "master": what it earned
    account: TradingAccount
    start: datetime
    end: datetime
    accruals: list[FeeAccrual]
    moves: list[BalanceOp]  # confirmed venue balance operations on the account
    debts: list[FeeDebt]
    totals: dict[str, Decimal] = field(default_factory=dict)

    @property
    def currency(self) -> str:
        return self.account.currency


def _sum(values: object) -> Decimal:
    return fees.total(values)  # type: ignore[arg-type]


def statement_build(
    *, party: str, account: TradingAccount, start: datetime, end: datetime
) -> Statement:
    """The statement of `account` as follower or master for [start, end)."""
    if party not in PARTIES:
        raise ValueError(f"party must be one of {PARTIES}, got {party!r}")
    if end <= start:
        raise ValueError("the period must end after it starts")
    owner = {"follower_account": account} if party == "follower" else {"master_account": account}
    accruals = list(
        FeeAccrual.objects.filter(**owner, period_start__gte=start, period_start__lt=end)
        .select_related("follower_account", "master_account", "subscription__master")
        .order_by("period_start", "kind", "id")
    )
    role = BalanceOpRole.FOLLOWER if party == "follower" else BalanceOpRole.MASTER
    moves = list(
        BalanceOp.objects.filter(
            trading_account=account,
            role=role,
            status=BalanceOpStatus.CONFIRMED,
            confirmed_at__gte=start,
            confirmed_at__lt=end,
        )
        .select_related("settlement")
        .order_by("confirmed_at", "id")
    )
    debts = list(
        FeeDebt.objects.filter(**owner, remaining__gt=0)
        .select_related("master_account", "follower_account")
        .order_by("id")
    )
    live = [a for a in accruals if a.status != FeeAccrualStatus.REVERSED]
    totals = {
        "fees": _sum(a.amount for a in live),
        "reversed": _sum(a.amount for a in accruals if a.status == FeeAccrualStatus.REVERSED),
        "moved": _sum(op.amount for op in moves),
        "debt": _sum(d.remaining for d in debts),
    }
    if party == "master":
        totals["master_share"] = _sum(a.master_share for a in live)
    return Statement(party, account, start, end, accruals, moves, debts, totals)


HEADER = ["section", "date", "kind", "counterparty", "period", "base", "rate", "amount",
          "your share", "status", "detail"]  # fmt: skip


def _text(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: text fields are quoted.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def statement_rows(st: Statement) -> list[list[str]]:
    """The statement as table rows (CSV and PDF share them)."""
    rows: list[list[str]] = []
    for a in st.accruals:
        other = a.master_account if st.party == "follower" else a.follower_account
        share = a.amount if st.party == "follower" else a.master_share
        rows.append(
            [
                "fee",
                f"{a.period_end:%Y-%m-%d %H:%M}",
                a.kind,
                f"#{other.login}",
                f"{a.period_start:%Y-%m-%d %H:%M} - {a.period_end:%Y-%m-%d %H:%M}",
                str(a.base_amount),
                str(a.rate),
                str(a.amount),
                str(share),
                a.status,
                _text(f"v{a.schedule_version}: {a.explanation}"),
            ]
        )
    for op in st.moves:
        rows.append(
            [
                "balance operation",
                f"{op.confirmed_at:%Y-%m-%d %H:%M}",
                op.role,
                "",
                "",
                "",
                "",
                str(op.amount),
                str(op.amount),
                "confirmed",
                _text(
                    f"{op.client_op_id}, venue deal {op.venue_deal_id}, "
                    f"settlement {op.settlement_id}"
                ),
            ]
        )
    for d in st.debts:
        rows.append(
            [
                "fee debt",
                f"{d.created_at:%Y-%m-%d %H:%M}",
                d.kind,
                "",
                "",
                "",
                "",
                str(d.remaining),
                str(d.remaining),
                "open",
                _text(d.comment),
            ]  # fmt: skip
        )
    for name, value in st.totals.items():
        rows.append(["total", "", name, "", "", "", "", str(value), "", "", ""])
    return rows


def statement_csv(st: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"Statement of #{st.account.login} as {st.party}", st.currency,
                     f"{st.start:%Y-%m-%d}", f"{st.end:%Y-%m-%d}"])  # fmt: skip
    writer.writerow(HEADER)
    writer.writerows(statement_rows(st))
    return out.getvalue()


def statement_pdf(st: Statement) -> bytes:
    """The statement as a PDF (reportlab): the same rows as the CSV, one table."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        title=f"Statement #{st.account.login}",
        invariant=1,  # no creation time or random id inside: the same statement, same bytes
    )
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8)
    title = (
        f"Copy-trading fee statement of account #{st.account.login} as {st.party}, "
        f"{st.start:%Y-%m-%d} to {st.end:%Y-%m-%d} (UTC), in {st.currency}"
    )
    data = [HEADER] + [
        [Paragraph(cell, small) if i == len(HEADER) - 1 else cell for i, cell in enumerate(row)]
        for row in statement_rows(st)
    ]
    table = Table(data, repeatRows=1, colWidths=[55, 60, 55, 45, 110, 45, 45, 45, 45, 45, 250])
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    doc.build([Paragraph(title, styles["Heading3"]), Spacer(1, 6), table])
    return buffer.getvalue()

"""History for compliance cannot be bypassed (issue 10).

1. Statically: no project code writes a historied model's tracked fields with a queryset
   `update()`, `bulk_update()`, `bulk_create()`, the hot-path helpers of config/bulk.py or
   raw SQL (UPDATE / INSERT INTO / DELETE FROM its table), since none of those writes a
   history row. Writing only fields the model's history excludes (readings such as a
   subscription's drift or an account's balance) is allowed; anything else must be in
   ALLOWED with the reason and where its history is recorded instead.
2. Behaviourally: for every historied model, SCENARIOS names the write path that changes
   it; running it must add a history row for the object, naming the actor. Historied
   models come from django-simple-history's registry, so a new one without a scenario
   fails here (add one line to SCENARIOS).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.utils import timezone
from model_bakery import baker
from simple_history.models import registered_models

from config.bulk import update_sql
from config.history import history_untracked_fields
from tests.processes import ROOT

PROJECT_PACKAGES = ("accounts", "audit", "billing", "brokers", "config", "copytrading", "risk")
QUERYSET_WRITES = {"update", "bulk_update", "bulk_create"}
BULK_HELPERS = {"insert_rows", "insert_sql", "insert_rows_returning", "update_sql", "update_rows"}
RAW_WRITE = re.compile(r"\b(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+\"?([a-z0-9_]+)", re.I)

# (path, model, write) -> why it is fine and where history is recorded instead. A stale
# entry (no longer found) fails too, so this list stays true.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("copytrading/management/commands/copybench.py", "CopySubscription", "update"): (
        "the benchmark sets the sizing of its own generated subscriptions, in its own "
        "throwaway database; no deployment's configuration changes"
    ),
    ("copytrading/management/commands/copybench.py", "SubscriptionLimits", "bulk_create"): (
        "the benchmark gives its own generated subscriptions limits (--limits), in its own "
        "throwaway database; no deployment's configuration changes"
    ),
}


@dataclass(frozen=True)
class Historied:
    model: type[models.Model]
    untracked: frozenset[str]  # fields (and attnames) its history does not keep


def historied_models() -> dict[str, Historied]:
    """Class name -> the model and its untracked fields, for every model with history."""
    return {
        model.__name__: Historied(model, history_untracked_fields(model) or frozenset())
        for model in registered_models.values()
        if model._meta.app_label in PROJECT_PACKAGES
    }


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    model: str
    write: str  # update / bulk_update / bulk_create / a config.bulk helper / raw SQL
    detail: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.model, self.write)


def _root(node: ast.AST) -> ast.AST:
    """The innermost receiver of a chain: `Model.objects.filter(...).update` -> `Model`."""
    while True:
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return node


def _names_in_chain(node: ast.AST) -> Iterator[str]:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        if isinstance(node, ast.Attribute):
            yield node.attr
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            node = node.value


def _literal_strings(node: ast.AST | None) -> set[str] | None:
    """The strings of a literal list/tuple/set, or None when not a literal."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return {e.value for e in node.elts}  # type: ignore[attr-defined]
    return None


def _sql_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, historied: dict[str, Historied], reverse: dict[str, str]):
        self.path = path
        self.historied = historied
        self.reverse = reverse  # related manager name -> model class name
        self.tables = {h.model._meta.db_table: name for name, h in historied.items()}
        self.aliases: list[dict[str, str]] = [{}]
        self.findings: list[Finding] = []

    # Variables bound to a historied model's queryset, per function.
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.aliases.append({})
        self.generic_visit(node)
        self.aliases.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        model = self._model_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and model:
                self.aliases[-1][target.id] = model
        self.generic_visit(node)

    def _model_of(self, chain: ast.AST) -> str | None:
        root = _root(chain)
        if isinstance(root, ast.Name):
            if root.id in self.historied:
                return root.id
            for scope in reversed(self.aliases):
                if root.id in scope:
                    return scope[root.id]
        for name in _names_in_chain(chain):
            if name in self.reverse:
                return self.reverse[name]
        return None

    def _add(self, node: ast.AST, model: str, write: str, detail: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, model, write, detail))  # type: ignore[attr-defined]

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in QUERYSET_WRITES:
            model = self._model_of(func.value)
            if model:
                self._check_queryset_write(node, model, func.attr)
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in BULK_HELPERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Name) and first.id in self.historied:
                self._add(node, first.id, name, "config/bulk.py writes no history")
        self.generic_visit(node)

    def _check_queryset_write(self, node: ast.Call, model: str, write: str) -> None:
        untracked = self.historied[model].untracked
        if write == "update":
            names = {k.arg for k in node.keywords}
            if None in names or node.args:
                self._add(node, model, write, "fields not literal (**kwargs)")
            elif not names <= untracked:
                self._add(node, model, write, f"writes tracked {sorted(names - untracked)}")
        elif write == "bulk_update":
            fields = _literal_strings(node.args[1] if len(node.args) > 1 else None)
            for keyword in node.keywords:
                if keyword.arg == "fields":
                    fields = _literal_strings(keyword.value)
            if fields is None or not fields <= untracked:
                self._add(
                    node, model, write, f"writes tracked {sorted((fields or {'?'}) - untracked)}"
                )
        else:
            self._add(
                node, model, write, "bulk_create writes no history (bulk_create_with_history)"
            )

    def visit_Constant(self, node: ast.Constant) -> None:
        self._check_sql(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self._check_sql(node)

    def _check_sql(self, node: ast.AST) -> None:
        text = _sql_text(node)
        for table in RAW_WRITE.findall(text or ""):
            if table.lower() in self.tables:
                self._add(node, self.tables[table.lower()], "raw SQL", text.strip()[:80])


def reverse_managers(historied: dict[str, Historied]) -> dict[str, str]:
    """`server.accounts`-style related managers that hold a historied model's rows."""
    found = {}
    for model in apps.get_models():
        for relation in model._meta.related_objects:
            target = relation.related_model.__name__
            if target in historied and relation.related_model is historied[target].model:
                found[relation.get_accessor_name()] = target
    return found


def scan_source(source: str, path: str = "<source>") -> list[Finding]:
    historied = historied_models()
    scanner = _Scanner(path, historied, reverse_managers(historied))
    scanner.visit(ast.parse(source))
    return scanner.findings


def project_files() -> Iterator[Path]:
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def scan_project() -> list[Finding]:
    findings = []
    for path in project_files():
        findings += scan_source(path.read_text(), str(path.relative_to(ROOT)))
    return findings


def test_no_project_code_writes_history_tracked_fields_around_history():
    findings = scan_project()
    unexplained = [f for f in findings if f.key not in ALLOWED]
    assert unexplained == [], (
        "Writes that record no history:\n"
        + "\n".join(f"  {f.path}:{f.line} {f.model} {f.write}: {f.detail}" for f in unexplained)
        + "\nUse a service per object (save_audited), a history-aware bulk write, or add the "
    )
    "write to ALLOWED with the reason and where its history is recorded."
    stale = set(ALLOWED) - {f.key for f in findings}
    assert not stale, f"ALLOWED entries no longer found (remove them): {sorted(stale)}"


PLANTED = """
from copytrading.models import CopySubscription
from accounts.models import TradingAccount
from config.bulk import update_rows

def pause_all(ids):
    CopySubscription.objects.filter(id__in=ids).update(status=1)            # tracked: caught
    CopySubscription.all_objects.filter(pk=1).update(drift=0, synced_at=None)  # untracked: ok
    subs = CopySubscription.objects.filter(enabled=True)
    subs.update(enabled=False)                                              # via a variable
    CopySubscription.objects.bulk_update(list(subs), ["status"])
    TradingAccount.objects.bulk_create([])
    update_rows(CopySubscription, [], columns=["status"])
    cursor.execute("UPDATE copytrading_copysubscription SET status = 1")
    server.accounts.update(status="disabled")                               # related manager
    {}.update(status=1)                                                     # a dict: ok
"""


@pytest.mark.django_db
def test_the_scanner_catches_planted_bypasses():
    found = [(f.line, f.model, f.write) for f in scan_source(PLANTED)]
    assert found == [
        (7, "CopySubscription", "update"),
        (10, "CopySubscription", "update"),
        (11, "CopySubscription", "bulk_update"),
        (12, "TradingAccount", "bulk_create"),
        (13, "CopySubscription", "update_rows"),
        (14, "CopySubscription", "raw SQL"),
        (15, "TradingAccount", "update"),
    ]


def test_hot_path_bulk_writes_refuse_tracked_fields_of_historied_models():
    from copytrading.models import CopySubscription

    rows = [CopySubscription(id=1, status=1, drift=Decimal(0))]
    sql, _params = update_sql(CopySubscription, rows, columns=["drift"])  # a reading: fine
    assert sql.startswith("UPDATE copytrading_copysubscription")
    with pytest.raises(ValueError, match=r"CopySubscription keeps history.*\['status'\]"):
        update_sql(CopySubscription, rows, columns=["status", "drift"])


# -- behaviour: each historied model's write path records history ----------------------


def _staff() -> Any:
    from tests.factories import make_staff

    return make_staff(is_superuser=True)


def _saved(obj: models.Model, actor: Any, **changes: Any) -> models.Model:
    """The staff admin's write path (ModelAdmin.save_model -> save with the request's
    user, as HistoryRequestMiddleware records it), for models staff configure there."""
    from config.history import save_audited

    for name, value in changes.items():
        setattr(obj, name, value)
    save_audited(obj, actor=actor, reason="changed in the admin")
    return obj


def _customer(actor: Any) -> models.Model:
    from accounts.services import customer_create

    return customer_create(
        username="audited", password="pw-12345678", name="A", email="a@x.io", actor=actor
    )


def _trading_account(actor: Any) -> models.Model:
    from accounts.services import trading_account_create
    from tests.factories import make_customer, make_server

    return trading_account_create(
        customer=make_customer(),
        broker_server=make_server(),
        login=424242,
        mode="DEMO",
        actor=actor,
    )


def _broker_server(actor: Any) -> models.Model:
    from brokers.services import broker_server_set_credentials
    from tests.factories import make_server

    server = make_server()
    broker_server_set_credentials(server=server, credentials={"api_key": "k"}, actor=actor)
    return server


def _symbol(actor: Any) -> models.Model:
    from tests.factories import make_server

    symbol = baker.make(
        "brokers.Symbol",
        broker_server=make_server(),
        name="EURUSD",
        contract_size=1,
        min_volume=Decimal("0.01"),
        max_volume=Decimal(100),
        volume_step=Decimal("0.01"),
    )
    return _saved(symbol, actor, min_volume=Decimal("0.1"))


def _symbol_map(actor: Any) -> models.Model:
    from tests.factories import make_server

    mapping = baker.make("brokers.SymbolMap", broker_server=make_server(), master_symbol="X")
    return _saved(mapping, actor, follower_symbol="Xm")


def _master(actor: Any) -> models.Model:
    from copytrading.services import master_pause
    from tests.factories import make_master

    return master_pause(master=make_master(), reason="review", actor=actor)


def _follower(actor: Any) -> models.Model:
    from copytrading.services.profiles import follower_update
    from tests.factories import make_follower

    return follower_update(follower=make_follower(), values={"max_master_count": 2}, actor=actor)


def _subscription(actor: Any) -> models.Model:
    from copytrading.services import subscription_pause
    from tests.factories import make_subscription

    return subscription_pause(subscription=make_subscription(), reason="asked", actor=actor)


def _kill_switch(actor: Any) -> models.Model:
    from risk.services import kill_switch_set

    return kill_switch_set(active=True, reason="venue maintenance", actor=actor)


def _server_switch(actor: Any) -> models.Model:
    from tests.factories import make_server

    switch = baker.make("risk.ServerSwitch", broker_server=make_server())
    return _saved(switch, actor, active=True, reason="server maintenance")


def _subscription_limits(actor: Any) -> models.Model:
    from tests.factories import make_subscription

    limits = baker.make("risk.SubscriptionLimits", subscription=make_subscription())
    return _saved(limits, actor)


def _master_limits(actor: Any) -> models.Model:
    from tests.factories import make_master

    return _saved(baker.make("risk.MasterLimits", master=make_master()), actor)


def _risk_stop(actor: Any) -> models.Model:
    from risk.monitors import risk_stop_clear
    from tests.factories import make_subscription

    stop = baker.make(
        "risk.RiskStop",
        subscription=make_subscription(),
        rule="MAX_DRAWDOWN",
        detail="drawdown 6% > 5%",
        fired_at=timezone.now(),
    )
    return risk_stop_clear(stop=stop, reason="reviewed", actor=actor)


def _fee_cap(actor: Any) -> models.Model:
    from billing.services import fee_cap_set

    return fee_cap_set(kind="performance", max_pct=Decimal(30), max_amount=None, actor=actor)


def _fee_schedule(actor: Any) -> models.Model:
    from billing.services import fee_schedule_create
    from tests.factories import make_master

    values = {"period": "monthly", "performance_pct": Decimal(20)}
    return fee_schedule_create(master=make_master(), values=values, actor=actor)


def _fee_state(actor: Any) -> models.Model:
    from billing.models import SubscriptionFeeState
    from billing.services import fee_schedule_create, fee_state_move, fee_states_ensure
    from tests.factories import make_subscription

    sub = make_subscription()
    values = {"period": "monthly", "subscription_amount": Decimal(10)}
    fee_schedule_create(master=sub.master, values=values, actor=None)
    fee_states_ensure()
    v2 = fee_schedule_create(master=sub.master, values=values, actor=None)
    state = SubscriptionFeeState.objects.get(subscription=sub)
    fee_state_move(state=state, schedule=v2, actor=actor)
    return state


# "app_label.modelname" -> the write path that changes it. A new historied model needs one
# line here (its service, or `_saved` for a model staff configure in the admin).
SCENARIOS: dict[str, Callable[[Any], models.Model]] = {
    "accounts.customer": _customer,
    "accounts.tradingaccount": _trading_account,
    "brokers.brokerserver": _broker_server,
    "brokers.symbol": _symbol,
    "brokers.symbolmap": _symbol_map,
    "copytrading.copymaster": _master,
    "copytrading.copyfollower": _follower,
    "copytrading.copysubscription": _subscription,
    "risk.killswitch": _kill_switch,
    "risk.serverswitch": _server_switch,
    "risk.subscriptionlimits": _subscription_limits,
    "risk.masterlimits": _master_limits,
    "risk.riskstop": _risk_stop,
    "billing.feecap": _fee_cap,
    "billing.feeschedule": _fee_schedule,
    "billing.subscriptionfeestate": _fee_state,
}


def historied_labels() -> list[str]:
    return sorted(
        m._meta.label_lower
        for m in registered_models.values()
        if m._meta.app_label in PROJECT_PACKAGES
    )


@pytest.mark.django_db
@pytest.mark.parametrize("label", historied_labels())
def test_each_historied_model_write_path_records_history(label: str):
    assert label in SCENARIOS, (
        f"{label} keeps history but has no scenario: add its write path to SCENARIOS in "
        f"{Path(__file__).relative_to(ROOT)}"
    )
    actor = _staff()
    obj = SCENARIOS[label](actor)
    model = apps.get_model(label)
    assert isinstance(obj, model)
    rows = model.history.filter(**{model._meta.pk.attname: obj.pk})  # type: ignore[attr-defined]
    assert rows.exists(), f"{label}: its write path recorded no history"
    assert rows.filter(history_user=actor).exists(), f"{label}: history does not name the actor"


def test_every_scenario_is_a_historied_model():
    assert set(SCENARIOS) <= set(historied_labels())

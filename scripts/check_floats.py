#!/usr/bin/env python3
"""Money and volumes never pass through `float` (issue 10; STYLE.md habit 6).

The rule, checked on the syntax tree of every module of the apps (accounts, audit, billing,
brokers, config, copytrading, risk; migrations, tests and benchmarks/ are not scanned):

  F1  no `float(...)` call: the one way a Decimal becomes a float.
  F2  no `Decimal(...)` of a float literal or of `float(...)`: binary artefacts in a Decimal.
  F3  no `FloatField`: a column whose values are floats.
  F4  no `json.loads` / `json.load` without `parse_float=`: JSON numbers (prices, volumes,
      balances from a broker) would be read as floats, losing digits past the 15th.

Each exception is listed in ALLOWED by (path, enclosing function, rule) with the reason
it touches no money or volume (timeouts, latencies, percentiles, a simulator's random
walk). Float literals are not flagged: they are timeouts and delays here, and Decimal
arithmetic refuses a float operand at run time (TypeError), so money code mixing one in
fails its tests. Run: `python scripts/check_floats.py [paths...]`; exits 1 on a finding.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "audit", "billing", "brokers", "config", "copytrading", "risk")

RULES = {
    "F1": "float() call",
    "F2": "Decimal() of a float",
    "F3": "FloatField",
    "F4": "json.loads without parse_float",
}

# (path, enclosing function ("" for module level), rule) -> why no money or volume is there.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("brokers/gateways/rest_ws.py", "parse_retry_after", "F1"): "seconds of a Retry-After",
    ("brokers/models.py", "ListenerShard", "F3"): "lag_ms: a latency in milliseconds",
    ("brokers/paper/engine.py", "_num", "F1"): (
        "the paper venue (a simulated broker) writes JSON numbers; repr of the float is the "
        "decimal for every amount it holds (the project's side parses them as Decimal)"
    ),
    ("brokers/paper/engine.py", "_opt", "F1"): "as _num, for an optional amount",
    ("brokers/paper/engine.py", "Engine.set_faults", "F1"): "fault rates in 0..1",
    ("brokers/paper/server.py", "list_deals", "F1"): "from_ts: a Unix time in seconds",
    ("brokers/paper/testing.py", "", "F4"): "test clients of the simulated broker",
    ("brokers/crypto.py", "decrypt_credentials", "F4"): "credentials: strings only",
    ("brokers/admin.py", "BrokerServerForm.clean_new_credentials", "F4"): (
        "credentials typed by staff: non-strings are refused"
    ),
    ("copytrading/api/schema.py", "DecimalInFieldSchema.map_serializer_field", "F1"): (
        "the OpenAPI minimum/maximum of a field (documentation)"
    ),
    ("copytrading/services/fanout.py", "_json", "F4"): (
        "our own jsonb (decision context), written by config/bulk.py with Decimals as strings"
    ),
    ("copytrading/dashboards.py", "", "F1"): "latency percentiles (ms) for staff charts",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    scope: str
    rule: str
    code: str

    def __str__(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        return f"{self.path}:{self.line}: {self.rule} {RULES[self.rule]}{where}: {self.code}"


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[str] = []
        self.findings: list[Finding] = []

    def _add(self, node: ast.AST, rule: str) -> None:
        self.findings.append(
            Finding(
                self.path,
                node.lineno,  # type: ignore[attr-defined]
                ".".join(self.scope),
                rule,
                ast.unparse(node)[:80],
            )
        )

    def _scoped(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(node, node.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(node, node.name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "FloatField":
            self._add(node, "F3")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if isinstance(func, ast.Name) and name == "float":
            self._add(node, "F1")
        elif name == "FloatField" and isinstance(func, ast.Name):
            self._add(node, "F3")
        elif name == "Decimal" and node.args and _is_float(node.args[0]):
            self._add(node, "F2")
        elif (
            name in ("loads", "load")
            and isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "json"
            and not any(k.arg == "parse_float" for k in node.keywords)
        ):
            self._add(node, "F4")
        self.generic_visit(node)


def _is_float(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return isinstance(node.operand.value, float)
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
    )


def scan_source(source: str, path: str) -> list[Finding]:
    visitor = _Visitor(path)
    visitor.visit(ast.parse(source))
    return visitor.findings


def _allowed(finding: Finding) -> bool:
    scopes = {finding.scope}
    parts = finding.scope.split(".")
    scopes |= {".".join(parts[:n]) for n in range(len(parts) + 1)}
    return any((finding.path, scope, finding.rule) in ALLOWED for scope in scopes)


def project_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]
    return files


def check(paths: list[Path]) -> tuple[list[Finding], set[tuple[str, str, str]]]:
    """Findings not allowed, and ALLOWED entries that matched nothing (stale)."""
    findings, used = [], set()
    for path in paths:
        resolved = path.resolve()
        relative = str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path)
        for finding in scan_source(path.read_text(), relative):
            key = next(
                (
                    k
                    for k in ALLOWED
                    if k[0] == finding.path
                    and k[2] == finding.rule
                    and (
                        k[1] == "" or finding.scope == k[1] or finding.scope.startswith(k[1] + ".")
                    )
                ),
                None,
            )
            if key is None:
                findings.append(finding)
            else:
                used.add(key)
    return findings, set(ALLOWED) - used


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or project_files()
    findings, stale = check(paths)
    for finding in findings:
        print(finding)
    if findings:
        print(
            f"{len(findings)} place(s) where money or volume could pass through float: use "
            "Decimal (json.loads(..., parse_float=Decimal)), or add the place to ALLOWED in "
            "scripts/check_floats.py with the reason it holds no money or volume.",
            file=sys.stderr,
        )
        return 1
    if stale and not argv:
        print(f"ALLOWED entries that match nothing (remove them): {sorted(stale)}", file=sys.stderr)
        return 1
    print(f"check_floats: {len(paths)} modules, no float in money paths.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

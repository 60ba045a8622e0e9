"""scripts/check_floats.py: money and volumes never pass through float (issue 10)."""

import importlib.util
import subprocess
import sys

from tests.processes import ROOT

_spec = importlib.util.spec_from_file_location("check_floats", ROOT / "scripts" / "check_floats.py")
check_floats = importlib.util.module_from_spec(_spec)
sys.modules["check_floats"] = check_floats  # dataclasses look their module up
_spec.loader.exec_module(check_floats)

PLANTED = """
import json
from decimal import Decimal
from django.db import models

class Position(models.Model):
    volume = models.FloatField()                      # F3

def size(volume, ratio):
    lots = float(volume) * ratio                      # F1
    step = Decimal(0.01)                              # F2
    account = json.loads(body)                        # F4
    return Decimal(float(lots))                       # F2 and F1

def fine(body):
    return Decimal("0.01"), json.loads(body, parse_float=Decimal), 2.5
"""


def test_the_checker_catches_each_planted_float():
    found = [(f.line, f.rule, f.scope) for f in check_floats.scan_source(PLANTED, "planted.py")]
    assert sorted(found) == [
        (7, "F3", "Position"),
        (10, "F1", "size"),
        (11, "F2", "size"),
        (12, "F4", "size"),
        (13, "F1", "size"),
        (13, "F2", "size"),
    ]


def test_the_project_passes_and_a_planted_file_fails(tmp_path):
    clean = subprocess.run(
        [sys.executable, "scripts/check_floats.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    planted = tmp_path / "sizing.py"
    planted.write_text(PLANTED)
    dirty = subprocess.run(
        [sys.executable, "scripts/check_floats.py", str(planted)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert dirty.returncode == 1
    assert f"{planted}:10: F1 float() call in size" in dirty.stdout

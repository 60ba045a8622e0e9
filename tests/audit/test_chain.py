"""The audit hash chain over history rows and staff actions, and verify_audit (issue 10).

The chain is appended by a deferred trigger when a transaction commits; these tests run
inside the test's transaction and fire it with SET CONSTRAINTS ALL IMMEDIATE, then tamper
with raw SQL (as someone with database access would) and expect verify_audit to name it.
"""

import io
import threading

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import close_old_connections, connection, transaction

from audit.chain import chained_tables, verify_chain
from audit.models import AuditChainEntry
from copytrading.models import CopySubscription
from copytrading.services import subscription_pause, subscription_resume
from tests.factories import make_staff, make_subscription

pytestmark = pytest.mark.django_db

HISTORY_TABLE = CopySubscription.history.model._meta.db_table


def commit_point() -> None:
    """Runs the chain's commit-time triggers now (the test's transaction never commits)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def verify() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def broken(*expected: str) -> str:
    with pytest.raises(CommandError) as failure:
        verify()
    message = str(failure.value)
    for text in expected:
        assert text in message, message
    return message


@pytest.fixture
def staff_actions():
    """A pause and a resume (two history rows with reasons) and an admin log entry."""
    staff = make_staff(is_superuser=True)
    sub = make_subscription()
    subscription_pause(subscription=sub, reason="customer asked", actor=staff)
    subscription_resume(subscription=sub, reason="customer back", actor=staff)
    LogEntry.objects.log_actions(staff.pk, [sub], CHANGE, change_message="edited limits")
    commit_point()
    rows = list(sub.history.order_by("history_id"))
    return {"sub": sub, "rows": rows, "log": LogEntry.objects.latest("id")}


def entry_of(table: str, pk: int) -> AuditChainEntry:
    return AuditChainEntry.objects.get(table_name=table, row_pk=str(pk))


def test_chain_covers_history_admin_log_and_remedies():
    tables = chained_tables()
    assert HISTORY_TABLE in tables
    assert {"django_admin_log", "copytrading_staffremedy"} <= set(tables)
    assert all(
        t.startswith(("django_admin_log", "copytrading_staffremedy")) or "historical" in t
        for t in tables
    )


def test_rows_are_chained_at_commit_and_verify(staff_actions):
    for row in staff_actions["rows"]:
        entry_of(HISTORY_TABLE, row.history_id)
    entry_of("django_admin_log", staff_actions["log"].pk)
    seqs = list(AuditChainEntry.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert "Audit chain intact" in verify()


def test_verify_audit_names_an_edited_history_row(staff_actions):
    row = staff_actions["rows"][1]  # the pause, with its reason
    edit = f"UPDATE {HISTORY_TABLE} SET history_change_reason = 'nothing' WHERE history_id = %s"
    sql(edit, [row.history_id])
    entry = entry_of(HISTORY_TABLE, row.history_id)
    broken(f"row {HISTORY_TABLE} pk {row.history_id} (entry #{entry.seq}) was edited")


def test_verify_audit_names_a_deleted_admin_log_row(staff_actions):
    log = staff_actions["log"]
    entry = entry_of("django_admin_log", log.pk)
    sql("DELETE FROM django_admin_log WHERE id = %s", [log.pk])
    broken(f"row django_admin_log pk {log.pk} (entry #{entry.seq}) was deleted")


def test_verify_audit_sees_chain_entries_removed_or_rewritten(staff_actions):
    row = staff_actions["rows"][0]
    entry = entry_of(HISTORY_TABLE, row.history_id)
    sql("UPDATE audit_auditchainentry SET row_pk = row_pk WHERE seq = %s", [entry.seq])  # no-op
    assert "intact" in verify()
    sql("DELETE FROM audit_auditchainentry WHERE seq = %s", [entry.seq])
    broken(
        f"entries #{entry.seq}..#{entry.seq} are missing",
        f"{HISTORY_TABLE} are not in the chain (pk {row.history_id})",
    )


def test_verify_audit_sees_a_rewritten_entry(staff_actions):
    row = staff_actions["rows"][2]
    entry = entry_of(HISTORY_TABLE, row.history_id)
    # Edit the row and "fix" its row hash: the entry's own hash no longer matches.
    sql(
        f"UPDATE {HISTORY_TABLE} SET history_change_reason = 'x' WHERE history_id = %s",
        [row.history_id],
    )
    sql(
        "UPDATE audit_auditchainentry SET row_hash = encode(sha256(convert_to(("
        f"SELECT to_jsonb(t)::text FROM {HISTORY_TABLE} t WHERE history_id = %s), 'UTF8')), 'hex') "
        "WHERE seq = %s",
        [row.history_id, entry.seq],
    )
    broken(f"entry #{entry.seq} ({HISTORY_TABLE} pk {row.history_id}) was edited")


def test_rows_inserted_with_the_trigger_off_are_reported(staff_actions):
    sql(f"ALTER TABLE {HISTORY_TABLE} DISABLE TRIGGER audit_chain")
    subscription_pause(subscription=staff_actions["sub"], reason="quietly", actor=None)
    commit_point()
    sneaked = staff_actions["sub"].history.latest("history_id").history_id
    broken(f"1 row(s) of {HISTORY_TABLE} are not in the chain (pk {sneaked})")


def test_a_cut_tail_is_seen_against_a_kept_head(staff_actions):
    verdict = verify_chain()
    head = f"{verdict.head_seq}:{verdict.head_hash}"
    log = staff_actions["log"]
    entry = entry_of("django_admin_log", log.pk)
    assert entry.seq == verdict.head_seq
    # Remove the newest row and its entry together: the chain alone still looks whole.
    sql("DELETE FROM django_admin_log WHERE id = %s", [log.pk])
    sql("DELETE FROM audit_auditchainentry WHERE seq = %s", [entry.seq])
    assert "intact" in verify()
    with pytest.raises(CommandError, match=f"ends at #{entry.seq - 1}, before the expected head"):
        call_command("verify_audit", "--expect-head", head, stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_concurrent_commits_keep_one_unbroken_chain():
    subs = [make_subscription() for _ in range(4)]
    errors = []

    def pause_and_resume(sub):  # type: ignore[no-untyped-def]
        try:
            for n in range(5):
                with transaction.atomic():
                    subscription_pause(subscription=sub, reason=f"p{n}", actor=None)
                with transaction.atomic():
                    subscription_resume(subscription=sub, reason=f"r{n}", actor=None)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=pause_and_resume, args=(s,)) for s in subs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    verdict = verify_chain()
    assert verdict.problems == []
    history_rows = CopySubscription.history.filter(id__in=[s.pk for s in subs]).count()
    assert history_rows == 4 * (1 + 10)
    assert AuditChainEntry.objects.filter(table_name=HISTORY_TABLE).count() == history_rows


def test_a_table_chained_late_adopts_its_rows_in_order(staff_actions):
    from audit.chain import FUNCTIONS_SQL, LOCK_KEY, install_triggers

    assert str(LOCK_KEY) in FUNCTIONS_SQL  # the literal SQL uses the same lock
    sql(f"DROP TRIGGER audit_chain ON {HISTORY_TABLE}")
    sql("DELETE FROM audit_auditchainentry WHERE table_name = %s", [HISTORY_TABLE])
    sql("TRUNCATE audit_auditchainentry")
    assert install_triggers() == [HISTORY_TABLE]
    assert install_triggers() == []
    adopted = AuditChainEntry.objects.filter(table_name=HISTORY_TABLE).order_by("seq")
    assert [int(e.row_pk) for e in adopted] == sorted(
        CopySubscription.history.values_list("history_id", flat=True)
    )
    broken("django_admin_log are not in the chain")  # its entries went with the truncate


def test_the_daily_task_logs_a_broken_chain_as_critical(staff_actions, caplog):
    from audit.tasks import verify_chain as daily

    assert daily() == 0
    log = staff_actions["log"]
    sql("UPDATE django_admin_log SET change_message = 'nothing' WHERE id = %s", [log.pk])
    assert daily() == 1
    assert f"row django_admin_log pk {log.pk}" in caplog.text
    assert [r.levelname for r in caplog.records if "broken" in r.message] == ["CRITICAL"]

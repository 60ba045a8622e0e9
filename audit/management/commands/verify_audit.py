"""Verifies the audit hash chain: exits non-zero naming the first edited or deleted row."""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.chain import verify_chain


class Command(BaseCommand):
    help = (
        "Walks the hash chain over history rows, the admin log and staff remedies; fails "
        "naming each edited, deleted or unchained row. Prints the head to keep elsewhere."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect-head",
            metavar="SEQ:HASH",
            help="a head printed by an earlier run: the chain must still contain it",
        )

    def handle(self, *args: object, **options: object) -> None:
        verdict = verify_chain()
        problems = [p.message for p in verdict.problems]
        expected = options.get("expect_head")
        if expected:
            problems += self._check_head(str(expected), verdict.head_seq)
        if problems:
            raise CommandError(
                f"Audit chain broken ({len(problems)} problem(s) shown):\n  "
                + "\n  ".join(problems)
            )
        self.stdout.write(
            f"Audit chain intact: {verdict.entries} entries over {verdict.tables} tables. "
            f"Head {verdict.head_seq}:{verdict.head_hash} (keep it; pass it back with "
            "--expect-head to prove nothing was cut from the end)."
        )

    def _check_head(self, expected: str, head_seq: int) -> list[str]:
        from audit.models import AuditChainEntry

        seq_text, _, hash_ = expected.partition(":")
        if not seq_text.isdigit() or len(hash_) != 64:
            raise CommandError("--expect-head takes SEQ:HASH as printed by verify_audit.")
        seq = int(seq_text)
        if seq > head_seq:
            return [f"the chain ends at #{head_seq}, before the expected head #{seq} (cut)"]
        if not AuditChainEntry.objects.filter(seq=seq, hash=hash_).exists():
            return [f"entry #{seq} is not the expected head {hash_} (rewritten)"]
        return []

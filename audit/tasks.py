"""Celery tasks of the audit app."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="audit.verify_chain", ignore_result=True)
def verify_chain() -> int:
    """Walks the audit chain (beat runs it daily); a broken chain is logged at CRITICAL,
    naming each problem, for whoever watches the logs. Returns the number of problems."""
    from .chain import verify_chain as walk

    verdict = walk()
    for problem in verdict.problems:
        logger.critical("Audit chain broken: %s", problem.message)
    if not verdict.problems:
        logger.info(
            "Audit chain intact: %s entries, head %s:%s",
            verdict.entries,
            verdict.head_seq,
            verdict.head_hash,
        )
    return len(verdict.problems)

"""Turns start-up failures (services down, settings missing) into one line that says the fix."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain_startup_error(exc: BaseException) -> str | None:
    """One line for a known start-up failure; None for anything else (keep the traceback)."""
    from django.core.exceptions import ImproperlyConfigured

    chain = _chain(exc)
    for error in chain:
        if isinstance(error, ImproperlyConfigured):
            return str(error)
    try:
        from django.db import OperationalError as DjangoOperationalError
        from psycopg import OperationalError as PsycopgOperationalError
    except ImportError:  # pragma: no cover - both are requirements
        return None
    if any(isinstance(e, DjangoOperationalError | PsycopgOperationalError) for e in chain):
        from config.services import database_problem

        return database_problem() or str(exc)
    import redis

    if any(isinstance(e, redis.exceptions.ConnectionError) for e in chain):
        from config.services import redis_problem

        return redis_problem() or str(exc)
    return None


def require_services() -> None:
    """Exits with one line per unreachable service; used by `checkservices` and start scripts."""
    import sys

    from config.services import service_status

    problems = service_status()
    for line in problems:
        sys.stderr.write(f"error: {line}\n")
    if problems:
        sys.exit(2)

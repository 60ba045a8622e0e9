"""Checks that PostgreSQL and Redis answer, with one line that says how to fix it."""

from urllib.parse import urlsplit, urlunsplit

from django.conf import settings


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def database_problem() -> str | None:
    """None when the database answers, else one line naming the URL and the fix."""
    from django.db import connection

    try:
        connection.ensure_connection()
    except Exception as exc:  # any driver error means the same thing to the operator
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"Database unreachable at DATABASE_URL={redact_url(settings.DATABASE_URL)} ({reason}). "
            "Start PostgreSQL, create the database (createdb -h 127.0.0.1 -U postgres copytrade) "
            "or set DATABASE_URL to a reachable one."
        )
    return None


def redis_problem() -> str | None:
    """None when Redis answers, else one line naming the URL and the fix."""
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        return (
            f"Redis unreachable at REDIS_URL={redact_url(settings.REDIS_URL)} ({exc}). "
            "Start Redis or set REDIS_URL to a reachable one."
        )
    return None


def service_status() -> list[str]:
    """Every problem with the services the back office needs; empty when all answer."""
    return [p for p in (database_problem(), redis_problem()) if p]

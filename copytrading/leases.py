"""Leases in Redis: at most one holder of a name at a time, across workers and machines.

A lease is a key holding the holder's random token with a time to live. Only the
holder can renew or release it (checked atomically by a Lua script), so a holder
that stalled past the TTL and lost the lease cannot take it back from the new one:
its next renewal fails and it must stop.
"""

import secrets
from dataclasses import dataclass, field

from config.redis import get_redis

_PREFIX = "ct:lease:"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass
class Lease:
    """A held lease; `renew()` must succeed more often than `ttl_ms` or the lease is lost."""

    name: str
    ttl_ms: int
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def key(self) -> str:
        return _PREFIX + self.name

    def acquire(self) -> bool:
        """True when this call took the lease (nobody held it)."""
        return bool(get_redis().set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """True while this holder still holds the lease; False means stop now."""
        return bool(get_redis().eval(_RENEW, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> None:
        """Gives the lease up, if still held by this holder."""
        get_redis().eval(_RELEASE, 1, self.key, self.token)


def lease_holder(name: str) -> str | None:
    """The token of the current holder of `name`, or None when nobody holds it."""
    value = get_redis().get(_PREFIX + name)
    return value.decode() if value else None

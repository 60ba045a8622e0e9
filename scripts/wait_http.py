"""Waits until every URL answers (any HTTP status), or exits 1 after a deadline."""

import sys
import time
import urllib.error
import urllib.request


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - local URLs we started
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def main(urls: list[str], timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        pending = [u for u in pending if not answers(u)]
        if pending:
            time.sleep(0.1)
    for url in pending:
        print(f"error: {url} did not answer within {timeout:.0f} s", file=sys.stderr)
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

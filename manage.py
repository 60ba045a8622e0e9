#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # A service that is down or a setting that is missing is one line to fix,
        # not a traceback to read.
        from config.startup import explain_startup_error

        line = explain_startup_error(exc)
        if line is None:
            raise
        sys.stderr.write(f"error: {line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()

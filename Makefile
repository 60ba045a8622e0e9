# The two commands of the README, and a few helpers.
.PHONY: demo test lint fmt migrate bench

demo:  ## install, migrate, load demo data, start venue + ASGI + Celery worker and beat
	bash scripts/demo.sh

test:  ## install and run the whole suite (lint, checks, tests)
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

migrate:
	.venv/bin/python manage.py migrate

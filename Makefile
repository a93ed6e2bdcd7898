# The two Quickstart commands. Both install what they need first (idempotent, fast when done).
.PHONY: serve test install install-test lint

serve: install
	.venv/bin/voice serve $(ARGS)

test: install-test
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest $(PYTEST_ARGS)
	node --test web/tests/

install:
	scripts/install.sh

install-test:
	scripts/install.sh --test

lint:
	.venv/bin/ruff check voice tests bench

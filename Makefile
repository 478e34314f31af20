# Two commands: `make demo` (main job on the embedded data) and `make test` (the suite; .ci/run).
# Both create .venv when it is missing. pip takes torch/torchvision from the local wheel cache
# on our machines and from PyPI elsewhere.
PY := .venv/bin/python

.PHONY: demo test test-fast install

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: .venv/.installed

demo: install
	.venv/bin/kdtrack demo

# Two test processes (pytest-xdist), a test file's tests in one process with its store; each test
# process and the subprocesses it starts use one torch thread (tests/conftest.py), so the two
# processes do not wait on each other. --durations shows where the time goes.
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile --durations=20

test: install
	.venv/bin/ruff check .
	$(PYTEST) tests

# Everything but the tests marked slow (several processes, a real server, a browser, the wheel).
test-fast: install
	.venv/bin/ruff check .
	$(PYTEST) -m "not slow" tests

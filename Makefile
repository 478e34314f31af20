# Two commands: `make demo` (main job on the embedded data) and `make test` (the suite; .ci/run).
# Both create .venv when it is missing. pip takes torch/torchvision from the local wheel cache
# on our machines and from PyPI elsewhere.
PY := .venv/bin/python

.PHONY: demo test install

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: .venv/.installed

demo: install
	.venv/bin/kdtrack demo

test: install
	.venv/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 tests

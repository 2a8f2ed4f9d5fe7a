# The newcomer's commands: `make setup`, then `make demo` or `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@scripts/ensure-chromium
	@touch $(STAMP)
	@echo "setup done: $(VENV) ($$($(PY) --version))"

demo: setup
	$(VENV)/bin/flexfleet demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf out .flexfleet .pytest_cache

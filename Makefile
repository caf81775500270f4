# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they need first
# (system packages when missing, then .venv from requirements/lock-cpu.txt) and are safe to re-run.
VENV ?= .venv
PY := $(VENV)/bin/python
LANGS ?= ja,en,ko
DEMO_ARGS ?=

.PHONY: setup system-packages demo test lint bench clean

setup: system-packages
	@bash scripts/setup_python.sh

system-packages:
	@bash scripts/install_system_packages.sh

demo: setup
	$(PY) -m flows.demo --langs $(LANGS) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check core text audio cloning flows tasks models tests bench media_samples scripts webstudio
	$(PY) -m ruff format --check core text audio cloning flows tasks models tests bench media_samples scripts webstudio
	$(PY) -m mypy core text audio cloning flows tasks models webstudio

bench: setup
	$(PY) -m bench.suite

clean:
	rm -rf out .pytest_cache

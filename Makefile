# The README's two commands:
#   make bench   set up .venv and run benchmarks/quickstart.toml on a local Ray
#   make test    set up .venv (with test tools) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: bench test install clean

# pip (not uv/poetry): it takes the pinned torch/torchvision wheels from the
# machine's local wheel directory instead of downloading several GB.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/.installed

bench: $(BIN)/.installed
	$(BIN)/alharness bench benchmarks/quickstart.toml

test: $(BIN)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/quickstart .pytest_cache

# The README's two commands:
#   make bench   set up .venv and run benchmarks/quickstart.toml on a local Ray
#   make test    set up .venv (with test tools) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: bench test install clean

# The bundled real datasets read files shipped in two wheels; --no-deps
# because only the data files are used (stardist's own code would pull in
# TensorFlow).
BUNDLED_DATA := stardist==0.9.2 ndev-sampledata==0.0.3

# pip (not uv/poetry): it takes the pinned torch/torchvision wheels from the
# machine's local wheel directory instead of downloading several GB.
$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(BUNDLED_DATA)
	touch $@

install: $(BIN)/.installed

bench: $(BIN)/.installed
	$(BIN)/alharness bench benchmarks/quickstart.toml

test: $(BIN)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/quickstart .pytest_cache

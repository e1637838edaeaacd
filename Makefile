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

# The HTML report's browser test needs headless Chromium: Debian's package,
# installed here when missing and we may (root with apt); otherwise that one
# test is skipped (outside CI) with a note.
test: $(BIN)/.installed
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's chromium for the report's browser test" && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "note: chromium not installed; the report's browser test will be skipped"
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results/quickstart .pytest_cache

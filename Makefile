# The README's two commands:
#   make bench   set up .venv and run benchmarks/quickstart.toml on a local Ray
#   make test    set up .venv (with test tools) and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: bench test install clean

# Label Studio for the live campaigns' real-server test (tests/test_live_server.py), in
# a virtualenv of its own so that its pins never meet alharness's. The stamp names the
# version: changing LABEL_STUDIO_VERSION rebuilds it. -qq: the machine's extra package
# indexes make pip warn once per package.
LS_VENV              := .venv-ls
LABEL_STUDIO_VERSION := 1.23.2
LS_STAMP             := $(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION)

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

$(LS_STAMP):
	rm -rf $(LS_VENV)
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -qq --disable-pip-version-check label-studio==$(LABEL_STUDIO_VERSION)
	touch $@

bench: $(BIN)/.installed
	$(BIN)/alharness bench benchmarks/quickstart.toml

# The HTML report's and Label Studio's browser tests need headless Chromium:
# Debian's package, installed here when missing and we may (root with apt);
# otherwise those tests are skipped (outside CI) with a note. So is the
# real-server test when Label Studio's virtualenv cannot be made (under
# CI=true both fail instead).
test: $(BIN)/.installed
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Debian's chromium for the browser tests" && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "note: chromium not installed; the browser tests will be skipped"
	@test -f $(LS_STAMP) || { echo "installing Label Studio $(LABEL_STUDIO_VERSION) into $(LS_VENV) for the real-server test"; \
	  $(MAKE) --no-print-directory $(LS_STAMP); } || \
	  echo "note: Label Studio could not be installed into $(LS_VENV); the real-server test will be skipped"
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(LS_VENV) results/quickstart .pytest_cache

# portald: `make run` to try it, `make test` to test it.  Nothing else to set up.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VENV_OK := $(VENV)/.venv-ok
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test unit lab lab-packages lint bench clean deb

# The virtual environment itself.  A venv that Debian's python3 made without
# its python3-venv package has no pip: start again, and say what is missing.
$(VENV_OK):
	@if ! test -x $(BIN)/pip; then \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
			echo "make: '$(PYTHON) -m venv' failed; on Debian or Raspberry Pi OS: sudo apt-get install python3-venv" >&2; \
			exit 1; }; \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

# portald, installed editable.
$(STAMP): pyproject.toml $(VENV_OK)
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# ... and the test tools (pytest, hypothesis, ruff, Playwright for the lab's browser).
$(TEST_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The portal in the foreground on the development configuration:
# loopback, high ports, no firewall, no root.  Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/twistd --nodaemon --pidfile= portald --config etc/dev/portald.yaml

# The whole suite, lab included (as root, the lab's Debian packages are
# installed first when missing; without root the lab tests skip, except
# under CI=true, where a skip is a failure).
test: $(TEST_STAMP) lab-packages
	$(BIN)/python -m pytest

# Unit tests only: no root, no network namespaces.
unit: $(TEST_STAMP)
	$(BIN)/python -m pytest -m 'not lab'

# A guest's whole visit, narrated, in the network lab (as root): DHCP, the
# portal, the probes, signing in, online; then Chromium does the same.  The
# lab is torn down afterwards.
lab: $(TEST_STAMP) lab-packages
	$(BIN)/python -m pytest tests/lab/test_guest.py tests/lab/test_browser.py -s -q -p no:cacheprovider -k 'scenario1 or browser'

lab-packages:
	@sh tests/lab/install-packages.sh

# The Debian package, build/deb/portald_<version>_<arch>.deb (see packaging/README.md).
deb:
	@sh packaging/build-deb

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

# The benches draw their curves with matplotlib (bench/soak): only for them.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

bench: $(BENCH_STAMP)
	@test -d bench && for script in bench/*; do [ -x "$$script" ] && [ -f "$$script" ] && PATH="$(abspath $(BIN)):$$PATH" "$$script"; done; true

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache etc/dev/state
	find . -name __pycache__ -prune -exec rm -rf {} +

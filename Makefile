# portald: `make run` to try it, `make test` to test it.  Nothing else to set up.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test unit lab lab-packages lint bench clean

# The virtual environment, with portald installed editable and the test tools.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The portal in the foreground on the development configuration:
# loopback, high ports, no firewall, no root.  Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/twistd --nodaemon --pidfile= portald --config etc/dev/portald.yaml

# The whole suite, lab included (as root, the lab's Debian packages are
# installed first when missing; without root the lab tests skip, except
# under CI=true, where a skip is a failure).
test: $(STAMP) lab-packages
	$(BIN)/python -m pytest

# Unit tests only: no root, no network namespaces.
unit: $(STAMP)
	$(BIN)/python -m pytest -m 'not lab'

# A guest's whole visit, narrated, in the network lab (as root): DHCP, the
# portal, the probes, signing in, online; then Chromium does the same.  The
# lab is torn down afterwards.
lab: $(STAMP) lab-packages
	$(BIN)/python -m pytest tests/lab/test_guest.py tests/lab/test_browser.py -s -q -p no:cacheprovider -k 'scenario1 or browser'

lab-packages:
	@sh tests/lab/install-packages.sh

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	@test -d bench && for script in bench/*; do [ -x "$$script" ] && [ -f "$$script" ] && PATH="$(abspath $(BIN)):$$PATH" "$$script"; done; true

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .ruff_cache etc/dev/state
	find . -name __pycache__ -prune -exec rm -rf {} +

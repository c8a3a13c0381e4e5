# edgepbx: the two commands are `make run` and `make test`; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests and benchmarks talk to: SIPp, baresip, age, Kamailio (bench peer), tmux,
# iproute2, ping and dnsmasq (a DHCP server) for the network namespaces of tests/network,
# openssl (test certificates).
DEB_PACKAGES := sip-tester baresip age kamailio tmux python3-venv iproute2 iputils-ping openssl \
    dnsmasq-base
STAMP := $(VENV)/.installed

.PHONY: run test bench fuzz lint typecheck deps deb clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

deps: $(STAMP)

# Install missing Debian packages only (apt-get update once, when something is missing).
deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: deps
	$(VENV)/bin/edgepbx run

test: deb deps lint
	$(PY) -m pytest -q -ra

bench: deb deps
	$(PY) -m pytest -q -s tests/perf -m bench --timeout 3600

fuzz: deps
	EDGEPBX_FUZZ_SECONDS=$${EDGEPBX_FUZZ_SECONDS:-600} $(PY) -m pytest -q -s tests/sip/test_fuzz.py -m 'slow or not slow'

lint: deps
	$(VENV)/bin/ruff check pbx appliance firmware tui tests
	$(VENV)/bin/ruff format --check pbx appliance firmware tui tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis

# make run: set up on a fresh machine and serve the app; make test: set up and run every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export OVMWEB_BIND ?= 127.0.0.1:8000

.PHONY: run test lint install system venv npm migrate services guest bench clean

install: system venv npm

system:
	bash scripts/install-system.sh

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

npm: node_modules/.installed
node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

services:
	bash scripts/start-services.sh

guest:
	bash scripts/build-tiny-guest.sh

migrate: venv
	$(PY) manage.py migrate --noinput

run: install services guest migrate
	$(PY) manage.py bootstrap
	$(PY) manage.py runovmweb --bind $(OVMWEB_BIND)

lint: venv
	$(VENV)/bin/ruff check ovmweb tests bench
	$(VENV)/bin/ruff format --check ovmweb tests bench
	# Medium and high severity fail; a reviewed finding carries `# nosec BXXX  # reason` on its line.
	$(VENV)/bin/bandit -q -r ovmweb -ll

test: install lint services guest
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install services guest
	for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf var .pytest_cache test-artifacts

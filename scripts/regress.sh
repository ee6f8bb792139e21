#!/usr/bin/env bash
# The regression suite in one command: check the set-up, make the suite's audio if it is missing
# (scripts/make_regression_set.py), replay it, compare it with samples/regression/baseline.json
# and print the table (`babelfish suite`). Exit 1 on a regression, as `babelfish suite`.
#
#   scripts/regress.sh                     # run and compare
#   scripts/regress.sh --update-baseline   # run and write the new baseline
#   scripts/regress.sh --figures docs/figures/regression.json   # also the table for figures.md
#
# Any option is passed to `babelfish suite` (see `babelfish suite --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [[ ! -x $PY || ! -x .venv/bin/babelfish ]]; then
    echo "regress: error: no .venv here: run scripts/setup.sh --dev first" >&2
    exit 2
fi
start=$(date +%s)
SET=samples/regression
missing=$($PY - "$SET/suite.toml" <<'PYEOF'
import sys
from babelfish.evaluation.suite import read_suite

print(sum(not e.path.is_file() for e in read_suite(sys.argv[1])))
PYEOF
)
if [[ $missing != 0 ]]; then
    echo "regress: $missing recording(s) missing: making the suite's audio" >&2
    $PY scripts/make_regression_set.py --out "$SET"
    if ! git diff --quiet -- "$SET/suite.toml"; then
        echo "regress: error: the audio made here does not match the committed $SET/suite.toml" >&2
        git --no-pager diff --stat -- "$SET/suite.toml" >&2
        exit 2
    fi
fi
rc=0
export BABELFISH_SUITE_COMMAND="scripts/regress.sh${*:+ $*}"  # for --figures
.venv/bin/babelfish suite "$SET/suite.toml" "$@" || rc=$?
echo "regress: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s in all, exit $rc"
exit $rc

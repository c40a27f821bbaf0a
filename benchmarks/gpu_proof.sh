#!/usr/bin/env bash
# The GPU proof as one command on a bare GPU machine that reaches no package registry: install what its
# python lacks from wheels brought along, then run benchmarks/gpu_proof.py within the time left of the budget.
#
#   bash benchmarks/gpu_proof.sh --fetch-wheels     # beforehand, on a machine with PyPI: wheels into .whl/
#   bash benchmarks/gpu_proof.sh OUT [FLAGS...]     # on the GPU machine: results under OUT (8 minutes in all)
#
# The GPU machine's own python3 and torch are used as they are (the project's pinned torch is not installed
# there: a CUDA wheel of it is gigabytes); the stages need nothing beyond torch, torchvision, numpy, h5py,
# pillow, pyyaml, tqdm, matplotlib and hdf5plugin, and the wheels bring snakemake and jsonschema (the workflow),
# hdf5plugin (the translated sets' codec) and whatever else of theirs is missing. Only wheels of packages
# that python lacks are installed, into a folder of their own, so the machine's versions stay. FLAGS go to
# gpu_proof.py (--device cpu --tiny checks all of this on a CPU). BUDGET (seconds, default 480) is the whole
# run's, the install included.
# Environment: PYTHON (default python3), WHEELS (default .whl), BUDGET, WHEEL_PYTHON (for --fetch-wheels:
# the GPU machine's python version, default 3.12).
set -uo pipefail
caller=$PWD
cd "$(dirname "$0")/.." || exit 1
started=$(date +%s)
WHEELS=${WHEELS:-.whl}

if [ "${1:-}" = "--fetch-wheels" ]; then
    PY=${PYTHON:-.venv/bin/python}  # the project's environment: its versions are the ones fetched
    mkdir -p "$WHEELS"
    platforms=""
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
        platforms="$platforms --platform $p"
    done
    failed=0
    for req in $("$PY" benchmarks/gpu_proof.py --wheel-requirements); do
        # shellcheck disable=SC2086
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" \
            --implementation cp $platforms -d "$WHEELS" "$req" >/dev/null 2>&1 \
            || "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$req" >/dev/null 2>&1 \
            || { echo "error: no wheel for $req"; failed=1; }
    done
    echo "$(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS"
    exit $failed
fi

OUT=${1:?usage: bash benchmarks/gpu_proof.sh OUT [gpu_proof.py flags] | --fetch-wheels}
shift
case $OUT in /*) ;; *) OUT=$caller/$OUT ;; esac  # relative to where it was called from, not the repository
PY=${PYTHON:-python3}
mkdir -p "$OUT"
SITE=$(mktemp -d /tmp/bdl-site.XXXXXX)
{
    echo "python: $(command -v "$PY") ($("$PY" --version 2>&1))"
    if [ -d "$WHEELS" ]; then
        # the wheels whose distribution this python does not have
        missing=$("$PY" - "$WHEELS" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    name, version = wheel.name.split("-")[:2]
    try:
        print(f"present: {name} {metadata.version(name)} (brought {version})", file=sys.stderr)
    except metadata.PackageNotFoundError:
        print(wheel)
EOF
        )
        if [ -n "$missing" ]; then
            echo "installing into $SITE:" $missing
            # shellcheck disable=SC2086
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" $missing \
                || echo "error: the wheel install failed; the pieces that need these packages will say so"
        fi
    else
        echo "no $WHEELS folder: nothing installed (bash benchmarks/gpu_proof.sh --fetch-wheels makes it)"
    fi
} >"$OUT/install.log" 2>&1
cat "$OUT/install.log"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
left=$(( ${BUDGET:-480} - ($(date +%s) - started) ))
exec "$PY" benchmarks/gpu_proof.py --out "$OUT" --budget "$left" "$@"

#!/usr/bin/env bash
# The CUDA checks, sized for one short lease of one GPU: the CUDA tests, and fidelity.py's fits
# of the shared tables with the `gpu` preset on that GPU, all at once (each fit is bound by kernel
# launches, so one GPU runs several side by side; their wall budgets are those of a lone fit).
#
#   OUT=<dir> bash benchmarks/cuda_check.sh <work dir>
#
# <work dir> holds <dataset>/train.parquet and holdout.parquet (`fidelity.py prepare` writes
# them). Each finished fit is packed at once into $OUT/<dataset>-<tag>.tar (its runs, with the
# synthetic rows cut to the rows `fidelity.py score` reads, and its log), so a call stopped at its
# time limit still returns what finished; score them where sdmetrics is installed:
#   tar -xf <dataset>-<tag>.tar -C <work dir>; python benchmarks/fidelity.py score --merge
# VARIANTS: extra "tag|dataset dataset|--set key=json ..." fits beside the preset's, one per line.
# $OUT gets one tar per fit plus pytest.log: where only 8 files come back, run at most 7 fits.
set -uo pipefail
WORK=${1:?usage: OUT=<dir> bash benchmarks/cuda_check.sh <work dir>}
OUT=${OUT:?set OUT to the folder for the packed results}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-4.6}
THREADS=${THREADS:-2}
DATASETS=${DATASETS-"california_housing diamonds credit_default nyc_flights"}  # "" fits only VARIANTS
VARIANTS=${VARIANTS:-}
EXTRA=${EXTRA:-}  # options for every fit (a dry run on a CPU: EXTRA="--set pair_batch=4096")
export PUSHFORWARD_BENCH_WORK=$WORK PYTHONUNBUFFERED=1

nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# fit <tag> <dataset> [fidelity.py options...]: one fit, then its runs packed into $OUT.
fit() {
    local tag=$1 ds=$2
    shift 2
    local log="$WORK/$ds/pushforward-hybrid-$tag.log"
    OMP_NUM_THREADS=$THREADS $PY benchmarks/fidelity.py ours --datasets "$ds" --seeds 0 \
        --families hybrid --preset gpu --device "$DEVICE" --threads "$THREADS" \
        --minutes "$MINUTES" --tag "$tag" $EXTRA "$@" >"$log" 2>&1
    echo "[$(date +%T)] $ds $tag: exit $?; $(grep -h 'fit .*rows/s' "$log" | tail -1)"
    $PY - "$WORK" "$ds" "pushforward-hybrid-$tag" <<'EOF'
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, "benchmarks")
from fidelity import _score_rows  # the rows `score` reads: the same seeded subsample

work, ds, method = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
n = len(pd.read_parquet(work / ds / "holdout.parquet"))
for path in (work / ds).glob(f"{method}*/seed-*/synthetic.parquet"):
    _score_rows(pd.read_parquet(path), n).to_parquet(path, index=False)
EOF
    tar -cf "$OUT/$ds-$tag.tar" -C "$WORK" \
        $(cd "$WORK" && ls -d "$ds/pushforward-hybrid-$tag" "$ds/pushforward-hybrid-$tag-teacher" \
            "$ds/pushforward-hybrid-$tag.log" 2>/dev/null)
}

(nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 \
    >"$WORK/gpu.log" 2>&1 &)
for ds in $DATASETS; do
    fit gpu "$ds" &
done
while IFS='|' read -r tag dss opts; do
    [ -z "$tag" ] && continue
    for ds in $dss; do
        # shellcheck disable=SC2086 # opts is a list of options
        fit "$tag" "$ds" $opts &
    done
done <<<"$VARIANTS"

OMP_NUM_THREADS=2 $PY -m pytest -q -p no:cacheprovider -o addopts="" -rs -k cuda \
    tests/test_models.py tests/test_torch_decode.py tests/test_hybrid.py >"$OUT/pytest.log" 2>&1
echo "pytest exit $?: $(tail -1 "$OUT/pytest.log")"
wait
pkill -f "nvidia-smi --query-gpu" 2>/dev/null || true
grep -h "passed\|failed\|error\|SKIP" "$OUT/pytest.log" | tail -20
tail -4 "$WORK/gpu.log"
ls -la "$OUT"

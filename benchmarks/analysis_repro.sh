#!/usr/bin/env bash
# The small-scale reproduction of docs/analysis.md: the papers' analyses of trained models
# (composite Amax gain, identity drift, stream-Jacobian spectrum) for hc, mhc, mhc-lite, shc
# and jpmhc with n = 4, at nanoGPT's shakespeare_char CPU configuration (4 layers, n_embd 128)
# and at a deeper, narrower one (12 layers, n_embd 64) where gains have room to grow.
# Usage: bash benchmarks/analysis_repro.sh [OUT_DIR] [ITERS] [DEEP_ITERS] [SEED] [STAGE]
#   (defaults: runs/analysis 2000 2000 1337 both; STAGE base or deep runs one of the two,
#   e.g. both at once in two processes). Long on a CPU: start it with nohup.
# Writes OUT_DIR/{base,deep}/<mixer>/ run directories, OUT_DIR/{base,deep}.png figures and
# OUT_DIR/{base,deep}.txt tables (`mhckit analyze`).
set -euo pipefail
OUT="${1:-runs/analysis}"
ITERS="${2:-2000}"
DEEP_ITERS="${3:-2000}"
SEED="${4:-1337}"
STAGE="${5:-both}"
MIXERS=(hc mhc mhc-lite shc jpmhc)
run() {  # run NAME ITERS FLAGS...
    local name="$1" iters="$2"
    shift 2
    for mixer in "${MIXERS[@]}"; do
        python -m mhckit train --config shakespeare-char-cpu --mixer "$mixer" --n-streams 4 \
            --max-iters "$iters" --lr-decay-iters "$iters" --seed "$SEED" --sample-tokens 0 \
            --no-progress --out "$OUT/$name/$mixer" "$@" > "$OUT/$name/$mixer.log" 2>&1
    done
    python -m mhckit analyze "${MIXERS[@]/#/$OUT/$name/}" --out "$OUT/$name.png" \
        > "$OUT/$name.txt"
}
mkdir -p "$OUT/base" "$OUT/deep"
[ "$STAGE" = deep ] || run base "$ITERS"
[ "$STAGE" = base ] || run deep "$DEEP_ITERS" --n-layer 12 --n-embd 64 --n-head 4

#!/usr/bin/env bash
# The README's main demo: a short comparison of mixers on Tiny Shakespeare (CPU, a few minutes).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# --overwrite: the demo replaces its own earlier output in runs/demo
mhckit compare --config demo --out runs/demo --overwrite "$@"

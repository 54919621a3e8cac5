#!/usr/bin/env bash
# The test command of the README: lint, docs build (fails on warnings), then the test suite.
# Every test runs, slow ones (marked `slow`, about 30 s more on 2 cores) included; MHCKIT_FAST=1
# skips those. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check mhckit tests benchmarks
mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
MARK=""
[ "${MHCKIT_FAST:-0}" = "1" ] && MARK="not slow"
python -m pytest -n "${MHCKIT_WORKERS:-2}" -m "$MARK" "$@"

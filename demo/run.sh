#!/usr/bin/env bash
# The main job on the embedded default, as the README's first command runs it.
# Writes everything under demo/out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
ISSKIT=${ISSKIT:-.venv/bin/isskit}
OUT=demo/out
mkdir -p "$OUT"

echo "== the ISS mapping psi at the paper's setting (k_bar = 100,000, U = 0.05, AD)"
"$ISSKIT" psi --k-bar 100000 --U 0.05 --decline ad --sigma 0.25 --alpha 0.001 --delta 0.001 \
    --out "$OUT/psi_ad.csv"
echo
echo "== Propositions 1 and 2 for that mapping"
"$ISSKIT" verify --k-bar 100000 --U 0.05 --decline ad --sigma 0.25 --alpha 0.001 --delta 0.001

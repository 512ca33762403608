#!/usr/bin/env bash
# The main job on the embedded default, as the README's first command runs it:
# sample the embedded digits model once, then replay ISS against IAS offline; certify
# online with the policy chosen, drawing only what it needs; and replay ISS against IAS on
# a real ImageNet model's p_A (a published log, imported as streams).
# Everything is written under demo/out/ (ignored by git); a rerun resumes the sampling
# and reuses the online draws.
set -euo pipefail
cd "$(dirname "$0")/.."
ISSKIT=${ISSKIT:-.venv/bin/isskit}
OUT=${ISSKIT_DEMO_OUT:-demo/out}
N=${ISSKIT_DEMO_N:-20000}
mkdir -p "$OUT"

echo "== 1. sample: the embedded default (a noise-trained CNN on the UCI digits test split),"
echo "      $N noisy copies of each of the 359 test images at sigma = 0.25"
"$ISSKIT" sample --N "$N" --out "$OUT/streams.h5"
echo
"$ISSKIT" info "$OUT/streams.h5"
echo
echo "== 2. replay: ISS (k_bar = 10,000; AD and RD; U = 0.05, 0.1) against IAS budgets, offline"
"$ISSKIT" replay "$OUT/streams.h5" --no-progress \
    -p "iss decline=ad,rd k_bar=1e4 U=0.05,0.1" \
    -p "ias n=1000,2000,3000,5000,10000" -p "cohen n0=100 n=10000" \
    --out "$OUT/results.nc" --plot "$OUT/figures" --export-cohen "$OUT/cohen-logs"
echo
echo "== 3. the ISS mapping psi behind those runs, and Propositions 1 and 2 checked for it"
"$ISSKIT" psi --k-bar 10000 --U 0.05 --decline ad --sigma 0.25 --alpha 0.001 --delta 0.001 \
    --out "$OUT/psi_ad.csv"
"$ISSKIT" verify --k-bar 10000 --U 0.05 --decline ad --sigma 0.25 --alpha 0.001 --delta 0.001
echo
echo "== 4. certify online: ISS and Cohen's CERTIFY on every image, drawing for each image only"
echo "      the samples its policies ask for (the store replays to the same certificates)"
"$ISSKIT" certify --no-progress -p ISS-AD-1-0.05 -p "cohen n0=100 n=10000" \
    --out "$OUT/online.h5" --log-dir "$OUT/online-logs"
echo "      and a decision policy (certified at r = 0.25?), which stops as soon as it knows"
"$ISSKIT" certify --no-progress -p "cs r=0.25 n_max=10000" -p "adaptive r=0.25 stages=1000/9000" \
    --out "$OUT/online_decision.h5" --log-dir "$OUT/online-decision-logs"
echo
LOG=data/published/certify-logs/cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50
echo "== 5. a real model: Cohen et al.'s ImageNet ResNet-50 log (sigma 0.5) imported as streams,"
echo "      then ISS against IAS on its p_A (where ISS saves far more than on the small default)"
"$ISSKIT" import-log "$LOG" --out "$OUT/imagenet.h5" --N 101000
"$ISSKIT" replay "$OUT/imagenet.h5" --no-progress -p ISS-AD-10-0.05 -p ISS-RD-10-0.01 \
    -p IAS-10 -p IAS-2.6
echo
echo "Results: $OUT/results.nc (netCDF), figures in $OUT/figures, Cohen-format logs in $OUT/cohen-logs"
echo "         online certificates in $OUT/online-logs"

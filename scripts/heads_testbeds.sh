#!/usr/bin/env bash
# The zero-shot per-head prediction on every critical-slope testbed and on SmolLM2: G, the top weight and
# tau_c = ln L / G per layer and head at L (hf-logscale heads), one CSV each in docs/critical-slope/heads/.
# The testbeds measure under the RoPE setting they are swept with (YaRN x16 frequencies; dynamic NTK equals the
# plain model at L). Re-made by: bash scripts/heads_testbeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
HLS=${HLS:-.venv/bin/hf-logscale}
OUT=docs/critical-slope/heads
mkdir -p "$OUT"
"$HLS" heads --model reference:nope --out "$OUT/nope.csv"
"$HLS" heads --model reference:prope --out "$OUT/prope.csv"
"$HLS" heads --model reference:ssmax --out "$OUT/ssmax.csv"
"$HLS" heads --model reference --variant yarn:factor=16,attention_factor=1 --out "$OUT/yarn.csv"
"$HLS" heads --model reference --out "$OUT/rope.csv"
"$HLS" heads --model smollm2-135m --windows 5 --out "$OUT/smollm2.csv"

#!/usr/bin/env bash
# The three reference models beside hf_logscale/reference, trained one after the other with the same corpus,
# tokenizer, size, schedule and seed (scripts/train_reference_model.py defaults):
#   reference-nope   no positional rotation
#   reference-prope  partial RoPE; the rotating fraction is picked by a short pilot (400 steps at 1/8, 1/4, 1/2:
#                    the fraction with the lowest held-out perplexity at 4× L among those within 5 % of the best
#                    perplexity at L), recorded in pilot.json
#   reference-ssmax  standard RoPE trained with ssmax patched in
# A model whose folder already holds weights is skipped (the pilot too, once reference-prope exists). Usage: [THREADS=2] bash scripts/train_reference_variants.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
train() { [ -f "$1/model.safetensors" ] && echo "skip $1 (trained)" || "$PY" scripts/train_reference_model.py --threads "${THREADS:-2}" --out "$@"; }

train hf_logscale/reference-nope --positions nope
if [ -f hf_logscale/reference-prope/model.safetensors ]; then
  echo "skip the p-RoPE pilot and hf_logscale/reference-prope (trained)"
else
  for f in 0.125 0.25 0.5; do
    train "runs/prope-pilot/$f" --positions prope --rotary-fraction "$f" --steps 400 --passkey-trials 5
  done
  F=$("$PY" - <<'PY'
import json, pathlib
runs = {p.name: json.loads((p / "metrics.json").read_text())["lengths"] for p in pathlib.Path("runs/prope-pilot").iterdir() if p.is_dir()}
at_L = {f: m["256"]["heldout_ppl"] for f, m in runs.items()}
ok = [f for f in runs if at_L[f] <= 1.05 * min(at_L.values())]
best = min(ok, key=lambda f: runs[f]["1024"]["heldout_ppl"])
pathlib.Path("runs/prope-pilot/pilot.json").write_text(json.dumps({"chosen": float(best), "runs": runs}, indent=2))
print(best)
PY
  )
  echo "p-RoPE fraction from the pilot: $F"
  train hf_logscale/reference-prope --positions prope --rotary-fraction "$F"
  cp runs/prope-pilot/pilot.json hf_logscale/reference-prope/pilot.json
fi
train hf_logscale/reference-ssmax --scale ssmax

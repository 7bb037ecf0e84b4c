#!/usr/bin/env bash
# The main question on a real pretrained model: SmolLM2-135M-Instruct (trained to L = 8192 tokens), 1× and 2× L.
# Held-out documents: the first three held-out books of the sample corpus (Isaiah, Jeremiah, Ezekiel: 46k, 54k
# and 48k SmolLM2 tokens). Variants: the model as it is (none), logn, transformers' YaRN ×2, YaRN ×2 frequencies
# with attention factor 1 plus critical τ = 0, 0.5, 1, 2, and Qwen-7B's dynamic NTK + logn.
# Two folders, both resumable (run the same command again after an interruption):
#   docs/real-model/ppl      perplexity, truncate mode (every token of the first n tokens of each book)
#   docs/real-model/passkey  passkey retrieval, one key at each of depths 0.25, 0.5, 0.75 per (variant, length)
# then the README table (scripts/real_model_table.py). Needs `hf-logscale fetch smollm2-135m` once.
# Usage: bash scripts/real_model.sh   (2 h 3 min of cell time on 2 CPU cores, shared with other work; less alone)
set -euo pipefail
cd "$(dirname "$0")/.."
HLS=${HLS:-.venv/bin/hf-logscale}
PY=${PY:-.venv/bin/python}
F=yarn:factor=2,attention_factor=1
VARIANTS="none,logn,yarn:factor=2,$F,$F+critical:tau=0.5,$F+critical:tau=1,$F+critical:tau=2,@qwen-dynamic-logn"
COMMON=(--model smollm2-135m --lengths 8192,16384 --variants "$VARIANTS" --batch-size 1)
"$HLS" compare "${COMMON[@]}" --tasks ppl --max-documents 3 --out docs/real-model/ppl
"$HLS" compare "${COMMON[@]}" --tasks passkey --depths 0.25,0.5,0.75 --trials 1 --out docs/real-model/passkey
"$PY" scripts/real_model_table.py

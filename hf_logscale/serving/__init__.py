"""Serving what hf-logscale measures: a vLLM plugin that applies the same s(n) (``vllm_plugin``)."""

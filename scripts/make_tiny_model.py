"""Write a small random-initialised Llama checkpoint (fixed seed) for the offline demo and local experiments.

Usage: python scripts/make_tiny_model.py OUT_DIR
"""

import sys

import torch
from transformers import AutoModelForCausalLM, LlamaConfig


def main(out: str) -> None:
    config = LlamaConfig(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=344,
        vocab_size=1024,
        max_position_embeddings=256,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    print(f"wrote a random-initialised Llama (L = {config.max_position_embeddings}) to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-llama")

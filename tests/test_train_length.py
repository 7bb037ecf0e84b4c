"""The training length L: the curated table, the rope-type rules, the guess and its one warning."""

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import V5, make_config

from hf_logscale.train_length import known_models, resolve_train_len

pytestmark = pytest.mark.core


def rope_config(mpe: int, **rope):
    """A Llama config with the given rope parameters, as transformers 5.x or 4.x stores them."""
    if V5:
        return make_config("llama", max_position_embeddings=mpe, rope_parameters={"rope_theta": 1e4, **rope})
    return make_config("llama", max_position_embeddings=mpe, rope_scaling=rope or None)


@pytest.mark.parametrize(
    ("rope", "value", "source", "guessed"),
    [
        (
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 512,
            },
            4096,
            "llama3 RoPE: trained at the extended length",
            False,
        ),
        (
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024},
            1024,
            "yarn extends it",
            False,
        ),
        ({"rope_type": "dynamic", "factor": 2.0}, 4096, "dynamic NTK starts beyond it", False),
        ({"rope_type": "linear", "factor": 2.0}, 4096, "unverified", True),
        ({}, 4096, "unverified", True),
    ],
)
def test_rope_type_rules(rope, value, source, guessed):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = resolve_train_len(rope_config(4096, **rope))
    assert (got.value, got.guessed) == (value, guessed) and source in got.source
    assert len(seen) == (1 if guessed else 0)
    if guessed:
        assert "L = 4096 is a guess" in str(seen[0].message) and "--train-len" in str(seen[0].message)


def test_the_guess_is_announced_once_per_process_and_value():
    cfg = make_config("llama", max_position_embeddings=3000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's default: once per message and place
        for _ in range(3):
            resolve_train_len(cfg)
        resolve_train_len(cfg, warn=False)
    assert len(seen) == 1


def test_no_length_at_all_is_an_error_naming_the_option():
    cfg = SimpleNamespace(model_type="custom", rope_theta=1e4)  # a config that states no length
    with pytest.raises(ValueError, match=r"states no max_position_embeddings.*--train-len"):
        resolve_train_len(cfg)


def test_table_entries_are_complete_and_the_docs_list_every_family():
    guide = (Path(__file__).parents[1] / "docs" / "schemes.md").read_text()
    for entry in known_models():
        assert entry["source"] and entry["model_type"]
        assert f"| {entry['family']} |" in guide, entry["family"]

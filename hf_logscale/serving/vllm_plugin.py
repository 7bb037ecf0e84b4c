"""hf-logscale in vLLM: the same s(n) on the queries, after RoPE and before attention, in every process vLLM runs.

vLLM loads the ``vllm.general_plugins`` entry point ``hf_logscale`` (``register``) in each of its processes; it
registers, for each supported architecture, a subclass of vLLM's own model class. A model whose config carries no
``logscale`` entry builds and runs exactly as vLLM's class (nothing is wrapped). One that does — a folder saved by
``hf-logscale patch --merge`` (its config also carries the RoPE change), or any checkpoint served with
``--hf-overrides '{"logscale": {"variant": "logn"}}'`` — gets, in each selected attention module, its rotary
embedding wrapped: ``q, k = rope(positions, q, k)``, then ``q`` multiplied by ``s(n)``, n = position + 1 clipped
to the layer's sliding window (families vLLM serves through its Transformers backend — transformers' own modeling
code, which rotates inside its modules — get the same multiply in the attention function instead, reading the
``position_ids`` transformers passes). ``positions`` are vLLM's absolute token positions, so prefill, chunked prefill,
decode, prefix-cache hits and mixed batches all read the right n. s is a float32 table (computed in float64 and
rounded once, as in the transformers patch) indexed by position; a 16-bit query is multiplied in float32 and cast
back once.

Ministral 3 (served by vLLM's Mistral class) multiplies its queries by ``1 + β·ln(1 + ⌊pos / L0⌋)``
(``rope_parameters["llama_4_scaling_beta"]``); vLLM skips it for Hugging Face-format configs. The plugin applies it
as transformers does; a scheme replaces it (the two never stack), as the transformers patch does.

Refused, with the reason: dynamic NTK and LongRoPE (vLLM fixes their frequencies once per engine where transformers
recomputes them per sequence), a context longer than a RoPE table covers, layers that skip the rotary call (NoPE) in
vLLM's own classes, and a ``logscale`` entry on an architecture the plugin does not cover. Per-head parameters give
each query head its own column of the table (under tensor parallelism each rank takes the columns of the heads it
holds).
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import torch

from ..config import LogScaleConfig
from ..errors import UserError
from ..patching.families import NativeScale
from ..rope import rope_config_update
from ..schemes import Scheme
from ..train_length import resolve_train_len
from ..variants import Variant, parse_variant

__all__ = ["ARCHITECTURES", "ENTRY", "ServingPlan", "register", "serving_plan"]

log = logging.getLogger("hf_logscale")

ENTRY = "logscale"  # the config entry: written by a merged save, or given through vLLM's --hf-overrides

# vLLM architecture -> (module, class) of vLLM's own class; each attention module calls rotary_emb(positions, q, k),
# then attn(q, k, v)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
    "MistralForCausalLM": ("mistral", "MistralForCausalLM"),
    "Ministral3ForCausalLM": ("mistral", "MistralForCausalLM"),  # vLLM serves it with its Mistral class
    "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
    "Qwen3ForCausalLM": ("qwen3", "Qwen3ForCausalLM"),
    "MixtralForCausalLM": ("mixtral", "MixtralForCausalLM"),
    "Qwen3MoeForCausalLM": ("qwen3_moe", "Qwen3MoeForCausalLM"),
    "Gemma2ForCausalLM": ("gemma2", "Gemma2ForCausalLM"),  # its attention backend soft-caps the scaled logits
    "Gemma3ForCausalLM": ("gemma3", "Gemma3ForCausalLM"),
    "GptOssForCausalLM": ("gpt_oss", "GptOssForCausalLM"),  # its backend adds the (unscaled) sink logit
    "Phi3ForCausalLM": ("phi3", "Phi3ForCausalLM"),
    "GraniteForCausalLM": ("granite", "GraniteForCausalLM"),
    "Glm4ForCausalLM": ("glm4", "Glm4ForCausalLM"),
    # served by vLLM's Transformers backend: transformers' own modeling code, its attention function "vllm"
    "Olmo2ForCausalLM": ("transformers", "TransformersForCausalLM"),
    "Olmo3ForCausalLM": ("transformers", "TransformersForCausalLM"),
    "GlmForCausalLM": ("transformers", "TransformersForCausalLM"),
    "SmolLM3ForCausalLM": ("transformers", "TransformersForCausalLM"),
}
INTERFACE = "vllm_logscale"  # the Transformers backend's attention function "vllm", queries scaled first

_REFUSED_ROPE = {
    "dynamic": "vLLM computes dynamic NTK's frequencies once for the engine's longest length, transformers per "
    "sequence: results would differ from every hf-logscale measurement",
    "longrope": "vLLM picks LongRoPE's factor set once for the engine, transformers per sequence",
}
# the RoPE keys vLLM's gpt-oss class reads (it builds YaRN from them whatever else the config says)
_GPT_OSS_ROPE = {
    "rope_type",
    "rope_theta",
    "factor",
    "original_max_position_embeddings",
    "beta_fast",
    "beta_slow",
    "truncate",
}
_NATIVE = NativeScale()  # Ministral 3's own query scale, as transformers applies it


@dataclass
class ServingPlan:
    """What the plugin does to one model: the variant, L, and the length the tables must cover."""

    variant: Variant | None  # None: no scheme, only the architecture's own scale
    train_len: int | None
    max_len: int
    rope_from_variant: bool  # the RoPE part comes from the entry (hf_overrides), not already in the config
    native: tuple[float, int] | None = None  # Ministral 3's (β, L0), applied when no scheme replaces it

    @property
    def label(self) -> str:
        return self.variant.label if self.variant else f"Ministral 3's own scale (β = {self.native[0]:g})"

    def prepare(self, config: Any) -> None:
        """Before vLLM builds the model: the variant's RoPE setting into the config (an override), and rotary
        tables long enough for ``max_len`` when the RoPE is unscaled (the default table ends at
        ``max_position_embeddings``, and vLLM would read past it)."""
        if self.rope_from_variant and self.variant is not None and self.variant.rope is not None:
            for key, value in rope_config_update(config, self.variant.rope, self.train_len).items():
                setattr(config, key, value)
        params = getattr(config, "rope_parameters", None) or {}
        nested = [v for v in params.values() if isinstance(v, dict)]  # per layer type (transformers 5)
        kinds = {p.get("rope_type", "default") for p in nested} if nested else {params.get("rope_type", "default")}
        refused = sorted(kinds & set(_REFUSED_ROPE))
        if refused:
            raise UserError(f"hf-logscale in vLLM: RoPE type {refused[0]!r} is refused: {_REFUSED_ROPE[refused[0]]}")
        if kinds == {"default"} and getattr(config, "max_position_embeddings", 0) < self.max_len:
            config.max_position_embeddings = self.max_len
        if getattr(config, "model_type", None) == "gpt_oss":  # vLLM 0.32 needs transformers 5: one flat dict
            dropped = sorted(k for k, v in params.items() if v is not None and k not in _GPT_OSS_ROPE)
            if params.get("rope_type") != "yarn" or dropped:
                raise UserError(
                    "hf-logscale in vLLM: vLLM's gpt-oss class builds YaRN from rope_theta, factor, "
                    "original_max_position_embeddings, beta_fast, beta_slow and truncate alone; this RoPE "
                    f"({params.get('rope_type')!r}{', with ' + ', '.join(dropped) if dropped else ''}) would be "
                    "served unlike transformers: refused"
                )

    def install(self, model: torch.nn.Module, interface: bool = False) -> int:
        """Wrap the rotary embedding of each selected attention module, or (``interface``: vLLM's Transformers
        backend, where transformers' modules rotate inside their own forward) give each a table that the attention
        function applies; returns how many were scaled. Runs inside vLLM's model construction, whose default device
        is the one the model is built on."""
        from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase

        # the modules that own a vLLM attention layer (gpt-oss's decoder layer calls its attention module `attn`)
        attention = [
            (name, m) for name, m in model.named_modules() if isinstance(getattr(m, "attn", None), AttentionLayerBase)
        ]
        if not attention:
            raise UserError(f"hf-logscale in vLLM: no attention module found in {type(model).__name__}")
        indices = {name: _layer_index(name) for name, _ in attention}
        chosen = _select(self.variant.scale, sorted(indices.values())) if self.variant else set(indices.values())
        tables: dict[Any, torch.Tensor] = {}
        wrapped = 0
        for name, module in attention:
            rope = getattr(module, "rotary_emb", None) if getattr(module, "use_rope", True) else None
            cache = getattr(rope, "cos_sin_cache", None)
            if cache is not None and cache.shape[0] < self.max_len:
                raise UserError(
                    f"hf-logscale in vLLM: {name}'s RoPE table covers {cache.shape[0]} positions, max_model_len is "
                    f"{self.max_len}; raise the RoPE factor or lower --max-model-len"
                )
            if indices[name] not in chosen:
                continue
            where = cache.device if cache is not None else torch.get_default_device()
            if self.variant is None or self.variant.scale.scheme_name == "none":
                if self.native is None:
                    continue
                key: Any = ("native", where)  # the architecture's own scale: by position, every layer
                if key not in tables:
                    tables[key] = native_table(*self.native, self.max_len).to(where)
            else:
                scheme = self.variant.scale.build(self.train_len, layer=indices[name])
                if scheme.identity:
                    continue
                window = getattr(module.attn, "sliding_window", None)
                heads = _head_slice(module, scheme)  # this rank's query heads, for per-head parameters
                key = (scheme, window, where, heads)
                if key not in tables:
                    table = scale_table(scheme, self.max_len, window)
                    tables[key] = (table[:, heads[0] : heads[1]].contiguous() if heads else table).to(where)
            if interface:
                module.logscale_scale = QueryScale(tables[key])
            elif rope is None:  # vLLM's Granite skips the rotary call on layers with RoPE base 0
                raise UserError(
                    f"hf-logscale in vLLM: {name} applies no RoPE (a NoPE layer); the plugin scales queries inside "
                    "the rotary call, so this layer would run unscaled: refused (select other layers with layers=)"
                )
            else:
                module.rotary_emb = ScaledRotary(rope, tables[key])
            wrapped += 1
        if interface:
            text = model.config.get_text_config()
            if text._attn_implementation != "vllm":
                raise UserError(
                    f"hf-logscale in vLLM: the Transformers backend chose attention {text._attn_implementation!r} "
                    "for this model; the plugin scales queries before vLLM's 'vllm' attention only: refused"
                )
            _register_interface()
            text._attn_implementation = INTERFACE
        return wrapped


def scale_table(scheme: Scheme, length: int, window: int | None) -> torch.Tensor:
    """s(min(p + 1, window)) for positions p = 0 … length − 1 ([length], or [length, heads] with per-head
    parameters): float64 formula, rounded once to float32."""
    n = torch.arange(1, length + 1, dtype=torch.float64)
    if window is not None:
        n = n.clamp(max=float(window))
    values = scheme.values(n)
    return (values if scheme.heads is None else values.T).to(torch.float32)


def _head_slice(module: torch.nn.Module, scheme: Scheme) -> tuple[int, int] | None:
    """The columns of a per-head table this rank's queries hold (tensor parallelism splits the heads evenly)."""
    if scheme.heads is None:
        return None
    total = getattr(module, "total_num_heads", None) or getattr(module, "num_attention_heads", None)  # gpt-oss:
    local = getattr(module, "num_heads", None) or getattr(module, "num_local_attention_heads", None)  # other names
    if total is None and hasattr(module, "config"):  # a transformers module (Transformers backend)
        from vllm.distributed import get_tensor_model_parallel_world_size

        total = module.config.num_attention_heads
        local = total // get_tensor_model_parallel_world_size()
    if total is None or local is None:
        raise UserError(f"hf-logscale in vLLM: {type(module).__name__} does not state its heads; per-head refused")
    if scheme.heads != total:
        raise UserError(f"hf-logscale in vLLM: the scheme lists {scheme.heads} per-head values; the model has {total}")
    from vllm.distributed import get_tensor_model_parallel_rank

    start = get_tensor_model_parallel_rank() * local
    return start, start + local


def native_table(beta: float, anchor: int, length: int) -> torch.Tensor:
    """Ministral 3's ``1 + β·ln(1 + ⌊pos / L0⌋)`` for positions 0 … length − 1 (float64, rounded once)."""
    pos = torch.arange(length, dtype=torch.float64)
    return (1.0 + beta * torch.log1p(torch.floor(pos / anchor))).to(torch.float32)


def _scaled(query: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``query * s`` in float32 (``s`` broadcasts against it), cast back to the query's dtype once."""
    if query.dtype == torch.float32:
        return query * s
    return (query.float() * s).to(query.dtype)


class QueryScale(torch.nn.Module):
    """The table of one transformers attention module under vLLM's Transformers backend: its queries
    ([1, heads, tokens, head_dim]) times s(n) for each token's absolute position."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table, persistent=False)

    def forward(self, query: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        s = self.table[positions.reshape(-1)]  # [tokens] or [tokens, heads]
        s = s.T[None, :, :, None] if s.dim() == 2 else s.view(1, 1, -1, 1)
        return _scaled(query, s)


def _scaled_vllm_attention(module, query, key, value, attention_mask, **kwargs):
    """vLLM's attention function for transformers modules, after the module's queries are scaled."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    scale = getattr(module, "logscale_scale", None)
    if scale is not None:
        positions = kwargs.get("position_ids")
        if positions is None:
            raise UserError(f"hf-logscale in vLLM: {type(module).__name__} received no position_ids; refused")
        query = scale(query, positions)
    return ALL_ATTENTION_FUNCTIONS["vllm"](module, query, key, value, attention_mask, **kwargs)


def _register_interface() -> None:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(INTERFACE, _scaled_vllm_attention)


class ScaledRotary(torch.nn.Module):
    """vLLM's rotary embedding, then the queries times s(n) for each token's absolute position."""

    def __init__(self, rope: torch.nn.Module, table: torch.Tensor):
        super().__init__()
        self.rope = rope
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor, *args: Any, **kwargs: Any):
        query, key = self.rope(positions, query, key, *args, **kwargs)
        shape = query.shape
        if self.table.dim() == 2:  # per head: [tokens, heads] against the queries as [tokens, heads, head_dim]
            query = query.reshape(shape[0], self.table.shape[1], -1)
            s = self.table[positions][..., None]
        else:
            s = self.table[positions].view(-1, *([1] * (query.dim() - 1)))
        return _scaled(query, s).reshape(shape), key


def serving_plan(config: Any, max_len: int) -> ServingPlan | None:
    """The plan for a config carrying a ``logscale`` entry, or Ministral 3's own scale; ``None``: plain vLLM,
    untouched."""
    entry = getattr(config, ENTRY, None)
    native = _NATIVE.values(config) if getattr(config, "model_type", None) == "ministral3" else None
    if entry is None:
        return ServingPlan(None, None, int(max_len), False, native) if native else None
    if not isinstance(entry, dict) or "variant" not in entry:
        raise UserError(
            f'the `{ENTRY}` config entry must be {{"variant": "<variant>"}} or a saved patch, got {entry!r}'
        )
    given = entry["variant"]
    variant = parse_variant(given) if isinstance(given, str) else Variant.from_dict(given)
    if native and variant.scale.scheme_name != "none":  # a scheme replaces the architecture's own scale, as the
        _NATIVE.switch_off(config)  # transformers patch does; a RoPE-only variant keeps it
        native = None
    train_len = variant.scale.train_len
    if train_len is None:
        try:
            found = resolve_train_len(config, warn=False)
        except UserError:
            raise UserError(
                "hf-logscale in vLLM: the training length L is unknown; give it in the variant, e.g. "
                '{"variant": "logn:train_len=4096"}'
            ) from None
        if found.guessed:
            log.warning(
                "hf-logscale: L = %d is a guess (%s); give train_len=N in the variant", found.value, found.source
            )
        train_len = found.value
    return ServingPlan(variant, int(train_len), int(max_len), isinstance(given, str), native)


def _layer_index(name: str) -> int:
    found = re.findall(r"\.(\d+)\.", f".{name}.")
    if not found:
        raise UserError(f"hf-logscale in vLLM: cannot tell the layer index of attention module {name!r}")
    return int(found[-1])


def _select(scale: LogScaleConfig, present: list[int]) -> set[int]:
    if scale.layers is None:
        return set(present)
    missing = sorted(set(scale.layers) - set(present))
    if missing:
        raise UserError(f"layers {missing} do not exist; the model has attention layers 0–{max(present)}")
    return set(scale.layers)


def _subclass(arch: str) -> type:
    module, name = ARCHITECTURES[arch]
    base = getattr(importlib.import_module(f"vllm.model_executor.models.{module}"), name)

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        model_config = vllm_config.model_config
        plan = serving_plan(model_config.hf_config, model_config.max_model_len)
        if plan is not None:
            plan.prepare(model_config.hf_config)
        base.__init__(self, vllm_config=vllm_config, prefix=prefix)
        if plan is not None:
            wrapped = plan.install(self, interface=module == "transformers")
            log.info("hf-logscale: %s on %d attention layers, L = %s", plan.label, wrapped, plan.train_len)

    # vLLM reads the class name (its Transformers backend checks for "TransformersForCausalLM"): the base's; the
    # qualified name stays the architecture, which this module resolves
    return type(base.__name__, (base,), {"__init__": __init__, "__module__": __name__, "__qualname__": arch})


def __getattr__(name: str) -> type:  # vLLM imports "hf_logscale.serving.vllm_plugin:<Architecture>" lazily
    if name in ARCHITECTURES:
        cls = _subclass(name)
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def register() -> None:
    """The ``vllm.general_plugins`` entry point: the architectures above, and a check that a model carrying a
    ``logscale`` entry is one of them (otherwise vLLM would serve it unscaled, silently)."""
    from vllm import ModelRegistry

    for arch in ARCHITECTURES:
        ModelRegistry.register_model(arch, f"{__name__}:{arch}")
    resolve = ModelRegistry.resolve_model_cls
    if getattr(resolve, "_hf_logscale", False):
        return

    def checked(architectures: Any, model_config: Any) -> tuple[type, str]:
        cls, arch = resolve(architectures, model_config)
        if getattr(model_config.hf_config, ENTRY, None) is not None and cls.__module__ != __name__:
            asked = [architectures] if isinstance(architectures, str) else list(architectures or [])
            covered = [a for a in asked if a in ARCHITECTURES]
            if covered:
                raise UserError(
                    f"hf-logscale in vLLM: {covered[0]} resolved to vLLM's {cls.__name__} (--model-impl "
                    f"{getattr(model_config, 'model_impl', '?')}), not the plugin's; serve it with --model-impl auto"
                )
            raise UserError(
                f"hf-logscale in vLLM: the model carries a `{ENTRY}` entry but vLLM serves it with {cls.__name__}, "
                f"which the plugin does not cover ({', '.join(ARCHITECTURES)}); it would run unscaled"
            )
        return cls, arch

    checked._hf_logscale = True
    ModelRegistry.resolve_model_cls = checked

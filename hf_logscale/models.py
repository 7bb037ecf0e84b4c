"""Loading models and tokenizers (hub id, local folder, patched folder) and saving patched models.

A *patched folder* is small, like a PEFT adapter: ``logscale_config.json`` names the base model (and revision)
and the variant, and holds no weights. A *merged folder* is ``save_pretrained`` of a patched model: full weights,
tokenizer, and a config whose ``logscale`` entry carries the patch. ``load`` restores base + RoPE + patch for
both, and for a plain checkpoint applies ``variant`` if given.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers

from ._version import __version__
from .errors import UserError
from .gguf_checkpoint import check_gguf, is_gguf
from .hub import require_hub
from .patching import CONFIG_KEY, patch, patch_state
from .pretrained import NAMED_MODELS, named_model_path
from .results import check_out_dir, make_dir
from .train_length import TrainLength, resolve_train_len
from .variants import Variant, as_variant

__all__ = [
    "ADAPTER_FILE",
    "DTYPES",
    "REFERENCE_MODEL",
    "REFERENCE_MODELS",
    "load",
    "reference_model",
    "check_save_dir",
    "save_patched",
    "train_length",
]

ADAPTER_FILE = "logscale_config.json"
# The project's own small model (scripts/train_reference_model.py), shipped in the package: the offline default.
REFERENCE_MODEL = Path(__file__).resolve().parent / "reference"
# The project's reference models by name: standard RoPE (the default), NoPE, p-RoPE, RoPE trained with SSMax, and
# the standard RoPE model trained again with another seed (a replicate for experiments).
REFERENCE_MODELS = {
    "reference": REFERENCE_MODEL,
    "reference:seed1": REFERENCE_MODEL.parent / "reference-seed1",
    "reference:nope": REFERENCE_MODEL.parent / "reference-nope",
    "reference:prope": REFERENCE_MODEL.parent / "reference-prope",
    "reference:ssmax": REFERENCE_MODEL.parent / "reference-ssmax",
}


def reference_model(name: str) -> Path:
    """The folder of a reference model by name; NoPE and p-RoPE need transformers' proportional RoPE (5.x)."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if name not in REFERENCE_MODELS:
        raise UserError(f"unknown reference model {name!r}; known: {', '.join(REFERENCE_MODELS)}")
    folder = REFERENCE_MODELS[name]
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the reference model {name!r} is not in this installation ({folder} holds no weights); train it from a "
            "clone with `bash scripts/train_reference_variants.sh`, or reinstall hf-logscale"
        )
    if name in ("reference:nope", "reference:prope") and "proportional" not in ROPE_INIT_FUNCTIONS:
        raise UserError(
            f"{name} uses transformers' proportional RoPE, which transformers {transformers.__version__} lacks; "
            "upgrade with `pip install -U transformers` (5.x)"
        )
    return folder


DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


def _dtype(dtype: str | torch.dtype | None) -> Any:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _read_adapter(model_id: str, revision: str | None) -> dict[str, Any] | None:
    """The patched-folder config: local folder first, then the hub (quietly absent offline)."""
    local = Path(model_id) / ADAPTER_FILE
    if not local.is_file():
        if Path(model_id).exists() or model_id in NAMED_MODELS:
            return None
        require_hub(f"model {model_id!r}")  # a hub id: fail at once without a network
        try:  # honours HF_HUB_OFFLINE: a cached adapter still loads offline
            from huggingface_hub import hf_hub_download

            local = Path(hf_hub_download(model_id, ADAPTER_FILE, revision=revision))
        except Exception:  # not a patched repo, not cached, or no such repo: the plain-model path reports it
            return None
    try:
        data = json.loads(local.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{local}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{local}: expected a JSON object, got {type(data).__name__}")
    for key, kind in (("base_model_name_or_path", str), ("variant", dict)):
        if not data.get(key):
            raise UserError(f"{local}: missing `{key}`")
        if not isinstance(data[key], kind):
            raise UserError(f"{local}: `{key}` must be {'text' if kind is str else 'an object'}, got {data[key]!r}")
    for key in ("revision", "base_model_type", "train_len_source"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"{local}: `{key}` must be text, got {data[key]!r}")
    _check_saved_version(data.get("hf_logscale_version"), str(local))
    try:
        Variant.from_dict(data["variant"])
    except ValueError as err:
        raise UserError(f"{local}: `variant`: {err}") from None
    return data


def _check_saved_version(saved: Any, where: str) -> None:
    """Warn when a patch was saved by a newer hf-logscale: what it added is not read by this one."""
    from packaging.version import InvalidVersion, Version

    try:
        newer = saved is not None and Version(str(saved)) > Version(__version__)
    except InvalidVersion:
        newer = False
    if newer:
        warnings.warn(
            f"{where} was saved by hf-logscale {saved}, newer than this {__version__}: anything that version added is "
            "not applied; upgrade with `pip install -U hf-logscale`",
            stacklevel=4,
        )


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def load(
    model: str | os.PathLike | None = None,
    variant: Variant | str | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    device_map: str | dict | None = None,
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[torch.nn.Module, Any]:
    """Load ``(model, tokenizer)`` from a hub id, a local folder, a ``.gguf`` file, a patched folder or a merged
    folder, restoring any saved patch, then apply ``variant`` (which replaces a saved one). ``model=None`` loads the
    built-in reference model (offline); ``"smollm2-135m"`` the real checkpoint fetched at set-up. Weights load as
    safetensors (or dequantised from GGUF); remote code runs only with ``trust_remote_code=True``. The tokenizer
    is ``None`` (with a warning) if the folder has none.
    """
    if model is None or (isinstance(model, str) and model.startswith("reference") and not Path(model).exists()):
        model = reference_model(model or "reference")
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise UserError(f"`model` must be a hub id (owner/name), a folder or a .gguf file, got {model!r}")
    model_id = str(model)
    if model_id.startswith("~"):
        model_id = str(Path(model_id).expanduser())
    if model_id.startswith(("/", "./", "../")) and not Path(model_id).exists():
        raise UserError(f"cannot load model {model_id!r}: no such file or folder")
    if Path(model_id).is_file() and not is_gguf(model_id):
        raise UserError(
            f"cannot load model {model_id!r}: it is a file; give the folder that holds config.json, or a .gguf file"
        )
    folder = Path(model_id)
    if folder.is_dir() and not (folder / "config.json").is_file() and not (folder / ADAPTER_FILE).is_file():
        raise UserError(
            f"cannot load model {model_id!r}: the folder holds no config.json (nor {ADAPTER_FILE}); give a model folder"
        )
    if not folder.exists() and model_id not in NAMED_MODELS and _offline_and_not_cached(model_id, revision):
        raise UserError(
            f"cannot load model {model_id!r}: no such folder, and no hub copy of it is cached (HF_HUB_OFFLINE is set)"
        )
    if device is not None:
        _check_device(device)
    kwargs = dict(
        dtype=_dtype(dtype),
        device_map=device_map,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    adapter = _read_adapter(model_id, revision)
    if adapter is not None and _has_weights(Path(model_id)):
        # A folder with its own weights is that model; the base its patch file names is not loaded (announced).
        warnings.warn(
            f"{model_id} holds its own weights: they are loaded; the base named in its {ADAPTER_FILE} "
            f"({adapter['base_model_name_or_path']}) is not",
            stacklevel=2,
        )
        net, tok = _load_plain(model_id, revision, kwargs, device)
        net._hf_logscale_source["adapter_base_not_loaded"] = adapter["base_model_name_or_path"]
        if getattr(net.config, CONFIG_KEY, None):
            delattr(net.config, CONFIG_KEY)  # the patch file decides
        patch(
            net,
            Variant.from_dict(adapter["variant"]),
            _saved={"train_len_source": adapter.get("train_len_source", "saved")},
        )
    elif adapter is not None:
        base = adapter["base_model_name_or_path"]
        if base.startswith(("/", "./", "../", "~")) and not Path(base).expanduser().exists():
            raise UserError(
                f"{model_id}: its base model {base!r} (named in {ADAPTER_FILE}) does not exist; put the base back, "
                f"or edit base_model_name_or_path"
            )
        net, tok = _load_plain(base, adapter.get("revision"), kwargs, device)
        if getattr(net.config, CONFIG_KEY, None):  # the base is itself a merged folder: start from its base
            _restore_from_config(net, getattr(net.config, CONFIG_KEY))
        saved = Variant.from_dict(adapter["variant"])
        expected = adapter.get("base_model_type")
        if expected and expected != net.config.model_type:
            warnings.warn(
                f"{model_id} was made for a {expected} model but {base} is {net.config.model_type}", stacklevel=2
            )
        patch(net, saved, _saved={"train_len_source": adapter.get("train_len_source", "saved")})
    else:
        net, tok = _load_plain(model_id, revision, kwargs, device)
        entry = getattr(net.config, CONFIG_KEY, None)
        if entry:
            _restore_from_config(net, entry)
    if variant is not None:
        patch(net, as_variant(variant))
    net.eval()
    return net, tok


def _offline_and_not_cached(model_id: str, revision: str | None) -> bool:
    """Offline, and the hub cache holds neither a config nor a patch file for ``model_id``."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return False
    try:
        return not any(
            isinstance(try_to_load_from_cache(model_id, f, revision=revision), str)
            for f in ("config.json", ADAPTER_FILE)
        )
    except ValueError:  # not even the form of a hub id
        return True


def _check_device(device: str | torch.device) -> None:
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"`device` {device!r} is not a device: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"`device` {device!r} asked for CUDA, but this torch build sees no CUDA device")


def _checkpoint(model_id: str) -> tuple[str, dict[str, Any]]:
    """Where transformers reads ``model_id`` from: a named model's file, a ``.gguf`` file (its folder and
    ``gguf_file=``, after the header is checked), else the id itself with safetensors weights."""
    if model_id in NAMED_MODELS and not Path(model_id).exists():
        model_id = str(named_model_path(model_id))
    if not (is_gguf(model_id) and Path(model_id).is_file()):
        return model_id, {"use_safetensors": True}
    path = check_gguf(model_id).path.resolve()
    return str(path.parent), {"gguf_file": path.name}


def _load_plain(
    model_id: str, revision: str | None, kwargs: dict[str, Any], device: str | torch.device | None
) -> tuple[torch.nn.Module, Any]:
    """Load weights and tokenizer, then move to ``device`` before any patch is applied (rotary modules built
    by a patch then live on the model's device)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, source = _checkpoint(model_id)
    try:
        net, info = AutoModelForCausalLM.from_pretrained(
            where,
            revision=revision,
            output_loading_info=True,  # missing, unexpected and wrong-shape tensors, checked below
            ignore_mismatched_sizes=True,  # so that a wrong shape is reported by name rather than by a log
            **source,
            **{k: v for k, v in kwargs.items() if v is not None},
        )
    except ImportError as err:  # e.g. attn_implementation="flash_attention_2" without the flash-attn package
        attn = kwargs.get("attn_implementation")
        raise UserError(
            f"cannot load model {model_id!r} with attn_implementation={attn!r}: {str(err).strip().splitlines()[0]} "
            "Install that kernel, or load with sdpa (--attn sdpa)"
        ) from err
    except KeyError as err:  # an unknown rope type, or one without its required keys (say yarn without factor)
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        raise UserError(
            f"cannot load model {model_id!r}: its config's RoPE settings are not valid ({err.args[0]}); the rope "
            f"types transformers knows are default, {', '.join(ROPE_INIT_FUNCTIONS)}, each with its required keys"
        ) from err
    except (OSError, ValueError) as err:  # missing repo or folder, invalid id, no safetensors weights
        raise UserError(f"cannot load model {model_id!r}: {str(err).strip().splitlines()[0]}") from err
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        raise UserError(
            f"cannot load model {model_id!r}: its weights are corrupt or incomplete ({err}); download them again"
        ) from err
    _check_weights(model_id, net, info)
    if device is not None and kwargs.get("device_map") is None:
        net.to(device)
    net._hf_logscale_source = {"name_or_path": model_id, "revision": revision}
    if "gguf_file" in source:  # read by resolve_train_len: L then comes from the file's context length
        net.config.gguf_file = source["gguf_file"]
    try:
        tok = AutoTokenizer.from_pretrained(
            where,
            revision=revision,
            trust_remote_code=kwargs.get("trust_remote_code", False),
            **{k: v for k, v in source.items() if k == "gguf_file"},
        )
        # transformers 5 builds an empty tokenizer for some families when the folder has no tokenizer files
        if len(tok) < 2 or not tok("hello world", add_special_tokens=False)["input_ids"]:
            raise UserError(f"the tokenizer found has {len(tok)} tokens")
    except (OSError, ValueError, TypeError, ImportError) as err:
        warnings.warn(f"{model_id}: no usable tokenizer ({str(err).splitlines()[0]}); returning None", stacklevel=3)
        tok = None
    folder = Path(where)
    if tok is not None and (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        warnings.warn(
            f"{model_id}: tokenizer.json without tokenizer_config.json: its special tokens (BOS/EOS) and how they "
            "are added are unknown, so scores can differ from the model's own; copy tokenizer_config.json from the "
            "checkpoint's source",
            stacklevel=3,
        )
    rows = net.get_input_embeddings().num_embeddings
    if tok is not None and len(tok) > rows:
        raise UserError(
            f"{model_id}: the tokenizer has {len(tok)} tokens but the model's embedding has {rows} rows; ids ≥ {rows} "
            "would fail inside the model — the tokenizer does not belong to these weights"
        )
    return net, tok


def _check_weights(model_id: str, net: torch.nn.Module, info: dict[str, Any]) -> None:
    """Weights that are not the model the config describes are refused: a tensor of the wrong shape, a tensor
    the config needs but the checkpoint lacks (cut files, fewer layers), NaN or infinite values. Tensors the
    model does not use are announced."""
    again = "the checkpoint is incomplete, corrupt or not for this config; download it again"

    def listed(key: str) -> tuple[list, str]:  # the sorted entries of one report, and "(and N more)"
        found = sorted(info.get(key) or [])
        return found, f" (and {len(found) - 1} more)" if len(found) > 1 else ""

    wrong, more = listed("mismatched_keys")
    if wrong:
        name, got, want = wrong[0]
        raise UserError(
            f"cannot load model {model_id!r}: weight {name} has shape {list(got)} but the config needs "
            f"{list(want)}{more}; {again}"
        )
    missing, more = listed("missing_keys")
    if missing:
        raise UserError(
            f"cannot load model {model_id!r}: its weights lack {missing[0]}{more}, which the config needs; {again}"
        )
    unused, more = listed("unexpected_keys")
    if unused:
        warnings.warn(f"{model_id}: the checkpoint holds {unused[0]}{more}, which the model does not use", stacklevel=3)
    for name, p in net.named_parameters():
        if p.device.type != "meta" and not torch.isfinite(p).all():
            raise UserError(f"cannot load model {model_id!r}: weight {name} holds NaN or infinite values; {again}")


def _restore_from_config(net: torch.nn.Module, entry: dict[str, Any]) -> None:
    """A ``save_pretrained`` of a patched model: its config already carries the RoPE change; re-apply the rest."""
    _check_saved_version(entry.get("hf_logscale_version"), "the model config's logscale entry")
    saved = Variant.from_dict(entry["variant"])
    rope_base = entry.get("rope_base") or {}
    delattr(net.config, CONFIG_KEY)
    if entry.get("native_scale_base"):  # saved while switched off: put the architecture's own scale back first
        net.config.rope_parameters.update(entry["native_scale_base"])
    patch(
        net,
        saved,
        _saved={
            "train_len_source": entry.get("train_len_source", "saved"),
            "rope_base": rope_base.get("base_rope"),
            "base_max_position_embeddings": rope_base.get("base_max_position_embeddings"),
        },
    )


@contextlib.contextmanager
def _as_plain_weights(model: torch.nn.Module):
    """A model read from GGUF holds dequantised float weights, but transformers marks it quantised ("gguf") and
    refuses to save it; while saving, it is the plain float model it is (and its config names no GGUF file)."""
    if getattr(model, "hf_quantizer", None) is None or getattr(model.config, "gguf_file", None) is None:
        yield
        return
    saved = model.hf_quantizer, model.is_quantized, model.config.quantization_config, model.config.gguf_file
    model.hf_quantizer, model.is_quantized = None, False
    del model.config.quantization_config, model.config.gguf_file
    try:
        yield
    finally:
        model.hf_quantizer, model.is_quantized, model.config.quantization_config, model.config.gguf_file = saved


def check_save_dir(out_dir: str | os.PathLike) -> Path:
    """Where ``save_patched`` may write: a new or empty folder, or one it wrote before (never a model's own)."""
    out = check_out_dir(out_dir)
    if out.is_dir() and any(out.iterdir()) and not _saved_before(out):
        raise UserError(
            f"--out {str(out)!r} holds other files (a model folder?); give a new or empty folder, or one written by "
            "save_patched before"
        )
    return out


def _saved_before(folder: Path) -> bool:
    """A folder save_patched wrote: a patch file, or a merged config carrying the patch."""
    if (folder / ADAPTER_FILE).is_file():
        return True
    try:
        return CONFIG_KEY in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False


def save_patched(
    model: torch.nn.Module, out_dir: str | os.PathLike, tokenizer: Any = None, *, merge: bool = False
) -> Path:
    """Write a patched folder (small: base reference + variant) or, with ``merge``, full weights + tokenizer +
    a config carrying the patch. Both load back with ``hf_logscale.load(out_dir)``."""
    state = patch_state(model)
    if state is None:
        raise UserError("the model is not patched; patch it before saving")
    entry = state.config_entry()  # raises for patches that cannot be serialised (callables, predicates)
    out = check_save_dir(out_dir)
    if merge:
        with _as_plain_weights(model):
            model.save_pretrained(out, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out
    source = getattr(model, "_hf_logscale_source", {})
    base = (
        source.get("name_or_path") or getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "")
    )
    if not base:
        raise UserError("the model has no base name or path to refer to; save it first, or use merge=True")
    if Path(base).exists():
        base = str(Path(base).resolve())
    data = {
        "base_model_name_or_path": base,
        "base_model_type": model.config.model_type,
        "hf_logscale_version": __version__,
        "revision": source.get("revision") or getattr(model.config, "_commit_hash", None),
        "spec": entry["spec"],
        "train_len_source": entry["train_len_source"],
        "transformers_version": transformers.__version__,
        "variant": entry["variant"],
    }
    make_dir(out)
    tmp = out / (ADAPTER_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(out / ADAPTER_FILE)
    return out


def train_length(model: torch.nn.Module) -> TrainLength | None:
    """The model's training length L and its source: what its patch resolved, else its config's (None if the
    config states none)."""
    state = patch_state(model)
    if state is not None:
        return TrainLength(state.train_len, state.train_len_source)
    try:
        return resolve_train_len(model.config)
    except ValueError:
        return None

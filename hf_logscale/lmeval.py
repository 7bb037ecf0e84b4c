"""lm-evaluation-harness integration: the ``hf-logscale`` model type and the project's task folder.

Registration happens when this module is imported (lm-eval has no plugin discovery). So:

- Python: ``import hf_logscale.lmeval`` then ``lm_eval.simple_evaluate(model="hf-logscale", model_args=...)``;
- lm-eval's own CLI: ``python -m hf_logscale.lmeval run --model hf-logscale --model_args ... --tasks ...`` is
  ``lm-eval`` itself with the model type registered (every lm-eval option works);
- ``hf-logscale lm-eval`` runs lm-eval in-process on a patched model and stores the results beside the project's
  own records.

Model args: everything lm-eval's ``hf`` model takes, plus ``variant`` (a variant spec or ``@recipe``; inside
``--model_args`` separate a variant's own parameters with ``;`` since lm-eval splits on commas, e.g.
``variant=yarn:factor=4;attention_factor=1+logn``). ``pretrained`` defaults to the built-in reference model.

Unlike lm-eval's ``hf`` model, ``max_length`` defaults to 2^20 tokens, so long prompts are never left-truncated
(lm-eval truncates to the config's ``max_position_embeddings`` otherwise, cutting needles off) and rolling
log-likelihood scores a document of n tokens in one window; and rolling log-likelihood puts exactly one BOS in
front of a document (lm-eval's prefix token) instead of adding the tokenizer's BOS after it.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

try:
    import lm_eval
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
    raise ImportError("the lm-eval integration needs lm-eval: pip install 'hf-logscale[lmeval]'") from err

from . import checks
from .errors import UserError
from .evaluation.task import TASKS
from .models import load, reference_model, train_length
from .patching import patch
from .results import ResultStore, write_atomic
from .train_length import resolve_train_len
from .variants import parse_variant

__all__ = ["LogScaleLM", "config_train_length", "run_lmeval", "task_path"]

MAX_LENGTH = 2**20


def task_path() -> Path:
    """The project's lm-eval task folder (``--include_path``): in the wheel, or the checkout's ``eval_tasks/``."""
    packaged = Path(__file__).resolve().parent / "eval_tasks"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "eval_tasks"


def config_train_length(model: str | None):
    """L of a hub id or local folder (the reference model by default) from its config alone, before loading."""
    if model is None or (model.startswith("reference") and not Path(model).exists()):
        model = reference_model(model or "reference")
    return resolve_train_len(AutoConfig.from_pretrained(model))


def _variant_arg(value: Any) -> Any:
    """A ``Variant``, or the text of one (inside lm-eval's ``--model_args`` a variant's own parameters are separated
    by ``;``); None for no variant."""
    if value in (None, "", "none", "None"):
        return None
    if not isinstance(value, str):
        return value
    return parse_variant(value.replace(";", ","))


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
# model args that are CLI options of `hf-logscale lm-eval` (given twice they would clash inside lm-eval)
_OPTIONS = {"pretrained": "--model", "variant": "--variant"}


def _strict_bool(name: str, value: Any) -> bool:
    """A boolean model arg: true/false, 1/0 or yes/no (any case); anything else is refused, so that a stray word
    never switches remote code on."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise UserError(f"model arg `{name}` must be true or false (also 1/0, yes/no), got {value!r}")


def _positive_int(name: str, value: Any, *, words: tuple[str, ...] = ()) -> Any:
    if isinstance(value, str) and (value in words or any(value.startswith(w + ":") for w in words)):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        also = f" or {'/'.join(words)}" if words else ""
        raise UserError(f"model arg `{name}` must be a positive integer{also}, got {value!r}")
    return value


def _hf_arg_kinds() -> dict[str, str]:
    """lm-eval HF model args by kind, read from its signature: "bool" (bool | None) or "int" (int | None)."""
    kinds = {}
    for name, p in inspect.signature(HFLM.__init__).parameters.items():
        text = str(p.annotation).replace("typing.", "").replace("Optional", "")
        parts = {t.strip(" []") for t in text.split("|")} - {"None", "NoneType"}
        if parts == {"bool"}:
            kinds[name] = "bool"
        elif parts == {"int"}:
            kinds[name] = "int"
    return kinds


def check_model_args(args: dict[str, Any]) -> dict[str, Any]:
    """Model args as lm-eval's HF model takes them: booleans strictly parsed, counts positive integers,
    ``batch_size`` an integer or ``auto``; ``pretrained`` and ``variant`` refused (they are options)."""
    out = dict(args)
    for name, option in _OPTIONS.items():
        if name in out:
            raise UserError(f"give `{name}` as {option}, not in --model-args")
    kinds = _hf_arg_kinds()
    for name, value in out.items():
        if kinds.get(name) == "bool":
            out[name] = _strict_bool(name, value)
        elif kinds.get(name) == "int" and name != "prefix_token_id":
            out[name] = _positive_int(name, value)
    if "batch_size" in out:
        out["batch_size"] = _positive_int("batch_size", out["batch_size"], words=("auto",))
    return out


@register_model("hf-logscale")
class LogScaleLM(HFLM):
    """lm-eval's HF model with an hf-logscale variant applied (scheme, parameters, RoPE setting or recipe)."""

    def __init__(
        self,
        pretrained: Any = None,
        variant: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        attn_implementation: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        known = {n for n in inspect.signature(HFLM.__init__).parameters if n not in ("self", "kwargs")}
        unknown = sorted(set(kwargs) - known - {"tokenizer"})
        if unknown:  # lm-eval's HF model would only warn and ignore them
            raise UserError(
                f"unknown model arg {unknown[0]!r} for hf-logscale (variant, pretrained, dtype, device, "
                "attn_implementation, revision, trust_remote_code, max_length, or lm-eval's hf args)"
            )
        trust_remote_code = _strict_bool("trust_remote_code", trust_remote_code)  # "no" must never mean yes
        if max_length is not None:
            max_length = _positive_int("max_length", max_length)
        kwargs = {**kwargs, **check_model_args({k: v for k, v in kwargs.items() if k != "tokenizer"})}
        self.variant = _variant_arg(variant)
        if isinstance(pretrained, str) or pretrained is None:
            if device is None and torch.cuda.is_available():
                device = "cuda"
            elif str(device).startswith("cuda") and not torch.cuda.is_available():
                device = "cpu"  # lm-eval's CLI passes cuda:0 by default; its HF model falls back the same way
            model, tok = load(
                pretrained,
                variant=self.variant,
                dtype=dtype,
                device=device,
                attn_implementation=attn_implementation,
                revision=revision,
                trust_remote_code=trust_remote_code,
            )
        else:  # an already loaded model: apply the variant in place
            model, tok = pretrained, kwargs.pop("tokenizer", None)
            if self.variant is not None:
                patch(model, self.variant)
        kwargs.setdefault("tokenizer", tok)
        super().__init__(pretrained=model, max_length=max_length or MAX_LENGTH, **kwargs)

    @property
    def variant_label(self) -> str:
        return self.variant.label if self.variant else "none"

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        """One BOS per document: lm-eval's prefix token, not also the tokenizer's."""
        saved = self.add_bos_token
        if self.tokenizer.bos_token_id is not None and self.prefix_token_id == self.tokenizer.bos_token_id:
            self.add_bos_token = False
        try:
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        finally:
            self.add_bos_token = saved


def run_lmeval(
    model: str | None,
    variant: Any,
    tasks: list[str],
    *,
    out_dir: Path,
    lengths: list[int] | None = None,
    metadata: dict[str, Any] | None = None,
    limit: int | None = None,
    model_args: dict[str, Any] | None = None,
    batch_size: int | str = 1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run lm-eval tasks (the project's under ``task_path()`` and lm-eval's own) on ``model`` with ``variant``
    in-process; write lm-eval's raw results to ``out_dir/lm_eval_results.json`` and one record per task, length
    and metric to ``out_dir/results.jsonl``. Returns (raw results, records).

    The folder is a results store like those of ``eval`` and ``compare``: locked for the whole run (a second run
    into it is refused before anything loads), one block per cell, and a cell already finished there is kept, not
    written again; with ``lengths`` given, a task whose every length is finished is not run again."""
    with ResultStore(out_dir) as store:
        return _run_lmeval(model, variant, tasks, store, lengths, metadata, limit, model_args, batch_size)


def _run_lmeval(model, variant, tasks, store, lengths, metadata, limit, model_args, batch_size):
    variant = _variant_arg(variant)
    meta = dict(metadata or {})
    if lengths:
        meta["max_seq_lengths"] = list(lengths)
    if model:
        meta.setdefault("pretrained", model)
    manager = TaskManager(include_path=str(task_path()), metadata=meta)
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        hint = checks.did_you_mean(unknown[0], sorted(known)) or " See `lm-eval ls tasks`."
        raise UserError(f"unknown lm-eval task {unknown[0]!r}.{hint}")
    settings = {"limit": limit, "metadata": meta}
    label = variant.label if variant is not None else "none"

    def cell(task: str, length: int | None) -> dict[str, Any]:
        return {
            "model": model or "reference",
            "variant": label,
            "task": f"lm-eval:{task}",
            "dataset": "lm-eval",
            "length": length,
            "depth": None,
            "settings": settings,
        }

    def same_run(r: dict[str, Any], task: str) -> bool:
        c = cell(task, None)
        return all(r.get(k) == c[k] for k in ("model", "variant", "task", "dataset", "settings"))

    previous = store.records()
    finished = []
    for t in tasks:  # every cell of a task is recorded with the task's cell count: all there means finished
        mine = [r for r in previous if same_run(r, t)]
        if mine and len({r["cell"] for r in mine}) == mine[0].get("task_cells"):
            finished.append(t)
    if finished:
        warnings.warn(f"{store.path}: finished before, not run again: {', '.join(finished)}", stacklevel=2)
    tasks = [t for t in tasks if t not in finished]
    records: list[dict[str, Any]] = [r for r in previous if any(same_run(r, t) for t in finished)]
    if not tasks:
        return {}, records
    try:
        lm = LogScaleLM(pretrained=model, variant=variant, batch_size=batch_size, **(model_args or {}))
    except (TypeError, ValueError) as err:
        raise UserError(f"bad --model-args: {err}") from None
    raw = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, log_samples=False)
    write_atomic(store.dir / "lm_eval_results.json", json.dumps(raw, indent=2, default=str))
    train_len_info = train_length(lm.model)
    trained = {
        "train_len": train_len_info.value if train_len_info else None,
        "train_len_source": train_len_info.source if train_len_info else None,
    }
    for task, result in raw["results"].items():
        per_length: dict[int | None, dict[str, float]] = {}
        for key, value in result.items():
            metric, _, filt = key.partition(",")
            if not filt or "stderr" in metric or not isinstance(value, (int, float)) or value == -1:
                continue
            length = int(metric) if metric.isdigit() else None
            ours = TASKS.get(task.removeprefix("logscale_"))  # the project's tasks name their per-length metric
            name = (ours.headline if ours else "accuracy") if length else metric
            per_length.setdefault(length, {})[name if length else metric] = float(value)
        for length, metrics in per_length.items():
            records += store.add(
                cell(task, length),
                metrics,
                status="ok",
                counts={"samples": result.get("sample_len")},
                versions={"lm_eval": lm_eval.__version__},
                task_cells=len(per_length),
                **trained,
            )
    store.write_summary()
    return raw, records


def main() -> None:
    """lm-eval's CLI with the ``hf-logscale`` model type registered."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()

"""Guards: a registered scheme, task or family left out of the generic test matrices fails here, and so does a
scheme the registry should refuse (a RoPE kind's name, a parameter without a declared range)."""

import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import transformers
import yaml
from conftest import FAMILIES as TINY
from test_patching import SCHEMES as PATCHING_SCHEMES
from test_zoo import CONFIGS

import hf_logscale as hls
from hf_logscale.evaluation import TASKS, parse_depths
from hf_logscale.grammar import ROPE_KIND_NAMES
from hf_logscale.patching.families import FAMILIES
from hf_logscale.schemes import Scheme, _param, register

ROOT = Path(__file__).resolve().parents[1]
EVAL_TASKS = ROOT / "eval_tasks"


def test_every_scheme_is_in_the_family_by_backend_matrix():
    missing = set(hls.SCHEMES) - set(PATCHING_SCHEMES)
    assert not missing, f"add {sorted(missing)} to tests/test_patching.py SCHEMES (parameters that bite by n = 48)"


def test_every_family_is_in_the_zoo_or_the_tiny_matrix():
    zoo = {json.loads(p.read_text())["model_type"] for p in CONFIGS.glob("*.json")}
    tiny = {getattr(transformers, cls)().model_type for cls, _ in TINY.values()}
    built = {"ministral3"}  # no verbatim published config found: tests/test_zoo.py builds it from defaults
    missing = set(FAMILIES) - zoo - tiny - built
    assert not missing, f"add {sorted(missing)} to tests/conftest.py FAMILIES or a published config to the zoo"


def _lm_eval_utils():
    sys.path.insert(0, str(EVAL_TASKS))
    try:
        return importlib.import_module("logscale_utils")
    finally:
        sys.path.remove(str(EVAL_TASKS))


class _Tags(yaml.SafeLoader):
    pass


_Tags.add_multi_constructor("!", lambda loader, suffix, node: suffix)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_has_its_lm_eval_twin_and_they_agree(name):
    path = EVAL_TASKS / f"logscale_{name}.yaml"
    assert path.is_file(), f"write {path.name} (the lm-eval twin of the {name} task)"
    spec = yaml.load(path.read_text(), Loader=_Tags)
    assert spec["task"] == f"logscale_{name}"
    task = TASKS[name]
    headline = next(m for m in task.metrics if m.name == task.headline)
    for entry in spec["metric_list"]:  # per-length columns score the headline metric
        assert entry["higher_is_better"] == headline.higher_is_better, (path.name, entry["metric"])
    utils = _lm_eval_utils()
    for function in re.findall(r"!function logscale_utils\.(\w+)", path.read_text()):
        assert hasattr(utils, function), f"{path.name} calls logscale_utils.{function}: write it"


def test_register_refuses_a_rope_kind_name_and_undeclared_parameters():
    for taken in ROPE_KIND_NAMES[:2]:

        @dataclass(frozen=True)
        class Clash(Scheme):
            name: ClassVar[str] = taken
            formula: ClassVar[str] = "1"
            origin: ClassVar[str] = "test"

            def __call__(self, n):
                return torch.ones_like(n)

        with pytest.raises(ValueError, match=f"cannot register scheme '{taken}': the name is a RoPE kind"):
            register(Clash)

    @dataclass(frozen=True)
    class Bare(Scheme):
        name: ClassVar[str] = "bare-test"
        formula: ClassVar[str] = "1"
        origin: ClassVar[str] = "test"
        k: float = 1.0

        def __call__(self, n):
            return torch.ones_like(n)

    with pytest.raises(ValueError, match="declare parameter 'k' with _param"):
        register(Bare)
    assert "bare-test" not in hls.SCHEMES


def test_a_declared_range_validates_without_code():
    @dataclass(frozen=True)
    class Ranged(Scheme):
        name: ClassVar[str] = "ranged-test"
        formula: ClassVar[str] = "k"
        origin: ClassVar[str] = "test"
        uses_train_len: ClassVar[bool] = False
        k: float = _param(1.0, "a constant", minimum=0.5, maximum=2.0)

        def __call__(self, n):
            return torch.full_like(n, self.k)

    with pytest.raises(ValueError, match=r"ranged-test: `k` must be a finite number ≥ 0.5 and ≤ 2, got 3"):
        Ranged(k=3)
    assert Ranged(k=1.5).k == 1.5


def test_every_task_has_an_eval_command_and_compare_options_with_its_settings():
    from hf_logscale.cli.compare import compare
    from hf_logscale.cli.evaluate import COMMANDS
    from hf_logscale.cli.options import SETTING_OPTIONS as _SETTINGS

    assert set(COMMANDS) == set(TASKS), "add the task to hf_logscale/cli/evaluate.py COMMANDS"
    compare_options = set(inspect.signature(compare).parameters)
    for name, task in TASKS.items():
        wanted = {s.name for s in task.settings}
        assert set(COMMANDS[name][2]) == wanted, f"{name}: COMMANDS lists its settings {sorted(wanted)}"
        assert wanted <= set(_SETTINGS), (
            f"add an option for {sorted(wanted - set(_SETTINGS))} to cli/options.py SETTING_OPTIONS"
        )
        assert wanted <= compare_options, f"add {sorted(wanted - compare_options)} to cli/compare.py compare()"
        for s in task.settings:  # the CLI's defaults are the task's own
            default = _SETTINGS[s.name][1]
            default = getattr(default, "value", default)  # an Enum option
            default = parse_depths(default) if s.name == "depths" else default
            assert default == s.default, (name, s.name)
            assert inspect.signature(compare).parameters[s.name].default in (_SETTINGS[s.name][1], s.default)


def test_no_import_circle():
    import grimp  # import-linter's graph library, a dev dependency

    graph = grimp.build_graph("hf_logscale")
    circles = [
        chain
        for module in sorted(graph.modules)
        for imported in graph.find_modules_directly_imported_by(module)
        if (chain := graph.find_shortest_chain(importer=imported, imported=module))
    ]
    assert not circles, f"import circles: {circles}"


def test_every_scheme_and_task_is_documented_and_every_task_tested():
    schemes_doc = (ROOT / "docs" / "schemes.md").read_text()
    missing = [s for s in hls.SCHEMES if f"| `{s}` |" not in schemes_doc]
    assert not missing, f"add a row for {missing} to the scheme table in docs/schemes.md"
    eval_doc = (ROOT / "docs" / "evaluation.md").read_text()
    missing = [t for t in TASKS if f"hf-logscale eval {t}" not in eval_doc]
    assert not missing, f"document {missing} in docs/evaluation.md (an `hf-logscale eval <task>` example)"
    tests = (ROOT / "tests" / "test_eval.py").read_text()
    missing = [t for t in TASKS if f'"{t}"' not in tests]
    assert not missing, f"test {missing} in tests/test_eval.py against an independent computation"


def test_every_scheme_is_in_the_vllm_parity_matrix():
    spec = importlib.util.spec_from_file_location("vllm_parity", ROOT / "tests" / "vllm" / "test_parity.py")
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)  # vLLM itself is imported only inside its tests
    schemes = {hls.parse_variant(v).scale.scheme_name for v in parity.VARIANTS}
    assert set(hls.SCHEMES) <= schemes, (
        f"add {sorted(set(hls.SCHEMES) - schemes)} to tests/vllm/test_parity.py VARIANTS"
    )

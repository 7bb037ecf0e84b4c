"""The registered tasks, one module each: every module in this folder is imported (in name order) when the
``hf_logscale.evaluation`` package is, and registers its task with ``@register_task``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

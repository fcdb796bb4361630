"""vLLM general plugin: make vLLM-Neuron's NxDI route find our Qwen3.5 MoE model class.

vLLM calls every ``vllm.general_plugins`` entry point in every process it starts (engine, workers,
API server), possibly more than once, so :func:`register` is idempotent, cheap when the Neuron
stack is absent, and never raises: a plugin that throws would stop vLLM from starting.

What it does, when both NxDI and vllm-neuron are installed: it puts a lazy reference to
``qwen35_neuron.neuron.model:Qwen35MoeForCausalLM`` into NxDI's ``MODEL_TYPES`` table under the key
the plugin derives from each of our architecture names (see :mod:`.arch_key`). The model module is
imported only when vLLM-Neuron first uses the class, in the worker that loads the model.

It does not add our architectures to vllm-neuron's ``NEURON_MULTI_MODAL_MODELS`` by default: at
the pinned release that list also switches the model runner to ``execute_model()``, which the
generic text wrapper the plugin builds for us does not have, so serving would fail on the first
step. See ``docs/nxdi-api-notes.md`` (vLLM section) for what users pass instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, MutableMapping, MutableSequence

from ..errors import Qwen35Error
from .arch_key import nxdi_model_key

# A child of vLLM's logger, so the line is printed by vLLM's own handler and format.
logger = logging.getLogger("vllm.plugins.qwen35_neuron")

MODEL_CLASS_PATH = "qwen35_neuron.neuron.model:Qwen35MoeForCausalLM"
ARCHITECTURES = ("Qwen3_5MoeForConditionalGeneration", "Qwen3_5MoeForCausalLM")
NXDI_CONSTANTS_MODULE = "neuronx_distributed_inference.utils.constants"
PLUGIN_CONSTANTS_MODULE = "vllm_neuron.worker.constants"


class LazyModelClass:
    """Stands in for an NxDI application class until first use, then behaves like it.

    The plugin only calls class methods (``get_neuron_config_cls``, ``get_config_cls``, ...) and the
    constructor on what it finds in ``MODEL_TYPES``; both are forwarded to the real class, which is
    imported on the first such use.
    """

    def __init__(self, target: str = MODEL_CLASS_PATH) -> None:
        module, _, name = target.partition(":")
        if not module or not name:
            raise ValueError(f"target {target!r} must look like 'package.module:ClassName'")
        self._target = target
        self._cls: type | None = None

    @property
    def target(self) -> str:
        return self._target

    def resolve(self) -> type:
        """Import and return the real class; a missing module becomes an error that says what to do."""
        if self._cls is None:
            module_name, _, class_name = self._target.partition(":")
            try:
                module = importlib.import_module(module_name)
                self._cls = getattr(module, class_name)
            except (ImportError, AttributeError) as err:
                raise Qwen35Error(
                    f"vLLM-Neuron asked for {self._target}, which cannot be imported ({err}); install "
                    "qwen35-neuron with its neuron layer on the Neuron host (pip install -e .)"
                ) from err
        return self._cls

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the proxy lacks; its own fields and dunders are never forwarded
        # (copy/pickle probe them before __init__ ran).
        if name.startswith("__") or name in ("_cls", "_target"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyModelClass({self._target!r})"


@dataclass
class RegistrationResult:
    """What :func:`register_into` changed (for the log line and for tests)."""

    keys: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[tuple[str, str]] = field(default_factory=list)
    multimodal_added: list[str] = field(default_factory=list)

    def describe(self) -> str:
        keys = ", ".join(f"MODEL_TYPES[{m!r}][{t!r}]" for m, t in self.keys)
        text = f"qwen35_neuron: registered Qwen3.5 MoE for vLLM-Neuron's NxDI route at {keys}"
        if self.replaced:
            text += f" (replaced the entries already at {self.replaced})"
        if self.multimodal_added:
            text += f"; added {self.multimodal_added} to NEURON_MULTI_MODAL_MODELS"
        return text


def register_into(
    model_types: MutableMapping[str, MutableMapping[str, Any]],
    multimodal_models: MutableSequence[str] | None = None,
    *,
    architectures: tuple[str, ...] = ARCHITECTURES,
    model_class: Any = None,
) -> RegistrationResult:
    """Insert ``model_class`` into ``model_types`` under each architecture's plugin key.

    ``multimodal_models`` is changed in place (the plugin imported the list object by name, so a new
    list would not be seen); pass None to leave it alone. Calling twice changes nothing more.
    """
    model_class = model_class if model_class is not None else LazyModelClass()
    result = RegistrationResult()
    for architecture in architectures:
        model, task = nxdi_model_key(architecture)
        tasks = model_types.setdefault(model, {})
        current = tasks.get(task)
        if current is None:
            tasks[task] = model_class
        elif current is not model_class and not _same_target(current, model_class):
            tasks[task] = model_class
            result.replaced.append((model, task))
        if (model, task) not in result.keys:
            result.keys.append((model, task))
        if multimodal_models is not None and architecture not in multimodal_models:
            multimodal_models.append(architecture)
            result.multimodal_added.append(architecture)
    return result


def register() -> None:
    """Entry point for ``vllm.general_plugins``; logs one line and never raises."""
    try:
        level, message = _register_with_installed_stack()
    except Exception as err:  # noqa: BLE001 - a plugin must not stop vLLM from starting
        level, message = logging.WARNING, f"qwen35_neuron: vLLM-Neuron registration skipped after an error: {err}"
    logger.log(level, message)


def _register_with_installed_stack() -> tuple[int, str]:
    missing = [name for name in ("neuronx_distributed_inference", "vllm_neuron") if not _module_available(name)]
    if missing:
        return logging.WARNING, (f"qwen35_neuron: not registering Qwen3.5 with vLLM-Neuron: "
                                 f"{', '.join(missing)} not installed (expected off a Neuron host)")
    model_types = getattr(importlib.import_module(NXDI_CONSTANTS_MODULE), "MODEL_TYPES", None)
    plugin_constants = importlib.import_module(PLUGIN_CONSTANTS_MODULE)
    if not isinstance(model_types, dict) or not hasattr(plugin_constants, "NEURON_MULTI_MODAL_MODELS"):
        return logging.WARNING, ("qwen35_neuron: not registering Qwen3.5 with vLLM-Neuron: this vllm-neuron has "
                                 "no NxDI route (releases >= 0.21 are native); use vllm-neuron 0.5.0 with NxDI, "
                                 "see docs/nxdi-api-notes.md")
    result = register_into(model_types, None)
    return (logging.WARNING if result.replaced else logging.INFO), result.describe()


def _module_available(name: str) -> bool:
    """True when ``name`` is importable, without importing it (heavy SDK modules stay unloaded)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _same_target(a: Any, b: Any) -> bool:
    return isinstance(a, LazyModelClass) and isinstance(b, LazyModelClass) and a.target == b.target

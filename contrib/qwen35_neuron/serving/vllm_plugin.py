"""vLLM general plugin: make ``vllm serve`` reach our Qwen3.5 MoE model on vLLM-Neuron's NxDI route.

vLLM calls every ``vllm.general_plugins`` entry point in every process it starts (the API server
from ``EngineArgs.__post_init__``, before the model config is parsed; the engine core, the workers,
the registry's inspection subprocess), possibly more than once, so :func:`register` is idempotent,
cheap, and never raises: a plugin that throws would stop vLLM from starting. Each step runs when
its library is installed and logs one line:

1. transformers without ``qwen3_5_moe`` (4.57, the NxDI route's pin): our config classes are
   registered with ``AutoConfig`` (:mod:`.transformers_config`), so vLLM can parse config.json;
2. vLLM without a Qwen3.5 model of its own (0.16): the architectures go into ``ModelRegistry``
   as :class:`~.vllm_arch.Qwen35MoeNxdiDeclaration` and into ``MODELS_CONFIG_MAP`` (prefix caching
   off), so vLLM's ``ModelConfig`` accepts them;
3. NxDI and vllm-neuron installed: a lazy reference to
   ``qwen35_neuron.neuron.model:Qwen35MoeForCausalLM`` goes into NxDI's ``MODEL_TYPES`` table under
   the key the plugin derives from each architecture name (see :mod:`.arch_key`). The model module
   is imported only when vLLM-Neuron first uses the class, in the worker that loads the model.

It does not add our architectures to vllm-neuron's ``NEURON_MULTI_MODAL_MODELS``: at the pinned
release that list also switches the model runner to ``execute_model()``, which the generic text
wrapper the plugin builds for us does not have, so serving would fail on the first step.
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
DENSE_MODEL_CLASS_PATH = "qwen35_neuron.neuron.model:Qwen35ForCausalLM"
DENSE_ARCHITECTURES = ("Qwen3_5ForConditionalGeneration", "Qwen3_5ForCausalLM")
# NxDI's model table: each family's architectures and the class that serves them
FAMILIES = ((ARCHITECTURES, MODEL_CLASS_PATH), (DENSE_ARCHITECTURES, DENSE_MODEL_CLASS_PATH))
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
        text = f"qwen35_neuron: registered Qwen3.5 for vLLM-Neuron's NxDI route at {keys}"
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
    """Entry point for ``vllm.general_plugins``: each step logs one line and none raises."""
    for step in (_register_transformers_config, _register_vllm_architectures, _register_with_installed_stack):
        try:
            level, message = step()
        except Exception as err:  # noqa: BLE001 - a plugin must not stop vLLM from starting
            level, message = logging.WARNING, f"qwen35_neuron: {step.__doc__} skipped after an error: {err}"
        if message:
            logger.log(level, message)


def _register_transformers_config() -> tuple[int, str]:
    """config registration with transformers"""
    from .transformers_config import register_transformers_config

    added = register_transformers_config()
    if added:
        return logging.INFO, f"qwen35_neuron: registered model types {added} with transformers' AutoConfig"
    return logging.DEBUG, ""


def _register_vllm_architectures() -> tuple[int, str]:
    """architecture registration with vLLM"""
    if not _module_available("vllm"):
        return logging.DEBUG, ""
    from vllm.model_executor.models import ModelRegistry
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP

    from .vllm_arch import Qwen35MoeNxdiDeclaration, Qwen35MoeVllmConfigUpdate

    added = register_vllm_architectures(ModelRegistry, MODELS_CONFIG_MAP, Qwen35MoeNxdiDeclaration,
                                        Qwen35MoeVllmConfigUpdate, ARCHITECTURES + DENSE_ARCHITECTURES)
    if not added:
        return logging.DEBUG, ""
    return logging.INFO, f"qwen35_neuron: registered {', '.join(added)} with vLLM's ModelRegistry (served by vllm-neuron)"


def register_vllm_architectures(registry: Any, config_map: MutableMapping[str, Any], declaration: type,
                                config_update: type, architectures: tuple[str, ...] = ARCHITECTURES) -> list[str]:
    """Add each architecture vLLM has no model for; leave vLLM's own (newer releases) and ours alone."""
    added = []
    for architecture in architectures:
        entry = registry.models.get(architecture)
        if entry is not None:  # vLLM's own Qwen3.5, or ours from an earlier call
            continue
        registry.register_model(architecture, declaration)
        config_map[architecture] = config_update
        added.append(architecture)
    return added


def _register_with_installed_stack() -> tuple[int, str]:
    """registration with vLLM-Neuron's NxDI route"""
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
    result = RegistrationResult()
    for architectures, class_path in FAMILIES:
        family = register_into(model_types, None, architectures=architectures, model_class=LazyModelClass(class_path))
        result.keys += family.keys
        result.replaced += family.replaced
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

"""The Neuron layer: Qwen3.5 MoE on Trainium2 through NxD Inference (compile, then load, then generate).

The only package that imports the Neuron SDK. Importing it without the SDK raises one ImportError
that names every missing package and how to get it; the pure pieces it builds on (settings,
checkpoint conversion, state layout) live in ``qwen35_neuron.config.neuron_settings`` and
``qwen35_neuron.neuron_layout`` and work on any machine.

Typical use on a trn2 host::

    from qwen35_neuron.config.neuron_settings import preset
    from qwen35_neuron.neuron import Qwen35MoeForCausalLM, inference_config

    config = inference_config("/models/Qwen3.5-35B-A3B", preset("trn2.3xlarge"))
    model = Qwen35MoeForCausalLM("/models/Qwen3.5-35B-A3B", config)
    model.compile("/compiled/qwen35")          # once
    model = Qwen35MoeForCausalLM("/compiled/qwen35")
    model.load("/compiled/qwen35")

Images: :class:`qwen35_neuron.neuron.vl_session.NeuronVLSession` (``load_neuron_vl_session(model, vision_compiled=...)``)
with :func:`qwen35_neuron.vl.generate_vl`.
"""

from __future__ import annotations

import importlib.util
import sys

# (import name, pip distribution, pinned version); nki is optional (kernels fall back to twins)
REQUIRED_SDK = (
    ("torch_neuronx", "torch-neuronx", "2.9.0.2.13.26312"),
    ("neuronx_distributed", "neuronx-distributed", "0.18.27753"),
    ("neuronx_distributed_inference", "neuronx-distributed-inference", "0.9.17334"),
)
NEURON_PIP_INDEX = "https://pip.repos.neuron.amazonaws.com"


def missing_sdk_packages() -> list[tuple[str, str, str]]:
    """The required SDK packages that cannot be imported here (cheap: nothing is imported)."""
    return [entry for entry in REQUIRED_SDK
            if entry[0] not in sys.modules and importlib.util.find_spec(entry[0]) is None]


def sdk_import_error(missing: list[tuple[str, str, str]]) -> ImportError:
    names = ", ".join(f"{dist} (module {module})" for module, dist, _ in missing)
    pins = " ".join(f"{dist}=={version}" for _, dist, version in missing)
    return ImportError(
        f"qwen35_neuron.neuron needs the AWS Neuron SDK, which is not installed here: missing {names}. "
        f"It runs on a Trainium2 (trn2) host: use the Neuron DLAMI's NxD Inference venv, or install from the "
        f"Neuron pip repository: pip install --extra-index-url {NEURON_PIP_INDEX} {pins} (SDK 2.29.1). "
        "On a CPU machine use the CPU backends instead (qwen35-neuron demo/generate --backend dense|simulated-tp)."
    )


_missing = missing_sdk_packages()
if _missing:
    raise sdk_import_error(_missing)

from .config import Qwen35MoeInferenceConfig, Qwen35MoeNeuronConfig, inference_config, load_qwen35_config  # noqa: E402
from .model import NeuronQwen35MoeModel, Qwen35ForCausalLM, Qwen35MoeForCausalLM  # noqa: E402

__all__ = [
    "NeuronQwen35MoeModel",
    "Qwen35ForCausalLM",
    "Qwen35MoeForCausalLM",
    "Qwen35MoeInferenceConfig",
    "Qwen35MoeNeuronConfig",
    "inference_config",
    "load_qwen35_config",
    "missing_sdk_packages",
]

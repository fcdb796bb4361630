"""Qwen3.5 hybrid models (Gated DeltaNet + gated attention + MoE) for AWS Trainium2.

Layers, imported top to bottom only: ``config`` -> ``model`` / ``parallel`` -> ``kernels``
-> ``neuron`` -> ``runtime`` -> ``serving`` -> ``cli``. Only ``neuron`` imports the Neuron SDK.
"""

__version__ = "0.1.0"

"""The ``qwen35-neuron`` command line."""

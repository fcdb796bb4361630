"""A compiled model on Trainium2 for the CLI: the SDK import, loading, generating, the CPU cross-check.

Everything that needs the Neuron SDK goes through :func:`import_neuron_layer`, so a machine without
it gets one ``error:`` line that names the missing packages, never a traceback.
"""

from __future__ import annotations

import dataclasses
import time
from types import ModuleType
from typing import Any

from ..errors import InputError, Qwen35Error
from .progress import Progress


def import_neuron_layer() -> ModuleType:
    """``qwen35_neuron.neuron`` (it imports the SDK); its ImportError becomes a one-line user error."""
    try:
        import qwen35_neuron.neuron as neuron
    except ImportError as err:
        raise Qwen35Error(str(err).splitlines()[0] if str(err) else repr(err)) from err
    return neuron


def load_compiled(compiled_dir: str, progress: Progress) -> Any:
    """The application compiled into ``compiled_dir``, loaded onto the NeuronCores (warm-up included)."""
    neuron = import_neuron_layer()
    with progress.stage(f"loading {compiled_dir} onto the NeuronCores (warm-up included)"):
        model = neuron.Qwen35MoeForCausalLM(compiled_dir)
        model.load(compiled_dir)
    return model


def checkpoint_dir(model: Any) -> str:
    """The Hugging Face checkpoint the model was compiled from (tokenizer, config, VL tower)."""
    return model.config._name_or_path


def check_batch(prompts: list[list[int]], model: Any) -> None:
    batch = model.config.settings().batch_size
    if len(prompts) > batch:
        raise InputError(f"{len(prompts)} prompts but the model was compiled for --batch-size {batch}: send fewer "
                         "prompts or recompile")


def check_text_lengths(prompts: list[list[int]], model: Any, max_new_tokens: int) -> None:
    """Text prompts and their new tokens fit the compiled cache (a prompt past the largest context bucket
    runs as several context encodings)."""
    from ..neuron.generation import check_compiled_capacity

    check_compiled_capacity(model, prompts, max_new_tokens)


def generate_text(model: Any, prompts: list[list[int]], max_new_tokens: int, eos: tuple[int, ...], loop: str,
                  listener=None) -> tuple[list[list[int]], dict[str, float | None]]:
    """Greedy text generation: our direct loop (timed per call) or NxDI's HF adapter (timed overall)."""
    from ..neuron.generation import generate_direct, generate_with_adapter
    from ..runtime.benchmark import PhaseTimer

    if loop == "adapter":
        started = time.perf_counter()
        tokens = generate_with_adapter(model, prompts, max_new_tokens, eos)
        return tokens, {"total_s": time.perf_counter() - started}
    result = generate_direct(PhaseTimer(model, listener), prompts, max_new_tokens, eos)
    steps = result.step_s
    return result.tokens, {"ttft_s": result.ttft_s, "tpot_s": sum(steps) / len(steps) if steps else None}


def generate_images(model: Any, requests: list, max_new_tokens: int, eos: tuple[int, ...],
                    vision_compiled: str | None = None, min_pixels: int | None = None,
                    max_pixels: int | None = None):
    """Greedy VL generation on the compiled text model: (tokens per prompt, timing, the session)."""
    from ..neuron.vl_session import load_neuron_vl_session
    from ..vl import generate_vl

    session = load_neuron_vl_session(model, vision_compiled=vision_compiled)
    session.processor = session.processor.with_pixel_limits(min_pixels, max_pixels)
    started = time.perf_counter()
    result = generate_vl(session, requests, max_new_tokens, eos)
    return result.tokens, {"total_s": time.perf_counter() - started}, session


def cpu_reference(model: Any, prompts: list[list[int]], max_new_tokens: int, eos: tuple[int, ...]) -> list[list[int]]:
    """The CPU runtime's greedy tokens for the same prompts (a bf16 model runs bf16 on the CPU too)."""
    from ..config import RunConfig
    from ..runtime.loading import load_engine
    from ..runtime.session import generate

    settings = model.config.settings()
    width = max(len(p) for p in prompts)
    run = RunConfig(batch_size=len(prompts), context_buckets=(width,), max_seq_len=width + max_new_tokens,
                    dtype=settings.dtype, gdr_chunk_size=settings.gdr_chunk_size)
    engine = load_engine(checkpoint_dir(model), run)[1]
    return generate(engine, prompts, max_new_tokens, eos_token_ids=eos).tokens


def cpu_vl_reference(session: Any, requests: list, max_new_tokens: int, eos: tuple[int, ...]) -> list[list[int]]:
    """The CPU VL path's greedy tokens for the same requests, buckets and image processing."""
    from ..runtime.vl_session import load_vl_session
    from ..vl import generate_vl

    run = dataclasses.replace(session.run, batch_size=len(requests))
    _, reference = load_vl_session(checkpoint_dir(session.model), run, processor=session.processor)
    return generate_vl(reference, requests, max_new_tokens, eos).tokens

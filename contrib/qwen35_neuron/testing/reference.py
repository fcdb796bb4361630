"""transformers as the reference: greedy tokens and the logits that chose them."""

from __future__ import annotations

import torch


@torch.no_grad()
def hf_greedy(model, prompt: list[int], max_new_tokens: int,
              eos_token_ids: tuple[int, ...] = ()) -> tuple[list[int], torch.Tensor]:
    """Greedy ``generate`` of a transformers model on one prompt.

    Returns (generated ids with EOS excluded, logits [steps, V] of every step, the EOS step included).
    """
    out = model.generate(
        torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=list(eos_token_ids) or None, pad_token_id=0,
        output_logits=True, return_dict_in_generate=True,
    )
    tokens = out.sequences[0, len(prompt):].tolist()
    logits = torch.cat(out.logits, dim=0).float()
    if tokens and tokens[-1] in eos_token_ids:
        tokens = tokens[:-1]
    return tokens, logits


def quiet_transformers() -> None:
    """Silence transformers' progress bars and fallback notices in demo/test output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()

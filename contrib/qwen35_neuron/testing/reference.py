"""transformers as the reference: greedy tokens and the logits that chose them."""

from __future__ import annotations

import torch


@torch.no_grad()
def hf_greedy(model, prompt: list[int], max_new_tokens: int, eos_token_ids: tuple[int, ...] = (), *,
              pixel_values=None, image_grid_thw=None, image_token_id: int | None = None,
              ) -> tuple[list[int], torch.Tensor]:
    """Greedy ``generate`` of a transformers model on one prompt.

    For images, ``prompt`` holds the already expanded image tokens and ``pixel_values`` /
    ``image_grid_thw`` the preprocessed patches. Returns (generated ids with EOS excluded,
    logits [steps, V] of every step, the EOS step included).
    """
    ids = torch.tensor([prompt])
    images = {}
    if image_grid_thw is not None and len(image_grid_thw):
        images = dict(pixel_values=torch.as_tensor(pixel_values), image_grid_thw=torch.tensor(image_grid_thw),
                      mm_token_type_ids=(ids == image_token_id).int())
    out = model.generate(
        ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(eos_token_ids) or None,
        pad_token_id=0, output_logits=True, return_dict_in_generate=True, **images,
    )
    tokens = out.sequences[0, len(prompt):].tolist()
    if tokens and tokens[-1] in eos_token_ids:
        tokens = tokens[:-1]
    return tokens, torch.cat(out.logits, dim=0).float()


def quiet_transformers() -> None:
    """Silence transformers' progress bars and fallback notices in demo/test output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()

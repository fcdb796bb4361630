"""Image placeholders in a prompt: count them, give each its image, expand each to its tokens.

Convention (the one Hugging Face's processor uses for ``<|image_pad|>``): the user writes ONE
``image_token_id`` per image where the image goes, optionally wrapped in ``vision_start`` /
``vision_end`` as Qwen's chat template does (we never add or require the wrappers). Before the
model runs, each single placeholder becomes ``t*h*w / merge**2`` copies of ``image_token_id``,
the number of merged patch embeddings the vision tower produces for that image. Two placeholders
side by side are two images.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import InputError

IMAGE_PAD_TEXT = "<|image_pad|>"  # the literal placeholder of Qwen's chat template


def count_placeholders(prompt: Sequence[int], image_token_id: int) -> int:
    return sum(1 for token in prompt if int(token) == image_token_id)


def check_image_count(prompt: Sequence[int], num_images: int, image_token_id: int, row: int = 0) -> None:
    """One image per placeholder, in order: a mismatch either way is the user's mistake."""
    placeholders = count_placeholders(prompt, image_token_id)
    if placeholders > num_images:
        raise InputError(
            f"prompt {row} has {placeholders} image placeholders (token {image_token_id}) but only {num_images} "
            f"image(s) were given: pass one image per placeholder, or remove the extra placeholders"
        )
    if placeholders < num_images:
        raise InputError(
            f"prompt {row} has {placeholders} image placeholders (token {image_token_id}) but {num_images} "
            f"image(s) were given: put one placeholder where each image goes, or drop the extra images"
        )


def expand_placeholders(prompt: Sequence[int], token_counts: Sequence[int], image_token_id: int) -> list[int]:
    """Replace the i-th placeholder with ``token_counts[i]`` copies of ``image_token_id``."""
    check_image_count(prompt, len(token_counts), image_token_id)
    out: list[int] = []
    image = 0
    for token in prompt:
        if int(token) == image_token_id:
            out.extend([image_token_id] * int(token_counts[image]))
            image += 1
        else:
            out.append(int(token))
    return out


def assign_images_in_order(prompts: Sequence[Sequence[int]], images: Sequence[Any],
                           image_token_id: int) -> list[list[Any]]:
    """Hand out a flat image list to the prompts' placeholders in order, row by row (CLI batches)."""
    counts = [count_placeholders(p, image_token_id) for p in prompts]
    total = sum(counts)
    if total != len(images):
        more = "more" if total > len(images) else "fewer"
        raise InputError(
            f"the prompts hold {total} image placeholders (token {image_token_id}; per prompt {counts}) but "
            f"{len(images)} image(s) were given ({more} placeholders than images): give one --image per "
            "placeholder, in order across the prompts"
        )
    out, start = [], 0
    for count in counts:
        out.append(list(images[start:start + count]))
        start += count
    return out


def encode_with_placeholders(tokenizer: Any, text: str, image_token_id: int,
                             placeholder: str = IMAGE_PAD_TEXT) -> list[int]:
    """Token ids of ``text`` with every literal ``placeholder`` turned into one ``image_token_id``.

    The text between placeholders is encoded piece by piece, so a tokenizer that does not know the
    placeholder as a special token (a byte-level test tokenizer) gives the same ids as one that does.
    """
    pieces = text.split(placeholder)
    ids: list[int] = []
    for index, piece in enumerate(pieces):
        if index:
            ids.append(image_token_id)
        if piece:
            ids.extend(int(t) for t in tokenizer.encode(piece, add_special_tokens=False))
    return ids

"""Pack images' patches into static patch buckets for the vision tower, and cut its output.

The tower is compiled once per bucket size (a patch count). A request's images are grouped in
order into packs that each fit one bucket; each pack is padded with zero patches up to its
bucket. :class:`PackedImages` carries the tower's inputs and, per image, which merged tokens of
the output belong to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..config import VisionConfig
from ..errors import InputError, UnsupportedConfigError
from .attention_mask import block_diagonal_bias, segment_ids
from .grid import Grid, as_grids, check_grid, image_geometry, num_patches
from .tower import head_dim, patch_dim


@dataclass(frozen=True)
class PackedImages:
    """One bucket's worth of images, ready for :class:`~qwen35_neuron.vision.tower.VisionTower`."""

    patches: torch.Tensor  # [bucket, patch_dim]
    pos_index: torch.Tensor  # [bucket, 4] int64
    pos_weight: torch.Tensor  # [bucket, 4] fp32
    cos: torch.Tensor  # [bucket, head_dim]
    sin: torch.Tensor  # [bucket, head_dim]
    attention_bias: torch.Tensor  # [bucket, bucket]
    bucket: int
    image_ids: tuple[int, ...]  # positions of these images in the caller's image list
    token_slices: tuple[tuple[int, int], ...]  # [start, end) of each image's merged tokens in the output

    def tower_inputs(self) -> tuple[torch.Tensor, ...]:
        """The tower's forward arguments, in order."""
        return (self.patches, self.pos_index, self.pos_weight, self.cos, self.sin, self.attention_bias)

    def split_output(self, merged: torch.Tensor) -> list[torch.Tensor]:
        """Cut the tower output ``[bucket // merge**2, out_hidden]`` into one tensor per image."""
        return [merged[start:end] for start, end in self.token_slices]


def check_buckets(buckets: Sequence[int], config: VisionConfig) -> tuple[int, ...]:
    """Sorted buckets; each must be a positive multiple of merge**2 so merged tokens never straddle pads."""
    unit = config.spatial_merge_size ** 2
    if not buckets:
        raise UnsupportedConfigError("no vision patch buckets given: pass at least one, e.g. (1024, 4096, 16384)")
    bad = [b for b in buckets if b <= 0 or b % unit]
    if bad:
        raise UnsupportedConfigError(
            f"vision buckets {bad} are not positive multiples of spatial_merge_size**2 = {unit}: round them up"
        )
    return tuple(sorted(set(int(b) for b in buckets)))


def choose_bucket(patch_count: int, buckets: Sequence[int]) -> int:
    """Smallest bucket holding ``patch_count`` patches."""
    for bucket in sorted(buckets):
        if patch_count <= bucket:
            return bucket
    raise InputError(
        f"{patch_count} image patches exceed the largest vision bucket ({max(buckets)} patches): "
        "lower the image's max_pixels in preprocessing or compile a larger vision bucket"
    )


def _too_large_error(index: int, grid: Grid, largest: int, config: VisionConfig) -> InputError:
    t, h, w = grid
    pixels = largest * config.patch_size ** 2 // max(t, 1)
    return InputError(
        f"image {index} has {num_patches(grid)} patches (grid t={t} x h={h} x w={w}) but the largest vision "
        f"bucket holds {largest}: preprocess it with max_pixels <= {pixels} or compile a vision bucket of at "
        f"least {num_patches(grid)} patches"
    )


def plan_packs(grids: Sequence[Grid], buckets: Sequence[int], config: VisionConfig) -> list[list[int]]:
    """Group images, in order, greedily into packs that each fit the largest bucket."""
    largest = max(buckets)
    packs: list[list[int]] = []
    used = largest + 1  # forces a new pack for the first image
    for index, grid in enumerate(grids):
        count = num_patches(grid)
        if count > largest:
            raise _too_large_error(index, grid, largest, config)
        if used + count > largest:
            packs.append([])
            used = 0
        packs[-1].append(index)
        used += count
    return packs


def pack_images(
    patches: Sequence[torch.Tensor],
    grids: Sequence[Grid],
    bucket: int,
    config: VisionConfig,
    image_ids: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> PackedImages:
    """Concatenate the images' patches and host geometry and pad everything to ``bucket``.

    ``patches[i]`` is image i's ``[t*h*w, patch_dim]`` pixel patches in processor order. Padding
    patches are zeros with zero position weights and their own attention segment.
    """
    grids = as_grids(grids)
    merge = config.spatial_merge_size
    total = sum(num_patches(g) for g in grids)
    if total > bucket:
        raise InputError(f"{total} image patches do not fit the vision bucket of {bucket}: choose a larger bucket")
    if bucket % (merge * merge):
        raise UnsupportedConfigError(f"vision bucket {bucket} is not a multiple of spatial_merge_size**2")
    dim, hd = patch_dim(config), head_dim(config)
    out = {
        "patches": torch.zeros(bucket, dim, dtype=dtype),
        "pos_index": torch.zeros(bucket, 4, dtype=torch.long),
        "pos_weight": torch.zeros(bucket, 4, dtype=torch.float32),
        "cos": torch.ones(bucket, hd, dtype=dtype),
        "sin": torch.zeros(bucket, hd, dtype=dtype),
    }
    slices, start = [], 0
    for index, (pixels, grid) in enumerate(zip(patches, grids, strict=True)):
        check_grid(grid, merge)
        count = num_patches(grid)
        if tuple(pixels.shape) != (count, dim):
            raise InputError(
                f"image {index} pixel patches have shape {tuple(pixels.shape)} but grid {grid} needs "
                f"({count}, {dim}): pass the preprocessor's pixel_values with their own grid"
            )
        out["patches"][start:start + count] = pixels.to(dtype)
        for name, value in image_geometry(grid, config).items():
            out[name][start:start + count] = value.to(out[name].dtype)
        slices.append((start // (merge * merge), (start + count) // (merge * merge)))
        start += count
    bias = block_diagonal_bias(segment_ids(grids, bucket), dtype=dtype)
    ids = tuple(image_ids) if image_ids is not None else tuple(range(len(grids)))
    return PackedImages(attention_bias=bias, bucket=bucket, image_ids=ids, token_slices=tuple(slices), **out)


def split_pixel_values(pixel_values: torch.Tensor, grids: Sequence[Grid]) -> list[torch.Tensor]:
    """Cut the processor's concatenated ``pixel_values`` into one tensor per image."""
    grids = as_grids(grids)
    counts = [num_patches(g) for g in grids]
    if pixel_values.dim() != 2 or pixel_values.shape[0] != sum(counts):
        raise InputError(
            f"pixel_values has shape {tuple(pixel_values.shape)} but the grids {grids} need {sum(counts)} "
            "patch rows: pass pixel_values and image_grid_thw from the same preprocessing call"
        )
    return list(torch.split(pixel_values, counts, dim=0))


def pack_request(
    pixel_values: torch.Tensor,
    grids: Sequence[Grid] | torch.Tensor,
    buckets: Sequence[int],
    config: VisionConfig,
    dtype: torch.dtype = torch.float32,
) -> list[PackedImages]:
    """All of a request's images as packs, each padded to the smallest bucket that holds it."""
    grids = as_grids(grids)
    buckets = check_buckets(buckets, config)
    per_image = split_pixel_values(torch.as_tensor(pixel_values), grids)
    packs = []
    for members in plan_packs(grids, buckets, config):
        member_grids = [grids[i] for i in members]
        bucket = choose_bucket(sum(num_patches(g) for g in member_grids), buckets)
        packs.append(pack_images([per_image[i] for i in members], member_grids, bucket, config,
                                 image_ids=members, dtype=dtype))
    return packs

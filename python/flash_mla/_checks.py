"""Argument checks of the Python API, raising TypeError/ValueError that name the argument.

The compiled ops check the same things (and the C++ library the values) but can only raise
RuntimeError; these checks run first, in eager calls and in the fake implementations, so that
``flash_mla_with_kvcache`` and traced graphs raise the usual Python exception classes. They use
only tensor metadata (no data, no synchronisation), so they are traceable by torch.compile.
Exception classes: TypeError for a wrong type or dtype, ValueError for a wrong device, rank,
shape, stride or value.
"""

from __future__ import annotations

import torch

HEAD_DIM = 576          # K: 512 latent channels + 64 RoPE channels
HEAD_DIM_V = 512        # V is the first 512 channels of K
PAGE_BLOCK_SIZE = 64    # tokens per page of the KV cache
METADATA_FIELDS = 8     # int32 fields per scheduling record
ROW_ALIGN = 8           # strides in elements: 16-byte aligned rows for 16-byte loads
FLOAT_TYPES = (torch.bfloat16, torch.float16)


def _tensor(t, arg: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{arg}: expected a torch.Tensor, got {type(t).__name__}")


def _cuda(t: torch.Tensor, arg: str, device: torch.device | None = None) -> None:
    if t.device.type != "cuda":
        raise ValueError(f"{arg}: expected a CUDA tensor, got a tensor on {t.device}")
    if device is not None and t.device != device:
        raise ValueError(f"{arg}: expected a tensor on {device} (the device of q), "
                         f"got a tensor on {t.device}")


def _dtype(t: torch.Tensor, arg: str, allowed: tuple) -> None:
    if t.dtype not in allowed:
        names = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{arg}: expected dtype {names}, got {t.dtype}")


def _rank(t: torch.Tensor, arg: str, rank: int, layout: str) -> None:
    if t.dim() != rank:
        raise ValueError(f"{arg}: expected {rank} dimensions {layout}, "
                         f"got {t.dim()} dimensions {list(t.shape)}")


def _size(t: torch.Tensor, arg: str, dim: int, want: int, why: str) -> None:
    if t.shape[dim] != want:
        raise ValueError(f"{arg}: expected size {want} in dimension {dim} ({why}), "
                         f"got shape {list(t.shape)}")


def _inner_dense(t: torch.Tensor, arg: str) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{arg}: expected stride 1 in the last dimension, got strides "
                         f"{list(t.stride())}")


def _row_strides(t: torch.Tensor, arg: str) -> None:
    for dim in range(t.dim() - 1):
        stride = t.stride(dim)
        if t.shape[dim] > 1 and (stride < 0 or stride % ROW_ALIGN != 0):
            raise ValueError(
                f"{arg}: expected strides that are non-negative multiples of {ROW_ALIGN} "
                f"elements (16-byte aligned rows), got strides {list(t.stride())}")


def _device_tensor(t, arg: str, device: torch.device | None, dtypes: tuple, rank: int,
                   layout: str) -> None:
    """A CUDA tensor (on `device` when given) of one of `dtypes`, `rank` dimensions, stride 1
    in the last; the checks in the order their errors are reported."""
    _tensor(t, arg)
    _cuda(t, arg, device)
    _dtype(t, arg, dtypes)
    _rank(t, arg, rank, layout)
    _inner_dense(t, arg)


def _int32_vector(t, arg: str, device: torch.device | None, layout: str) -> None:
    _device_tensor(t, arg, device, (torch.int32,), 1, layout)


def check_metadata_args(cache_seqlens, num_q_tokens_per_head_k, num_heads_k) -> None:
    _int32_vector(cache_seqlens, "cache_seqlens", None, "[b]")
    if cache_seqlens.shape[0] < 1:
        raise ValueError("cache_seqlens: expected at least one sequence, got shape [0]")
    for arg, value in (("num_q_tokens_per_head_k", num_q_tokens_per_head_k),
                       ("num_heads_k", num_heads_k)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{arg}: expected an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{arg}: expected at least 1, got {value}")


def check_metadata_buffers(cache_seqlens, tile_scheduler_metadata, num_splits) -> None:
    device = cache_seqlens.device
    _tensor(tile_scheduler_metadata, "tile_scheduler_metadata")
    _cuda(tile_scheduler_metadata, "tile_scheduler_metadata", device)
    _dtype(tile_scheduler_metadata, "tile_scheduler_metadata", (torch.int32,))
    _rank(tile_scheduler_metadata, "tile_scheduler_metadata", 2, "[num_sm_parts, 8]")
    _size(tile_scheduler_metadata, "tile_scheduler_metadata", 1, METADATA_FIELDS,
          "fields per record")
    if tile_scheduler_metadata.shape[0] < 1 or not tile_scheduler_metadata.is_contiguous():
        raise ValueError("tile_scheduler_metadata: expected a contiguous [num_sm_parts >= 1, 8] "
                         f"tensor, got shape {list(tile_scheduler_metadata.shape)} and strides "
                         f"{list(tile_scheduler_metadata.stride())}")
    _int32_vector(num_splits, "num_splits", device, "[b + 1]")
    _size(num_splits, "num_splits", 0, cache_seqlens.shape[0] + 1,
          "b + 1: metadata computed for this batch")


def check_query_and_cache(q, k_cache) -> None:
    """q [b, s_q, h_q, 576] and k_cache [num_blocks, 64, h_kv, 576] on one CUDA device."""
    _device_tensor(q, "q", None, FLOAT_TYPES, 4, "[b, s_q, h_q, 576]")
    device = q.device
    _size(q, "q", 3, HEAD_DIM, "the MLA head dim: 512 latent + 64 RoPE channels")
    _row_strides(q, "q")
    if min(q.shape[:3]) < 1:
        raise ValueError(f"q: expected b, s_q and h_q of at least 1, got shape {list(q.shape)}")
    h_q = q.shape[2]

    _device_tensor(k_cache, "k_cache", device, (q.dtype,), 4,
                   "[num_blocks, page_block_size, h_kv, 576]")
    _size(k_cache, "k_cache", 1, PAGE_BLOCK_SIZE, "page_block_size")
    _size(k_cache, "k_cache", 3, HEAD_DIM, "the head dim of q")
    _row_strides(k_cache, "k_cache")
    if k_cache.shape[0] < 1:
        raise ValueError(f"k_cache: expected at least one block, got shape {list(k_cache.shape)}")
    h_kv = k_cache.shape[2]
    if h_kv < 1 or h_q % h_kv != 0:
        raise ValueError(f"k_cache: expected h_kv (dimension 2) dividing h_q = {h_q}, "
                         f"got shape {list(k_cache.shape)}")


def check_seqlens(cache_seqlens, q) -> None:
    """cache_seqlens [b] int32 on q's device, b the batch of q."""
    _int32_vector(cache_seqlens, "cache_seqlens", q.device, "[b]")
    _size(cache_seqlens, "cache_seqlens", 0, q.shape[0], "b, the batch of q")


def check_decode_args(q, k_cache, block_table, cache_seqlens, head_dim_v,
                      tile_scheduler_metadata, num_splits) -> None:
    check_query_and_cache(q, k_cache)
    device = q.device
    b = q.shape[0]

    if not isinstance(head_dim_v, int) or isinstance(head_dim_v, bool):
        raise TypeError(f"head_dim_v: expected an int, got {type(head_dim_v).__name__}")
    if head_dim_v != HEAD_DIM_V:
        raise ValueError(f"head_dim_v: expected {HEAD_DIM_V}, got {head_dim_v}")

    _device_tensor(block_table, "block_table", device, (torch.int32,), 2,
                   "[b, max_blocks_per_seq]")
    _size(block_table, "block_table", 0, b, "b, the batch of q")
    if block_table.shape[1] < 1:
        raise ValueError("block_table: expected at least one column, got shape "
                         f"{list(block_table.shape)}")

    check_seqlens(cache_seqlens, q)

    check_metadata_buffers(cache_seqlens, tile_scheduler_metadata, num_splits)

"""Loads the compiled ops (``torch.ops.flash_mla.*``) and registers their fake implementations.

The shared library ``_flash_mla_ops.so`` holds three ops built against the LibTorch stable ABI
(``python/csrc/torch_ops.cpp``) and two plain C functions reached through ctypes, which the
fake implementation of ``get_mla_metadata`` needs: the number of scheduling parts depends on
the GPU, and a fake implementation may not run an op.
"""

from __future__ import annotations

import ctypes
import functools
import os

import torch

from . import _checks

_LIBRARY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_flash_mla_ops.so")
if not os.path.exists(_LIBRARY_PATH):
    raise ImportError(
        f"flash_mla: the compiled ops are missing ({_LIBRARY_PATH}); install the package with "
        "`pip install --no-build-isolation .` from the repository root")
torch.ops.load_library(_LIBRARY_PATH)
_clib = ctypes.CDLL(_LIBRARY_PATH)
_clib.flash_mla_py_num_sm_parts.argtypes = [
    ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
    ctypes.c_char_p, ctypes.c_int]
_clib.flash_mla_py_num_sm_parts.restype = ctypes.c_int
_clib.flash_mla_py_is_supported.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_clib.flash_mla_py_is_supported.restype = ctypes.c_int

ops = torch.ops.flash_mla

# Kernel names accepted by the Python API, in the order of the C++ enum KernelChoice.
KERNELS = ("auto", "portable", "hopper")


def kernel_index(kernel: str) -> int:
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}")
    return KERNELS.index(kernel)


def _status(code: int, message: ctypes.Array) -> str:
    return message.value.decode(errors="replace") if code != 0 else ""


@functools.lru_cache(maxsize=None)
def num_sm_parts(device_index: int, rows_per_kv_head: int, num_heads_kv: int, kernel: int) -> int:
    """Rows of the scheduling metadata for this shape on this GPU (host-only, cached)."""
    parts = ctypes.c_int(0)
    message = ctypes.create_string_buffer(512)
    code = _clib.flash_mla_py_num_sm_parts(device_index, rows_per_kv_head, num_heads_kv, kernel,
                                           ctypes.byref(parts), message, len(message))
    if code != 0:
        raise RuntimeError(_status(code, message))
    return parts.value


def is_supported_index(device_index: int) -> tuple[bool, str]:
    message = ctypes.create_string_buffer(512)
    code = _clib.flash_mla_py_is_supported(device_index, message, len(message))
    return code == 0, _status(code, message)


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


# ---------------------------------------------------------------------------------------------
# Fake implementations: shapes and dtypes only, with the same argument checks as the eager path
# so that tracing rejects what eager execution rejects.
# ---------------------------------------------------------------------------------------------
@torch.library.register_fake("flash_mla::get_mla_metadata")
def _get_mla_metadata_fake(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, kernel_id=0):
    _checks.check_metadata_args(cache_seqlens, num_q_tokens_per_head_k, num_heads_k)
    parts = num_sm_parts(_device_index(cache_seqlens.device), num_q_tokens_per_head_k,
                         num_heads_k, kernel_id)
    metadata = cache_seqlens.new_empty((parts, _checks.METADATA_FIELDS))
    splits = cache_seqlens.new_empty((cache_seqlens.shape[0] + 1,))
    return metadata, splits


@torch.library.register_fake("flash_mla::get_mla_metadata_out")
def _get_mla_metadata_out_fake(cache_seqlens, num_q_tokens_per_head_k, num_heads_k,
                               tile_scheduler_metadata, num_splits):
    _checks.check_metadata_args(cache_seqlens, num_q_tokens_per_head_k, num_heads_k)
    _checks.check_metadata_buffers(cache_seqlens, tile_scheduler_metadata, num_splits)


@torch.library.register_fake("flash_mla::fwd_kvcache")
def _fwd_kvcache_fake(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                      num_splits, softmax_scale=None, causal=False, kernel_id=0):
    _checks.check_decode_args(q, k_cache, block_table, cache_seqlens, head_dim_v,
                              tile_scheduler_metadata, num_splits)
    b, s_q, h_q, _ = q.shape
    out = q.new_empty((b, s_q, h_q, head_dim_v))
    lse = q.new_empty((b, h_q, s_q), dtype=torch.float32)
    return out, lse

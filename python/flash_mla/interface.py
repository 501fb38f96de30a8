"""The public Python API, a drop-in for FlashMLA's ``flash_mla`` package.

Two calling styles, as inference engines use FlashMLA today:

* Tensor style (SPEC §4-§5; SGLang copies the tensors into preallocated buffers for CUDA
  graphs)::

      tile_scheduler_metadata, num_splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
      out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512,
                                        tile_scheduler_metadata, num_splits, causal=True)

* Object style (FlashMLA's newer interface, used by vLLM): ``get_mla_metadata()`` returns
  ``(FlashMLASchedMeta(), None)``; the schedule is computed on the first
  ``flash_mla_with_kvcache`` call that receives the object and reused by later calls (every
  layer of a decoding step) while the shapes and the ``cache_seqlens`` tensor stay the same.
  ``flash_mla.object_api.get_mla_metadata`` returns the object with or without arguments.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import torch

from . import _checks, _ops

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache", "is_supported"]


@dataclasses.dataclass
class FlashMLASchedMeta:
    """Scheduling metadata computed on first use (FlashMLA's object-style interface).

    ``tile_scheduler_metadata`` [num_sm_parts, 8] int32 and ``num_splits`` [b + 1] int32 are
    filled by the first ``flash_mla_with_kvcache`` call and recomputed, into the same buffers
    when the sizes allow, when a later call brings another shape, another ``cache_seqlens``
    tensor, an in-place change of it (its version counter; inference tensors have none, and
    there the tensor's identity alone decides), or runs inside a CUDA-graph capture that did not
    compute it (so a graph always holds its own schedule). The lengths themselves are never
    read on the host.
    """

    tile_scheduler_metadata: Optional[torch.Tensor] = None
    num_splits: Optional[torch.Tensor] = None
    have_initialized: bool = False
    config: Optional[tuple] = None
    _lengths_key: Optional[tuple] = dataclasses.field(default=None, repr=False)
    _computed_in_capture: bool = dataclasses.field(default=False, repr=False)

    def schedule(self, q: torch.Tensor, k_cache: torch.Tensor, cache_seqlens: torch.Tensor,
                 kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The metadata for this call, computing it when stale (see the class docstring)."""
        _checks.check_query_and_cache(q, k_cache)
        _checks.check_seqlens(cache_seqlens, q)
        b, s_q, h_q, _ = q.shape
        h_kv = k_cache.shape[2]
        config = (q.device, b, s_q, h_q, h_kv, kernel)
        lengths_key = (cache_seqlens.data_ptr(), _version_or_none(cache_seqlens))
        capturing = torch.cuda.is_current_stream_capturing()
        fresh = (self.have_initialized and config == self.config
                 and lengths_key == self._lengths_key
                 and (self._computed_in_capture or not capturing))
        if fresh:
            return self.tile_scheduler_metadata, self.num_splits

        rows = s_q * h_q // h_kv
        parts = _ops.num_sm_parts(_ops._device_index(q.device), rows, h_kv, kernel)
        reusable = (self.tile_scheduler_metadata is not None
                    and self.tile_scheduler_metadata.device == q.device
                    and self.tile_scheduler_metadata.shape[0] == parts
                    and self.num_splits.shape[0] == b + 1)
        if reusable:
            _ops.ops.get_mla_metadata_out(cache_seqlens, rows, h_kv, self.tile_scheduler_metadata,
                                          self.num_splits)
        else:
            self.tile_scheduler_metadata, self.num_splits = _ops.ops.get_mla_metadata(
                cache_seqlens, rows, h_kv, kernel)
        self.have_initialized = True
        self.config = config
        self._lengths_key = lengths_key
        self._computed_in_capture = capturing
        return self.tile_scheduler_metadata, self.num_splits


def _version_or_none(t: torch.Tensor) -> Optional[int]:
    try:
        return t._version
    except RuntimeError:  # inference tensors carry no version counter
        return None


def _call_op(op, args: tuple, diagnose: Callable[[], None]):
    """Calls a compiled op, which rejects bad input before launching anything but can only raise
    RuntimeError. On a rejection, ``diagnose`` (the Python checks) raises the TypeError or
    ValueError that names the argument. The Python checks cost about 10 µs a call, as much as
    the op itself, so eager calls run them only on that path; while tracing they run up front
    (traced once, so free in the compiled graph)."""
    if torch.compiler.is_compiling():
        diagnose()
        return op(*args)
    try:
        return op(*args)
    except (RuntimeError, TypeError):
        try:
            diagnose()
        except (TypeError, ValueError) as typed:
            raise typed from None  # the op's RuntimeError said the same, less precisely typed
        raise


def _reject_unsupported(**features) -> None:
    """FlashMLA's sparse-attention and FP8 arguments: accepted in the signature, refused here."""
    for name, value in features.items():
        if isinstance(value, bool):
            if value:
                raise ValueError(f"{name}: expected False (not supported by this library yet), "
                                 "got True")
        elif value is not None:
            raise ValueError(f"{name}: expected None (not supported by this library yet), got "
                             f"{type(value).__name__}")


def get_mla_metadata(cache_seqlens: Optional[torch.Tensor] = None,
                     num_q_tokens_per_head_k: Optional[int] = None,
                     num_heads_k: Optional[int] = None,
                     num_heads_q: Optional[int] = None,
                     is_fp8_kvcache: bool = False,
                     topk: Optional[int] = None,
                     *,
                     out: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                     kernel: str = "auto"):
    """Split-KV schedule for a decoding step, computed on the device from ``cache_seqlens``.

    Args:
        cache_seqlens: [b] int32 CUDA tensor of KV lengths (0 allowed).
        num_q_tokens_per_head_k: query rows per KV head, ``s_q * h_q // h_kv``.
        num_heads_k: ``h_kv``.
        num_heads_q, is_fp8_kvcache, topk: FlashMLA's arguments for other modes; only the
            defaults are supported.
        out: optional ``(tile_scheduler_metadata, num_splits)`` buffers to compute into (for
            CUDA-graph replays); they are returned.
        kernel: "auto" or "portable", to size the schedule for that kernel.

    Returns:
        ``(tile_scheduler_metadata [num_sm_parts, 8] int32, num_splits [b + 1] int32)``, reusable
        by every layer of the step. Called with no arguments: ``(FlashMLASchedMeta(), None)``.
    """
    if cache_seqlens is None and num_q_tokens_per_head_k is None and num_heads_k is None:
        return FlashMLASchedMeta(), None
    del num_heads_q  # FlashMLA's sparse mode sizes the schedule with it; the dense one does not
    _reject_unsupported(is_fp8_kvcache=is_fp8_kvcache, topk=topk)
    kernel_id = _ops.kernel_index(kernel)
    if out is None:
        return _call_op(_ops.ops.get_mla_metadata,
                        (cache_seqlens, num_q_tokens_per_head_k, num_heads_k, kernel_id),
                        lambda: _checks.check_metadata_args(cache_seqlens,
                                                            num_q_tokens_per_head_k, num_heads_k))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError("out: expected a (tile_scheduler_metadata, num_splits) pair, got "
                        f"{type(out).__name__}")

    def diagnose():
        _checks.check_metadata_args(cache_seqlens, num_q_tokens_per_head_k, num_heads_k)
        _checks.check_metadata_buffers(cache_seqlens, out[0], out[1])

    _call_op(_ops.ops.get_mla_metadata_out,
             (cache_seqlens, num_q_tokens_per_head_k, num_heads_k, out[0], out[1]), diagnose)
    return out[0], out[1]


def flash_mla_with_kvcache(q: torch.Tensor,
                           k_cache: torch.Tensor,
                           block_table: torch.Tensor,
                           cache_seqlens: torch.Tensor,
                           head_dim_v: int,
                           tile_scheduler_metadata,
                           num_splits: Optional[torch.Tensor] = None,
                           softmax_scale: Optional[float] = None,
                           causal: bool = False,
                           is_fp8_kvcache: bool = False,
                           indices: Optional[torch.Tensor] = None,
                           attn_sink: Optional[torch.Tensor] = None,
                           extra_k_cache: Optional[torch.Tensor] = None,
                           extra_indices_in_kvcache: Optional[torch.Tensor] = None,
                           topk_length: Optional[torch.Tensor] = None,
                           extra_topk_length: Optional[torch.Tensor] = None,
                           *,
                           kernel: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """MLA decoding attention over a paged KV cache (SPEC §1).

    Args:
        q: [b, s_q, h_q, 576] bf16 or fp16; last dimension contiguous, other strides free
            (multiples of 8 elements).
        k_cache: [num_blocks, 64, h_kv, 576], q's dtype; V is its first 512 channels.
        block_table: [b, max_blocks_per_seq] int32; entries past a sequence's last block are
            never read.
        cache_seqlens: [b] int32 KV lengths; 0 allowed.
        head_dim_v: 512.
        tile_scheduler_metadata, num_splits: from ``get_mla_metadata`` for this batch (tensor
            style), or a ``FlashMLASchedMeta`` with ``num_splits=None`` (object style).
        softmax_scale: defaults to 1 / sqrt(576).
        causal: query token i sees keys j <= L - s_q + i (matters for s_q > 1).
        is_fp8_kvcache ... extra_topk_length: FlashMLA's FP8 and sparse arguments; only the
            defaults are supported.
        kernel: "auto" (the fastest kernel for this GPU) or "portable".

    Returns:
        ``(out [b, s_q, h_q, 512] in q's dtype, lse [b, h_q, s_q] fp32, natural log)``; a row
        with no visible key gets out = 0 and lse = +inf. Both are new tensors.
    """
    _reject_unsupported(is_fp8_kvcache=is_fp8_kvcache, indices=indices, attn_sink=attn_sink,
                        extra_k_cache=extra_k_cache,
                        extra_indices_in_kvcache=extra_indices_in_kvcache,
                        topk_length=topk_length, extra_topk_length=extra_topk_length)
    kernel_id = _ops.kernel_index(kernel)
    if isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        if num_splits is not None:
            raise ValueError("num_splits: expected None with a FlashMLASchedMeta (it holds its "
                             f"own), got {type(num_splits).__name__}")
        tile_scheduler_metadata, num_splits = tile_scheduler_metadata.schedule(
            q, k_cache, cache_seqlens, kernel_id)
    if softmax_scale is not None:
        if not isinstance(softmax_scale, (int, float)) or isinstance(softmax_scale, bool):
            raise TypeError(f"softmax_scale: expected a float or None, got "
                            f"{type(softmax_scale).__name__}")
        if not math.isfinite(softmax_scale):
            raise ValueError(f"softmax_scale: expected a finite value, got {softmax_scale}")
        softmax_scale = float(softmax_scale)
    return _call_op(_ops.ops.fwd_kvcache,
                    (q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                     num_splits, softmax_scale, bool(causal), kernel_id),
                    lambda: _checks.check_decode_args(q, k_cache, block_table, cache_seqlens,
                                                      head_dim_v, tile_scheduler_metadata,
                                                      num_splits))


def is_supported(device=None) -> tuple[bool, str]:
    """Whether this library can run on ``device`` (default: the current CUDA device), and why."""
    if not torch.cuda.is_available():
        return False, "no CUDA device: torch.cuda.is_available() is False"
    try:
        dev = torch.device("cuda", torch.cuda.current_device()) if device is None \
            else torch.device(device)
    except (RuntimeError, TypeError) as e:
        return False, f"device: expected a CUDA device, got {device!r} ({e})"
    if dev.type != "cuda":
        return False, f"device: expected a CUDA device, got {dev}"
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    ok, reason = _ops.is_supported_index(index)
    if not ok:
        return False, reason
    major, minor = torch.cuda.get_device_capability(index)
    kernels = ["portable"] + (["hopper"] if major == 9 else [])  # hopper: sm_90 only
    name = torch.cuda.get_device_name(index)
    return True, f"{name} (sm_{major}{minor}): kernels {', '.join(kernels)}"

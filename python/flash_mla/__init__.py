"""flash_mla: MLA decoding attention over a paged KV cache, a drop-in for FlashMLA.

    from flash_mla import get_mla_metadata, flash_mla_with_kvcache
    tile_scheduler_metadata, num_splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
    out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512,
                                      tile_scheduler_metadata, num_splits, causal=True)

The ops are registered with the PyTorch dispatcher as ``torch.ops.flash_mla.get_mla_metadata``,
``get_mla_metadata_out`` and ``fwd_kvcache``, with fake implementations for torch.compile.
``flash_mla.object_api`` holds FlashMLA's newer object-style ``get_mla_metadata``.
"""

from ._ops import KERNELS
from .interface import FlashMLASchedMeta, flash_mla_with_kvcache, get_mla_metadata, is_supported

__version__ = "0.1.0"
__all__ = ["FlashMLASchedMeta", "KERNELS", "flash_mla_with_kvcache", "get_mla_metadata",
           "is_supported"]

"""FlashMLA's newer, object-style interface (the one vLLM calls).

    from flash_mla.object_api import get_mla_metadata, flash_mla_with_kvcache
    sched_meta, _ = get_mla_metadata()          # arguments, if given, are ignored
    for layer in layers:
        out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512,
                                          sched_meta, None, causal=True)

The schedule is computed by the first call and reused while the shapes and the cache_seqlens
tensor stay the same (``FlashMLASchedMeta``). Make a new object for each decoding step.
"""

from .interface import FlashMLASchedMeta, flash_mla_with_kvcache, is_supported

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache", "is_supported"]


def get_mla_metadata(*args, **kwargs) -> tuple[FlashMLASchedMeta, None]:
    """An empty ``FlashMLASchedMeta`` (filled on first use) and ``None``, whatever the arguments
    (they are accepted for compatibility with callers of the tensor-style function)."""
    del args, kwargs
    return FlashMLASchedMeta(), None

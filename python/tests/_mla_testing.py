"""Shared helpers of the Python tests: the skip rules, seeded inputs and the tolerance checks.

Importing this module skips the importing test module, with the reason printed by `pytest -rs`,
when PyTorch, a CUDA device or the installed flash_mla package is missing (CI has none of them).

Tolerances (the same as tests/gpu/gpu_test_utils.h, which derives them), against float64:
  out: relative Frobenius error <= 8e-3 (bf16) / 2e-3 (fp16), and cosine distance <= 1e-5;
  lse: max |lse - ref| / max(1, |ref|) <= 1e-5, and +inf exactly where the reference is +inf.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the Python tests need it)")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device: torch.cuda.is_available() is False", allow_module_level=True)
flash_mla = pytest.importorskip(
    "flash_mla", reason="flash_mla is not installed (pip install --no-build-isolation .)")
from flash_mla.reference import mla_decode_reference  # noqa: E402

PAGE = 64
HEAD_DIM = 576
HEAD_DIM_V = 512
MAX_REL_FROBENIUS = {torch.bfloat16: 8e-3, torch.float16: 2e-3}
MAX_COSINE_DISTANCE = 1e-5
MAX_LSE_REL_ERROR = 1e-5
GARBAGE_BLOCK_IDS = (-1, 2**30, -(2**31))


class Inputs:
    """q [b, s_q, h_q, 576], a paged k_cache with shuffled blocks, NaN in every byte past each
    sequence's end, and garbage block ids in the unused block-table columns."""

    def __init__(self, lengths, s_q=1, h_q=16, h_kv=1, dtype=torch.bfloat16, seed=0,
                 capacity_blocks=None, spare_blocks=3):
        self.lengths = list(lengths)
        self.b, self.s_q, self.h_q, self.h_kv, self.dtype = len(lengths), s_q, h_q, h_kv, dtype
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        need = max([math.ceil(n / PAGE) for n in self.lengths] + [1])
        self.max_blocks = max(need, capacity_blocks or 0)
        self.num_blocks = self.b * self.max_blocks + spare_blocks
        self.k_cache = torch.randn((self.num_blocks, PAGE, h_kv, HEAD_DIM), generator=self.gen,
                                   dtype=torch.float32).to(dtype).cuda()
        self.q = torch.randn((self.b, s_q, h_q, HEAD_DIM), generator=self.gen,
                             dtype=torch.float32).to(dtype).cuda()
        self.block_table = torch.empty((self.b, self.max_blocks), dtype=torch.int32, device="cuda")
        self.cache_seqlens = torch.empty((self.b,), dtype=torch.int32, device="cuda")
        self.set_lengths(self.lengths)

    def set_lengths(self, lengths):
        """New lengths (within the block capacity) and a new shuffled block table, in place."""
        assert len(lengths) == self.b and max(lengths) <= self.max_blocks * PAGE
        self.lengths = list(lengths)
        perm = torch.randperm(self.num_blocks, generator=self.gen).to(torch.int32)
        table = torch.empty((self.b, self.max_blocks), dtype=torch.int32)
        used = torch.zeros(self.num_blocks, dtype=torch.bool)
        nxt = 0
        for i, n in enumerate(self.lengths):
            blocks = math.ceil(n / PAGE)
            table[i, :blocks] = perm[nxt:nxt + blocks]
            used[perm[nxt:nxt + blocks].long()] = True
            nxt += blocks
            for j in range(blocks, self.max_blocks):
                table[i, j] = GARBAGE_BLOCK_IDS[(i + j) % len(GARBAGE_BLOCK_IDS)]
        self.block_table.copy_(table)
        self.cache_seqlens.copy_(torch.tensor(self.lengths, dtype=torch.int32))
        self._poison(table, used)

    def _poison(self, table, used):
        fresh = torch.randn(self.k_cache.shape, generator=self.gen, dtype=torch.float32)
        fresh[~used] = math.nan
        for i, n in enumerate(self.lengths):
            if n % PAGE:
                fresh[table[i, n // PAGE].item(), n % PAGE:] = math.nan
        self.k_cache.copy_(fresh.to(self.dtype))

    @property
    def rows_per_kv_head(self):
        return self.s_q * self.h_q // self.h_kv

    def metadata(self, **kwargs):
        return flash_mla.get_mla_metadata(self.cache_seqlens, self.rows_per_kv_head, self.h_kv,
                                          **kwargs)

    def decode_args(self, metadata=None):
        meta, splits = metadata if metadata is not None else self.metadata()
        return (self.q, self.k_cache, self.block_table, self.cache_seqlens, HEAD_DIM_V, meta,
                splits)

    def reference(self, causal, softmax_scale=None):
        return mla_decode_reference(self.q, self.k_cache, self.block_table, self.cache_seqlens,
                                    HEAD_DIM_V, softmax_scale, causal)


def assert_matches_reference(out, lse, ref_out, ref_lse, dtype):
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert out.shape == ref_out.shape and lse.shape == ref_lse.shape
    assert not torch.isnan(out).any(), "out holds NaN"
    o = out.double()
    ref_norm = ref_out.norm().item()
    if ref_norm == 0.0:
        assert o.abs().max().item() == 0.0
    else:
        rel = (o - ref_out).norm().item() / ref_norm
        cos = 1.0 - (o * ref_out).sum().item() / (o.norm().item() * ref_norm)
        assert rel <= MAX_REL_FROBENIUS[dtype], f"relative Frobenius error {rel:.3e}"
        assert cos <= MAX_COSINE_DISTANCE, f"cosine distance {cos:.3e}"
    empty = torch.isinf(ref_lse)
    assert torch.equal(torch.isposinf(lse), empty), "lse is +inf exactly for rows with no key"
    if (~empty).any():
        err = ((lse.double() - ref_lse).abs() / ref_lse.abs().clamp_min(1.0))[~empty].max().item()
        assert err <= MAX_LSE_REL_ERROR, f"lse relative error {err:.3e}"
    # Rows with no visible key: out exactly 0.
    rows_empty = empty.permute(0, 2, 1)  # [b, s_q, h_q]
    if rows_empty.any():
        assert out[rows_empty].abs().max().item() == 0.0

"""flash_mla_with_kvcache against the float64 reference over a grid of shapes (SPEC §1, §3)."""

import pytest

from _mla_testing import Inputs, assert_matches_reference, flash_mla, torch

DTYPES = [torch.bfloat16, torch.float16]

# (lengths, s_q, h_q, h_kv): zero and one-token sequences, a partial last page, split-heavy long
# sequences, few heads, MTP up to s_q = 8, grouped KV heads, and the compute-bound 128-256 rows.
SHAPES = [
    ([1], 1, 16, 1),
    ([0], 1, 16, 1),
    ([0, 1, 65, 4097], 1, 16, 1),
    ([20000], 1, 16, 1),
    ([3000, 17, 640, 1], 2, 16, 1),
    ([777, 2048, 5], 2, 32, 1),
    ([1500, 64, 4], 4, 16, 1),
    ([2500, 8, 7, 300], 8, 16, 1),
    ([1024, 333], 1, 64, 1),
    ([2100, 0, 129], 1, 128, 1),
    ([1800, 900], 2, 128, 1),
    ([500, 1200], 1, 8, 1),
    ([1, 2, 3], 1, 1, 1),
    ([700, 1300], 1, 32, 2),
    ([400, 1000, 64], 2, 16, 4),
]


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"L{s[0]}-sq{s[1]}-hq{s[2]}-hkv{s[3]}"
                                               for s in SHAPES])
def test_matches_float64_reference(shape, dtype, causal):
    lengths, s_q, h_q, h_kv = shape
    x = Inputs(lengths, s_q=s_q, h_q=h_q, h_kv=h_kv, dtype=dtype, seed=len(lengths) * 1000 + h_q)
    out, lse = flash_mla.flash_mla_with_kvcache(*x.decode_args(), causal=causal)
    assert_matches_reference(out, lse, *x.reference(causal), dtype)


@pytest.mark.parametrize("kernel", flash_mla.KERNELS)
def test_every_kernel_and_custom_scale(kernel):
    x = Inputs([1234, 99, 4096], s_q=2, h_q=32, seed=7)
    out, lse = flash_mla.flash_mla_with_kvcache(*x.decode_args(x.metadata(kernel=kernel)),
                                                softmax_scale=0.07, causal=True, kernel=kernel)
    assert_matches_reference(out, lse, *x.reference(True, softmax_scale=0.07), torch.bfloat16)


def test_strided_query_and_cache():
    # q and k_cache as views into wider buffers: row strides that are multiples of 8 elements
    # but not the dense ones.
    x = Inputs([900, 2000], s_q=2, h_q=16, seed=3)
    q_wide = torch.full((2, 2, 16, 640), float("nan"), dtype=x.dtype, device="cuda")
    q_wide[..., :576] = x.q
    k_wide = torch.full((x.num_blocks, 64, 1, 600), float("nan"), dtype=x.dtype, device="cuda")
    k_wide[..., :576] = x.k_cache
    q, k = q_wide[..., :576], k_wide[..., :576]
    assert not q.is_contiguous() and not k.is_contiguous()
    meta, splits = x.metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(q, k, x.block_table, x.cache_seqlens, 512, meta,
                                                splits, causal=True)
    assert_matches_reference(out, lse, *x.reference(True), x.dtype)


def test_bitwise_reproducible():
    x = Inputs([5000, 3, 12000, 640], s_q=2, h_q=32, seed=11)
    args = x.decode_args()
    first = flash_mla.flash_mla_with_kvcache(*args, causal=True)
    for _ in range(3):
        again = flash_mla.flash_mla_with_kvcache(*args, causal=True)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_outputs_are_new_tensors():
    x = Inputs([100, 200], seed=5)
    args = x.decode_args()
    out, lse = flash_mla.flash_mla_with_kvcache(*args)
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    for result in (out, lse):
        assert all(result.untyped_storage().data_ptr() != t.untyped_storage().data_ptr()
                   for t in inputs)
    meta, splits = x.metadata()
    assert meta.data_ptr() != x.cache_seqlens.data_ptr()
    assert splits.data_ptr() != x.cache_seqlens.data_ptr()


def test_metadata_shapes():
    x = Inputs([10, 20, 30], s_q=2, h_q=64, seed=1)
    meta, splits = x.metadata()
    assert meta.dtype == torch.int32 and splits.dtype == torch.int32
    assert meta.dim() == 2 and meta.shape[1] == 8 and meta.shape[0] >= 1
    assert splits.shape == (x.b + 1,)
    again = x.metadata()
    assert torch.equal(meta, again[0]) and torch.equal(splits, again[1])


@pytest.mark.parametrize("device", [None, "cuda", "cuda:0", torch.device("cuda", 0)])
def test_is_supported_on_this_gpu(device):
    ok, reason = flash_mla.is_supported(device)
    assert ok, reason
    assert "sm_" in reason


def test_is_supported_rejects_cpu():
    ok, reason = flash_mla.is_supported("cpu")
    assert not ok and "device" in reason and "cpu" in reason

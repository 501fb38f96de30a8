"""Every class of bad input is rejected with an exception naming the argument (SPEC §3).

Through the Python API: TypeError for a wrong type or dtype, ValueError for a wrong device,
rank, shape, stride or value. Through the raw op (torch.ops.flash_mla.*), which only C++
checks guard: RuntimeError with a message naming the same argument.
"""

import re

import pytest

from _mla_testing import Inputs, flash_mla, torch

ops = torch.ops.flash_mla


def _base():
    x = Inputs([300, 70], s_q=2, h_q=16, h_kv=1, seed=61)
    meta, splits = x.metadata()
    return dict(q=x.q, k_cache=x.k_cache, block_table=x.block_table,
                cache_seqlens=x.cache_seqlens, head_dim_v=512, tile_scheduler_metadata=meta,
                num_splits=splits)


def _strided_rows(t, pad):
    """t with its last dimension padded by `pad` elements: row strides no longer multiples of 8
    when pad is odd."""
    wide = torch.zeros((*t.shape[:-1], t.shape[-1] + pad), dtype=t.dtype, device=t.device)
    wide[..., :t.shape[-1]] = t
    return wide[..., :t.shape[-1]]


# (id, argument named in the message, Python exception class, change to the base arguments)
DECODE_CASES = [
    ("q-dtype", "q", TypeError, lambda a: {"q": a["q"].float()}),
    ("q-int", "q", TypeError, lambda a: {"q": a["q"].to(torch.int32)}),
    ("q-not-tensor", "q", TypeError, lambda a: {"q": a["q"].tolist()}),
    ("k-dtype-mismatch", "k_cache", TypeError, lambda a: {"k_cache": a["k_cache"].half()}),
    ("block-table-int64", "block_table", TypeError,
     lambda a: {"block_table": a["block_table"].long()}),
    ("seqlens-int64", "cache_seqlens", TypeError,
     lambda a: {"cache_seqlens": a["cache_seqlens"].long()}),
    ("metadata-int64", "tile_scheduler_metadata", TypeError,
     lambda a: {"tile_scheduler_metadata": a["tile_scheduler_metadata"].long()}),
    ("q-on-cpu", "q", ValueError, lambda a: {"q": a["q"].cpu()}),
    ("k-on-cpu", "k_cache", ValueError, lambda a: {"k_cache": a["k_cache"].cpu()}),
    ("block-table-on-cpu", "block_table", ValueError,
     lambda a: {"block_table": a["block_table"].cpu()}),
    ("seqlens-on-cpu", "cache_seqlens", ValueError,
     lambda a: {"cache_seqlens": a["cache_seqlens"].cpu()}),
    ("q-rank", "q", ValueError, lambda a: {"q": a["q"][0]}),
    ("k-rank", "k_cache", ValueError, lambda a: {"k_cache": a["k_cache"][..., 0, :]}),
    ("block-table-rank", "block_table", ValueError,
     lambda a: {"block_table": a["block_table"].flatten()}),
    ("seqlens-rank", "cache_seqlens", ValueError,
     lambda a: {"cache_seqlens": a["cache_seqlens"][:, None]}),
    ("q-head-dim", "q", ValueError, lambda a: {"q": a["q"][..., :512].contiguous()}),
    ("k-head-dim", "k_cache", ValueError,
     lambda a: {"k_cache": a["k_cache"][..., :512].contiguous()}),
    ("head-dim-v", "head_dim_v", ValueError, lambda a: {"head_dim_v": 576}),
    ("page-size-32", "k_cache", ValueError,
     lambda a: {"k_cache": a["k_cache"].reshape(-1, 32, *a["k_cache"].shape[2:])}),
    ("h_q-not-multiple-of-h_kv", "k_cache", ValueError,
     lambda a: {"k_cache": a["k_cache"].expand(-1, -1, 3, -1).contiguous()}),
    ("block-table-batch", "block_table", ValueError,
     lambda a: {"block_table": a["block_table"][:1]}),
    ("seqlens-batch", "cache_seqlens", ValueError,
     lambda a: {"cache_seqlens": a["cache_seqlens"][:1]}),
    ("q-last-stride", "q", ValueError,
     lambda a: {"q": torch.repeat_interleave(a["q"], 2, dim=-1)[..., ::2]}),
    ("q-row-stride", "q", ValueError, lambda a: {"q": _strided_rows(a["q"], 3)}),
    ("k-row-stride", "k_cache", ValueError, lambda a: {"k_cache": _strided_rows(a["k_cache"], 5)}),
    ("metadata-other-batch", "num_splits", ValueError,
     lambda a: {"num_splits": torch.zeros(5, dtype=torch.int32, device="cuda")}),
    ("metadata-fields", "tile_scheduler_metadata", ValueError,
     lambda a: {"tile_scheduler_metadata": a["tile_scheduler_metadata"][:, :4].contiguous()}),
    ("metadata-strided", "tile_scheduler_metadata", ValueError,
     lambda a: {"tile_scheduler_metadata": a["tile_scheduler_metadata"].t().contiguous().t()}),
]

# Arguments only the Python API has: checked there alone.
PYTHON_ONLY_CASES = [
    ("softmax-scale-nan", "softmax_scale", ValueError, {"softmax_scale": float("nan")}),
    ("softmax-scale-type", "softmax_scale", TypeError, {"softmax_scale": "0.1"}),
    ("fp8", "is_fp8_kvcache", ValueError, {"is_fp8_kvcache": True}),
    ("sparse-indices", "indices", ValueError,
     {"indices": torch.zeros(1, dtype=torch.int32)}),
    ("attn-sink", "attn_sink", ValueError, {"attn_sink": torch.zeros(1)}),
    ("kernel-name", "kernel", ValueError, {"kernel": "fastest"}),
]


# The C++ library names the fields of its DecodeProblem / DecodeArgs structs, which for some
# arguments differ from the Python name.
LIBRARY_FIELDS = {
    "q": ["q_batch_stride", "q_seq_stride", "q_head_stride"],
    "k_cache": ["k_block_stride", "k_token_stride", "k_head_stride", "page_block_size",
                "num_heads_q % num_heads_kv"],
}


def _names_argument(message, arg):
    names = [arg] + LIBRARY_FIELDS.get(arg, [])
    return any(re.search(rf"(^|\s){re.escape(n)}: expected", message) for n in names)


@pytest.mark.parametrize("case", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_decode_python_api_raises_typed_error(case):
    _, arg, exc, change = case
    args = _base()
    args.update(change(args))
    with pytest.raises(exc) as info:
        flash_mla.flash_mla_with_kvcache(**args)
    assert _names_argument(str(info.value), arg), str(info.value)
    assert "got" in str(info.value)


@pytest.mark.parametrize("case", [c for c in DECODE_CASES if c[0] != "q-not-tensor"],
                         ids=[c[0] for c in DECODE_CASES if c[0] != "q-not-tensor"])
def test_decode_op_raises_runtime_error(case):
    _, arg, _, change = case
    args = _base()
    args.update(change(args))
    with pytest.raises(RuntimeError) as info:
        ops.fwd_kvcache(args["q"], args["k_cache"], args["block_table"], args["cache_seqlens"],
                        args["head_dim_v"], args["tile_scheduler_metadata"], args["num_splits"])
    assert _names_argument(str(info.value), arg), str(info.value)
    torch.cuda.synchronize()  # nothing was launched that could fail later


@pytest.mark.parametrize("case", PYTHON_ONLY_CASES, ids=[c[0] for c in PYTHON_ONLY_CASES])
def test_decode_python_only_arguments(case):
    _, arg, exc, extra = case
    with pytest.raises(exc) as info:
        flash_mla.flash_mla_with_kvcache(**_base(), **extra)
    assert _names_argument(str(info.value), arg), str(info.value)


METADATA_CASES = [
    ("seqlens-float", "cache_seqlens", TypeError,
     lambda s: (s.float(), 16, 1)),
    ("seqlens-cpu", "cache_seqlens", ValueError, lambda s: (s.cpu(), 16, 1)),
    ("seqlens-rank", "cache_seqlens", ValueError, lambda s: (s[:, None], 16, 1)),
    ("seqlens-empty", "cache_seqlens", ValueError, lambda s: (s[:0], 16, 1)),
    ("rows-zero", "num_q_tokens_per_head_k", ValueError, lambda s: (s, 0, 1)),
    ("heads-zero", "num_heads_k", ValueError, lambda s: (s, 16, 0)),
]


@pytest.mark.parametrize("case", METADATA_CASES, ids=[c[0] for c in METADATA_CASES])
def test_metadata_errors(case):
    _, arg, exc, make = case
    seqlens = torch.tensor([10, 20], dtype=torch.int32, device="cuda")
    args = make(seqlens)
    with pytest.raises(exc) as info:
        flash_mla.get_mla_metadata(*args)
    assert _names_argument(str(info.value), arg), str(info.value)
    with pytest.raises(RuntimeError) as info:
        ops.get_mla_metadata(*args)
    assert _names_argument(str(info.value), arg), str(info.value)


def test_metadata_out_buffers_checked():
    seqlens = torch.tensor([10, 20], dtype=torch.int32, device="cuda")
    meta, splits = flash_mla.get_mla_metadata(seqlens, 16, 1)
    bad = torch.zeros(7, dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="num_splits: expected size 3"):
        flash_mla.get_mla_metadata(seqlens, 16, 1, out=(meta, bad))
    with pytest.raises(RuntimeError, match="num_splits: expected size 3"):
        ops.get_mla_metadata_out(seqlens, 16, 1, meta, bad)
    with pytest.raises(TypeError, match="out: expected"):
        flash_mla.get_mla_metadata(seqlens, 16, 1, out=meta)

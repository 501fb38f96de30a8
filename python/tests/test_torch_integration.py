"""The ops inside PyTorch: opcheck, CUDA graphs, torch.compile, streams."""

import pytest

from _mla_testing import Inputs, assert_matches_reference, flash_mla, torch
from flash_mla import object_api

ops = torch.ops.flash_mla


# ---------------------------------------------------------------------------------------------
# torch.library.opcheck: schema (aliasing, mutation), fake implementations against the real
# ones, and AOT dispatch with dynamic shapes.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_opcheck_fwd_kvcache(causal):
    x = Inputs([300, 0, 1500], s_q=2, h_q=16, seed=21)
    meta, splits = x.metadata()
    torch.library.opcheck(ops.fwd_kvcache.default,
                          (x.q, x.k_cache, x.block_table, x.cache_seqlens, 512, meta, splits),
                          {"softmax_scale": None, "causal": causal, "kernel_id": 0})


def test_opcheck_metadata():
    x = Inputs([300, 0, 1500], s_q=2, h_q=16, seed=22)
    torch.library.opcheck(ops.get_mla_metadata.default, (x.cache_seqlens, 32, 1), {"kernel_id": 0})
    meta, splits = x.metadata()
    torch.library.opcheck(ops.get_mla_metadata_out.default,
                          (x.cache_seqlens, 32, 1, torch.empty_like(meta),
                           torch.empty_like(splits)))


# ---------------------------------------------------------------------------------------------
# CUDA graphs: capture once, then change cache_seqlens, block_table and q in place and replay.
# ---------------------------------------------------------------------------------------------
def _warm_up(fn):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)


def _replay_with_new_inputs(x, graph, new_lengths, seed):
    x.set_lengths(new_lengths)
    x.q.copy_(torch.randn(x.q.shape, generator=torch.Generator().manual_seed(seed)).to(x.dtype))
    graph.replay()
    torch.cuda.synchronize()


def test_cuda_graph_recomputes_metadata_in_place():
    x = Inputs([1000, 3000, 64, 0], s_q=2, h_q=32, seed=31, capacity_blocks=200)
    meta, splits = x.metadata()
    results = {}

    def step():
        flash_mla.get_mla_metadata(x.cache_seqlens, x.rows_per_kv_head, x.h_kv,
                                   out=(meta, splits))
        results["out"], results["lse"] = flash_mla.flash_mla_with_kvcache(
            *x.decode_args((meta, splits)), causal=True)

    _warm_up(step)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for i, lengths in enumerate(([12800, 1, 5, 7000], [0, 0, 0, 1], [4000, 4000, 4000, 4000])):
        _replay_with_new_inputs(x, graph, lengths, seed=100 + i)
        assert_matches_reference(results["out"], results["lse"], *x.reference(True), x.dtype)


def test_cuda_graph_with_metadata_copied_into_buffers():
    # SGLang's pattern: the metadata is computed outside the graph and copied into the
    # buffers the graph reads.
    x = Inputs([1000, 3000, 64], s_q=1, h_q=16, seed=32, capacity_blocks=100)
    meta, splits = x.metadata()
    results = {}

    def step():
        results["out"], results["lse"] = flash_mla.flash_mla_with_kvcache(
            *x.decode_args((meta, splits)), causal=False)

    _warm_up(step)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    x.set_lengths([6000, 1, 2500])
    new_meta, new_splits = x.metadata()
    meta.copy_(new_meta)
    splits.copy_(new_splits)
    graph.replay()
    torch.cuda.synchronize()
    assert_matches_reference(results["out"], results["lse"], *x.reference(False), x.dtype)


def test_cuda_graph_object_style_captures_its_schedule():
    # The object was filled before the capture; the capture must still record the metadata
    # kernel, so that replays follow the new lengths.
    x = Inputs([1000, 3000], s_q=2, h_q=16, seed=33, capacity_blocks=120)
    sched, _ = object_api.get_mla_metadata()
    results = {}

    def step():
        results["out"], results["lse"] = object_api.flash_mla_with_kvcache(
            x.q, x.k_cache, x.block_table, x.cache_seqlens, 512, sched, None, causal=True)

    _warm_up(step)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    _replay_with_new_inputs(x, graph, [7000, 10], seed=5)
    assert_matches_reference(results["out"], results["lse"], *x.reference(True), x.dtype)


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph(dynamic):
    torch._dynamo.reset()
    x = Inputs([2000, 77, 640], s_q=2, h_q=16, seed=41)

    def step(q, k_cache, block_table, cache_seqlens):
        meta, splits = flash_mla.get_mla_metadata(cache_seqlens, 32, 1)
        out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512,
                                                    meta, splits, causal=True)
        return out.float() * 2.0, lse + 1.0

    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic)
    got = compiled(x.q, x.k_cache, x.block_table, x.cache_seqlens)
    want = step(x.q, x.k_cache, x.block_table, x.cache_seqlens)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    ref_out, ref_lse = x.reference(True)
    assert_matches_reference((got[0] / 2).to(x.dtype), got[1] - 1.0, ref_out, ref_lse, x.dtype)


def test_torch_compile_rejects_bad_input_while_tracing():
    torch._dynamo.reset()
    x = Inputs([100], seed=42)
    meta, splits = x.metadata()

    @torch.compile(fullgraph=True)
    def step(q):
        return flash_mla.flash_mla_with_kvcache(q, x.k_cache, x.block_table, x.cache_seqlens,
                                                512, meta, splits)

    with pytest.raises(Exception) as info:
        step(x.q.float())
    # Dynamo may wrap the exception raised while tracing; the message must survive somewhere.
    messages, error = [], info.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("q: expected dtype" in m for m in messages), messages


# ---------------------------------------------------------------------------------------------
# Streams: the kernels run on PyTorch's current stream.
# ---------------------------------------------------------------------------------------------
def test_runs_on_the_current_stream():
    x = Inputs([3000, 500], s_q=1, h_q=16, seed=51)
    meta, splits = x.metadata()
    new_q = torch.randn(x.q.shape, generator=torch.Generator().manual_seed(9)).to(x.dtype).cuda()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        # The copy waits behind a long sleep on `stream`; a decode launched on any other stream
        # would read the old q.
        torch.cuda._sleep(100_000_000)
        x.q.copy_(new_q)
        out, lse = flash_mla.flash_mla_with_kvcache(*x.decode_args((meta, splits)))
    stream.synchronize()
    assert_matches_reference(out, lse, *x.reference(False), x.dtype)


def test_metadata_runs_on_the_current_stream():
    x = Inputs([100, 200], s_q=1, h_q=16, seed=52, capacity_blocks=100)
    meta, splits = x.metadata()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(100_000_000)
        x.cache_seqlens.copy_(torch.tensor([6000, 1], dtype=torch.int32).cuda())
        new_meta, new_splits = x.metadata()
    stream.synchronize()
    x.lengths = [6000, 1]
    want_meta, want_splits = x.metadata()
    assert torch.equal(new_meta, want_meta) and torch.equal(new_splits, want_splits)

"""FlashMLA's object-style interface: the schedule is computed on first use and reused."""

import pytest

from _mla_testing import Inputs, assert_matches_reference, flash_mla, torch
from flash_mla import object_api


def _call(x, sched, causal=True):
    return object_api.flash_mla_with_kvcache(x.q, x.k_cache, x.block_table, x.cache_seqlens, 512,
                                             sched, None, causal=causal)


@pytest.mark.parametrize("args", [(), ("ignored", 1, 2)], ids=["no-args", "with-args"])
def test_get_mla_metadata_returns_an_empty_object(args):
    sched, second = object_api.get_mla_metadata(*args)
    assert isinstance(sched, flash_mla.FlashMLASchedMeta) and second is None
    assert not sched.have_initialized and sched.tile_scheduler_metadata is None


def test_top_level_without_arguments_returns_the_object():
    sched, second = flash_mla.get_mla_metadata()
    assert isinstance(sched, flash_mla.FlashMLASchedMeta) and second is None


def test_schedule_computed_once_and_reused_by_every_layer():
    x = Inputs([2000, 30, 900], s_q=2, h_q=16, seed=71)
    sched, _ = object_api.get_mla_metadata()
    out, lse = _call(x, sched)
    meta, splits = sched.tile_scheduler_metadata, sched.num_splits
    want_meta, want_splits = x.metadata()
    assert torch.equal(meta, want_meta) and torch.equal(splits, want_splits)
    for _ in range(3):  # further layers
        again = _call(x, sched)
        assert sched.tile_scheduler_metadata is meta and sched.num_splits is splits
        assert torch.equal(again[0], out) and torch.equal(again[1], lse)
    assert_matches_reference(out, lse, *x.reference(True), x.dtype)


def test_in_place_length_change_recomputes_into_the_same_buffers():
    x = Inputs([2000, 30, 900], s_q=1, h_q=32, seed=72, capacity_blocks=100)
    sched, _ = object_api.get_mla_metadata()
    _call(x, sched)
    meta_ptr = sched.tile_scheduler_metadata.data_ptr()
    x.set_lengths([6000, 4000, 1])
    out, lse = _call(x, sched)
    assert sched.tile_scheduler_metadata.data_ptr() == meta_ptr
    assert torch.equal(sched.tile_scheduler_metadata, x.metadata()[0])
    assert_matches_reference(out, lse, *x.reference(True), x.dtype)


def test_new_shape_recomputes():
    x = Inputs([1000, 500], s_q=1, h_q=16, seed=73)
    sched, _ = object_api.get_mla_metadata()
    _call(x, sched)
    y = Inputs([1000, 500, 7, 3000], s_q=2, h_q=64, seed=74)
    out, lse = _call(y, sched)
    assert sched.num_splits.shape == (4 + 1,)
    assert_matches_reference(out, lse, *y.reference(True), y.dtype)


def test_inference_mode_tensors():
    # Inference tensors have no version counter: the tensor's identity decides reuse.
    with torch.inference_mode():
        x = Inputs([1500, 60], s_q=2, h_q=16, seed=75)
        sched, _ = object_api.get_mla_metadata()
        out, lse = _call(x, sched)
        again = _call(x, sched)
    assert torch.equal(out, again[0])
    assert_matches_reference(out, lse, *x.reference(True), x.dtype)


def test_num_splits_must_be_none_with_the_object():
    x = Inputs([100], seed=76)
    sched, _ = object_api.get_mla_metadata()
    with pytest.raises(ValueError, match="num_splits: expected None"):
        object_api.flash_mla_with_kvcache(x.q, x.k_cache, x.block_table, x.cache_seqlens, 512,
                                          sched, x.metadata()[1])

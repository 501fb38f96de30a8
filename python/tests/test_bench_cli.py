"""The parts of flash_mla/bench.py that need no GPU: cases, counting, error metrics, --plot-from.

bench.py is loaded by file path, not as `flash_mla.bench`, so that the package's __init__ (which
loads the compiled ops) is not imported: these tests run on a machine without the build.
"""
import importlib.util
import itertools
import json
import pathlib
import sys

import pytest

BENCH_PATH = pathlib.Path(__file__).resolve().parents[1] / "flash_mla" / "bench.py"
CPP_RESULTS = pathlib.Path(__file__).resolve().parents[2] / "bench" / "results" / "nvidia-h200.json"
# Per-row keys of the C++ benchmark's JSON (bench/report.cpp); ours must carry them all.
CPP_ROW_KEYS = {"kernel", "dtype", "b", "s_q", "h_q", "h_kv", "s_k", "varlen", "causal", "us",
                "meta_us", "tflops", "gbs", "pct_copy", "pct_gemm", "max_rel_err"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("flash_mla_bench_under_test", BENCH_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_import_needs_neither_flash_mla_nor_torch(bench):
    source = BENCH_PATH.read_text()
    top_level_imports = [line for line in source.splitlines() if line.startswith("import ")
                         or line.startswith("from ")]
    assert not any("torch" in line or "flash_mla" in line or "matplotlib" in line
                   for line in top_level_imports)


def test_standard_sweep_is_spec_section_6(bench):
    cases = bench.sweep_cases()
    assert len(cases) == 4 * 4 * 2 * 2 * 2 == 128
    assert len(set(cases)) == 128
    assert all(c.b == 128 and c.h_kv == 1 and c.causal and c.long == 0 for c in cases)
    got = {(c.s_k, c.h_q, c.s_q, c.varlen, c.dtype) for c in cases}
    want = set(itertools.product((4096, 8192, 16384, 32768), (16, 32, 64, 128), (1, 2),
                                 (0, 1), ("bf16", "fp16")))
    assert got == want
    # Cases that share a KV pool (dtype, s_k, lengths) are adjacent, as in bench/cases.cpp.
    keys = [bench.pool_key(c) for c in cases]
    assert sum(a != b for a, b in zip(keys, keys[1:])) == 2 * 4 * 2 - 1


def test_extra_and_quick_cases_mirror_the_cpp_bench(bench):
    extra = bench.extra_cases()
    assert [(c.b, c.s_k, c.h_q, c.s_q, c.varlen, c.long) for c in extra] == [
        (1, 131072, 16, 1, 0, 0), (1, 1024, 16, 1, 0, 0), (32, 1024, 16, 1, 2, 65536)]
    assert len(bench.quick_cases()) == 6


def test_case_syntax_and_defaults(bench):
    c = bench.parse_case("s_k=300,varlen=2")
    assert (c.dtype, c.b, c.s_q, c.h_q, c.h_kv, c.causal) == ("bf16", 1, 1, 16, 1, True)
    assert c.long == 64 * 300  # the C++ default for varlen=2
    c = bench.parse_case("b=3,s_q=2,h_q=128,h_kv=2,causal=0,dtype=fp16")
    assert (c.b, c.s_q, c.h_q, c.h_kv, c.causal, c.dtype) == (3, 2, 128, 2, False, "fp16")
    for bad in ("b=0", "h_q=10,h_kv=3", "dtype=fp32", "varlen=3", "x=1", "b"):
        with pytest.raises(Exception):
            bench.parse_case(bad)


def test_sequence_lengths(bench):
    fixed = bench.parse_case("b=5,s_k=1000")
    assert bench.raw_seqlens(fixed, 1) == [1000] * 5
    normal = bench.parse_case("b=200,s_k=4096,varlen=1")
    lengths = bench.raw_seqlens(normal, 7)
    assert lengths == bench.raw_seqlens(normal, 7) != bench.raw_seqlens(normal, 8)
    assert min(lengths) >= 0 and 3000 < sum(lengths) / len(lengths) < 5200
    # Independent of h_q, s_q and dtype, so that those cases share one KV pool.
    other = bench.parse_case("b=200,s_k=4096,varlen=1,h_q=128,s_q=2,dtype=fp16")
    assert bench.raw_seqlens(other, 7) == lengths
    one_long = bench.raw_seqlens(bench.parse_case("b=32,s_k=1024,varlen=2,long=65536"), 3)
    assert sorted(one_long) == [1024] * 31 + [65536]


def test_flop_and_byte_counting_matches_spec(bench):
    # b=2, s_q=2, h_q=16, h_kv=1, lengths 100 and 200 (sum 300), by hand from SPEC §6:
    #   FLOPs = 2 * s_q * sum(L) * h_q * (576 + 512) = 2 * 2 * 300 * 16 * 1088 = 20_889_600
    #   bytes = 2 * (300 * 1 * 576 + 2*2*16 * 576 + 2*2*16 * 512)
    #         = 2 * (172_800 + 36_864 + 32_768) = 484_864
    case = bench.parse_case("b=2,s_q=2,h_q=16,h_kv=1")
    assert bench.work(case, [100, 200]) == (20_889_600, 484_864)
    # h_kv counts the cache once per KV head: 2 * 300 * 2 * 576 more bytes than h_kv=1 ... x2.
    case2 = bench.parse_case("b=2,s_q=2,h_q=16,h_kv=2")
    assert bench.work(case2, [100, 200]) == (20_889_600, 484_864 + 2 * 300 * 576)


def test_row_errors(bench):
    torch = pytest.importorskip("torch")
    inf = float("inf")
    ref_out = torch.zeros(2, 1, 2, 512, dtype=torch.float64)
    ref_out[0, 0, 0] = 2.0  # row (0, 0, 0) has max|ref| = 2; the others are empty (all zero)
    out = ref_out.to(torch.bfloat16).clone()
    out[0, 0, 0, 5] = 2.02  # bf16 rounds to 2.015625: relative error 0.0078
    ref_lse = torch.tensor([[[3.0], [inf]], [[-0.5], [inf]]], dtype=torch.float64)  # [b, h, s_q]
    lse = ref_lse.float().clone()
    lse[1, 0, 0] = -0.50002  # |diff| / max(1, |ref|) = 2e-5
    out_err, lse_err = bench.row_errors(out, lse, ref_out, ref_lse)
    assert out_err == pytest.approx(0.015625 / 2)
    assert lse_err == pytest.approx(2e-5, rel=1e-2)
    lse[0, 1, 0] = 1.0  # an empty row whose lse is not +inf
    assert bench.row_errors(out, lse, ref_out, ref_lse)[1] == inf
    out[1, 0, 1, 0] = float("nan")
    assert bench.row_errors(out, lse, ref_out, ref_lse)[0] == inf


def synthetic_results(bench):
    rows = []
    for h_q, s_q, varlen, s_k in itertools.product((16, 32, 64, 128), (1, 2), (0, 1),
                                                   (4096, 8192, 16384, 32768)):
        case = bench.Case(dtype="bf16", b=128, s_q=s_q, h_q=h_q, s_k=s_k, varlen=varlen)
        row = bench.new_row(case, "auto", copies=1, sum_len=128 * s_k)
        flops, nbytes = bench.work(case, [s_k] * 128)
        us = 100.0 + nbytes / 3.5e3 + flops / 5e8
        row.update(us=us, meta_us=7.5, tflops=flops / (us * 1e6), gbs=nbytes / (us * 1e3),
                   max_rel_err=3e-3, lse_err=1e-7, status="verified")
        rows.append(row)
    rows.append(bench.new_row(bench.parse_case("b=32,s_k=1024,varlen=2,long=65536"), "auto",
                              copies=3, sum_len=31 * 1024 + 65536))
    rows[-1].update(us=50.0, gbs=1000.0, tflops=20.0, status="verified")  # left out of the plot
    return {"gpu": "Test GPU", "date": "2026-01-01T00:00:00Z", "commit": "abc1234",
            "source": "flash_mla.bench", "torch": "2.11", "cuda": "13.0", "seed": 2025,
            "ceilings": {"copy_gbs": 4200.0, "gemm_tflops": float("nan")}, "cases": rows}


def test_plot_from_json_writes_png(bench, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    results, png = tmp_path / "results.json", tmp_path / "plot.png"
    bench.write_json(str(results), synthetic_results(bench))
    doc = json.loads(results.read_text())  # strict JSON: the NaN ceiling became null
    assert doc["ceilings"] == {"copy_gbs": 4200.0, "gemm_tflops": None}
    assert CPP_ROW_KEYS <= set(doc["cases"][0]) and set(doc["cases"][0]) == set(bench.JSON_KEYS)
    assert bench.main(["--plot-from", str(results), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_plot_from_the_cpp_benchmark_json(bench, tmp_path):
    pytest.importorskip("matplotlib")
    if not CPP_RESULTS.exists():
        pytest.skip(f"{CPP_RESULTS} not present")
    png = tmp_path / "cpp.png"
    assert bench.main(["--plot-from", str(CPP_RESULTS), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_and_help(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    assert "--plot-from" in capsys.readouterr().out
    for argv in (["--plot-from", "x.json"], ["--case", "b=0"], ["--reps", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(argv)
        assert exit_info.value.code == 2


def test_kv_pool_and_reference_check_on_cpu(bench, monkeypatch):
    """The pool's block table and the reference check, with the reference itself as "kernel"."""
    torch = pytest.importorskip("torch")
    # flash_mla.reference by path, under a stub parent package (its __init__ needs the build).
    spec = importlib.util.spec_from_file_location("flash_mla.reference",
                                                  BENCH_PATH.parent / "reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    monkeypatch.setitem(sys.modules, "flash_mla", type(sys)("flash_mla"))
    monkeypatch.setitem(sys.modules, "flash_mla.reference", reference)

    case = bench.parse_case("b=5,s_q=2,h_q=8,h_kv=2,s_k=100,varlen=1")
    pool = bench.make_pool(case, seed=3, l2_bytes=2_000_000, device="cpu")
    pages_per_copy = pool.k_cache.shape[0] // pool.copies
    assert pool.copies == -(-4 * 2_000_000 // (pages_per_copy * 64 * 2 * 576 * 2)) > 1
    table = pool.block_table
    assert sorted(table[table >= 0].tolist()) == list(range(pool.k_cache.shape[0]))
    for row, raw in zip(table[0], pool.raw_len):  # a prefix of pages, then -1
        n = max(-(-raw // 64), 1)
        assert (row[:n] >= 0).all() and (row[n:] == -1).all()

    q = bench.make_queries(case, pool, seed=3)
    assert q.shape == (pool.copies, 5, 2, 8, 576) and q.dtype == torch.bfloat16
    seqlens = torch.tensor([max(n, case.s_q) for n in pool.raw_len], dtype=torch.int32)
    ref_out, ref_lse = reference.mla_decode_reference(q[0], pool.k_cache, table[0], seqlens,
                                                      causal=True)
    out, lse = ref_out.to(torch.bfloat16), ref_lse.float()
    monkeypatch.setattr(bench, "REF_BYTES_PER_CALL", 1)  # one head per reference call
    out_err, lse_err = bench.reference_errors(case, pool, q[0], seqlens, out, lse, 3, seed=3)
    assert out_err <= 2.0**-8 and lse_err <= 1e-6
    longest = int(torch.argmax(seqlens))  # always among the checked batch elements
    out[longest, -1, 7, 0] += 1.0
    assert bench.reference_errors(case, pool, q[0], seqlens, out, lse, 3, seed=3)[0] > \
        bench.OUT_TOLERANCE

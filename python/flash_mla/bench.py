"""Decode-attention benchmark from Python: SPEC §6's sweep, counting and ceilings.

The Python twin of bench/ (the C++ ``flash_mla_bench``): the same cases and ``--case`` syntax,
the same FLOP and byte counting, a median of CUDA-event-timed calls queued behind a spin kernel,
KV copies rotated so that one rotation touches at least 4x the L2, the copy and bf16 GEMM
ceilings measured in the same run, and each row checked against the float64 reference.

    python -m flash_mla.bench                       # SPEC §6 sweep (128 cases), kernel auto
    python -m flash_mla.bench --extra --kernel all --json out.json --plot out.png
    python -m flash_mla.bench --plot-from out.json --plot out.png      # no GPU needed

Only the standard library is imported here: torch, flash_mla and matplotlib are imported by
the functions that use them, so --help and --plot-from run on a machine without a GPU.
Exit status: 0 every row passed; 1 some row FAILED; 2 bad arguments, or no usable GPU.
"""
import argparse
import dataclasses
import datetime
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

HEAD_DIM, HEAD_DIM_V, PAGE_BLOCK_SIZE = 576, 512, 64
FIXED, NORMAL, ONE_LONG = 0, 1, 2                 # the `varlen` of a case (bench/README.md)
OUT_TOLERANCE = 1e-2   # max|out - ref| / max|ref| per row: bf16 output rounding is 2^-8 ~ 4e-3
LSE_TOLERANCE = 1e-4   # |lse - ref| / max(1, |ref|): fp32 accumulation of O(1e4..1e5) terms
L2_MULTIPLE, MAX_COPIES = 4, 256                  # KV copies: rotation >= 4x L2, at most 256
SPIN_MARGIN, MIN_SPIN_US, MAX_SPIN_US = 2.0, 20.0, 200e3
COPY_BYTES, GEMM_N, CEILING_WARMUP, CEILING_REPS = 1 << 30, 8192, 3, 20
REF_BYTES_PER_CALL = 1 << 30  # float64 K the reference may expand per call (L x heads x 576)
SWEEP_S_K, SWEEP_H_Q, SWEEP_S_Q = (4096, 8192, 16384, 32768), (16, 32, 64, 128), (1, 2)
JSON_KEYS = ("kernel", "dtype", "b", "s_q", "h_q", "h_kv", "s_k", "varlen", "long", "causal",
             "copies", "sum_len", "us", "meta_us", "host_us", "tflops", "gbs", "pct_copy",
             "pct_gemm", "max_rel_err", "lse_err", "status", "note")


# ---------------------------------------------------------------------------------------------
# Cases (bench/cases.cpp)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    dtype: str = "bf16"
    b: int = 1
    s_q: int = 1
    h_q: int = 16
    h_kv: int = 1
    s_k: int = 4096          # common length (FIXED, ONE_LONG) or mean (NORMAL)
    varlen: int = FIXED
    long: int = 0            # ONE_LONG only: the long sequence's length
    causal: bool = True

    def describe(self):
        text = (f"{self.dtype} b={self.b} s_q={self.s_q} h_q={self.h_q} h_kv={self.h_kv} "
                f"s_k={self.s_k} varlen={self.varlen}")
        return text + (f" long={self.long}" if self.varlen == ONE_LONG else "") + \
            f" causal={int(self.causal)}"


def parse_case(spec):
    """`b=..,s_q=..,h_q=..,h_kv=..,s_k=..,varlen=0|1|2,causal=0|1,dtype=bf16|fp16[,long=N]`."""
    fields = {}
    for item in spec.split(","):
        key, eq, val = item.partition("=")
        if not eq:
            raise argparse.ArgumentTypeError(f"'{item}' is not key=value")
        if key == "dtype":
            if val not in ("bf16", "fp16"):
                raise argparse.ArgumentTypeError(f"dtype must be bf16 or fp16, got '{val}'")
            fields[key] = val
        elif key in ("b", "s_q", "h_q", "h_kv", "s_k", "varlen", "long", "causal"):
            try:
                fields[key] = int(val)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{key}: expected an integer, got '{val}'")
        else:
            raise argparse.ArgumentTypeError(f"unknown key '{key}'")
    if fields.get("varlen", FIXED) not in (FIXED, NORMAL, ONE_LONG):
        raise argparse.ArgumentTypeError("varlen must be 0, 1 or 2")
    if fields.get("varlen") == ONE_LONG and "long" not in fields:
        fields["long"] = 64 * fields.get("s_k", Case.s_k)
    fields["causal"] = bool(fields.get("causal", 1))
    c = Case(**fields)
    if min(c.b, c.s_q, c.h_q, c.h_kv) < 1 or min(c.s_k, c.long) < 0:
        raise argparse.ArgumentTypeError(f"'{spec}': sizes must be positive (s_k >= 0)")
    if c.h_q % c.h_kv:
        raise argparse.ArgumentTypeError(f"'{spec}': h_q must be a multiple of h_kv")
    return c


def sweep_cases():
    """SPEC §6, ordered so that consecutive cases share one KV pool (dtype, s_k, lengths outer)."""
    return [Case(dtype=dtype, b=128, s_q=s_q, h_q=h_q, h_kv=1, s_k=s_k, varlen=varlen, causal=True)
            for dtype in ("bf16", "fp16") for s_k in SWEEP_S_K for varlen in (FIXED, NORMAL)
            for h_q in SWEEP_H_Q for s_q in SWEEP_S_Q]


def quick_cases():
    """Both dtypes, MTP, h_kv > 1, ragged lengths, a length off the page size, empty rows."""
    return [parse_case(s) for s in (
        "b=4,s_q=1,h_q=16,s_k=1024,varlen=1,dtype=bf16",
        "b=4,s_q=2,h_q=64,s_k=1000,varlen=0,dtype=bf16",
        "b=3,s_q=2,h_q=128,s_k=777,varlen=1,dtype=fp16",
        "b=2,s_q=1,h_q=128,h_kv=2,s_k=300,varlen=0,dtype=bf16",
        "b=2,s_q=2,h_q=16,s_k=1,varlen=0,dtype=fp16",
        "b=5,s_q=1,h_q=16,s_k=200,varlen=2,long=5000,dtype=bf16")]


def extra_cases():
    """SPEC §6's weak spots of the 2025-04 FlashMLA kernel."""
    return [parse_case(s) for s in (
        "b=1,s_q=1,h_q=16,s_k=131072,varlen=0,dtype=bf16",
        "b=1,s_q=1,h_q=16,s_k=1024,varlen=0,dtype=bf16",
        "b=32,s_q=1,h_q=16,s_k=1024,varlen=2,long=65536,dtype=bf16")]


def raw_seqlens(case, seed):
    """[b] lengths before the clamp to s_q; seeded by the length pattern alone (not h_q, s_q or
    dtype), so every case of one KV pool sees the same lengths."""
    rng = random.Random((seed * 0x9E3779B97F4A7C15 + case.s_k * 31 + case.b * 7 + case.varlen)
                        % 2**64)
    if case.varlen == NORMAL:  # int() truncates toward zero, as FlashMLA's benchmark does
        return [max(0, int(rng.gauss(case.s_k, case.s_k / 2))) for _ in range(case.b)]
    lengths = [case.s_k] * case.b
    if case.varlen == ONE_LONG:
        lengths[rng.randrange(case.b)] = case.long
    return lengths


def work(case, seqlens):
    """(FLOPs, bytes) of one decode call, counted as SPEC §6 (and FlashMLA's benchmark) do."""
    total, rows = sum(seqlens), case.b * case.s_q * case.h_q
    flops = 2 * case.s_q * total * case.h_q * (HEAD_DIM + HEAD_DIM_V)
    nbytes = 2 * (total * case.h_kv * HEAD_DIM + rows * HEAD_DIM + rows * HEAD_DIM_V)
    return flops, nbytes


# ---------------------------------------------------------------------------------------------
# Inputs (bench/inputs.cu)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class KvPool:
    key: tuple
    raw_len: list        # [b] lengths before the clamp to s_q
    copies: int
    k_cache: object      # [copies * pages_per_copy, 64, h_kv, 576] q's dtype
    block_table: object  # [copies, b, max_blocks] int32; columns past a sequence's pages -1


def pool_key(case):
    return (case.dtype, case.b, case.h_kv, case.s_k, case.varlen, case.long,
            -(-case.s_q // PAGE_BLOCK_SIZE))


def generator(seed, device):
    import torch
    return torch.Generator(device=device).manual_seed(seed % 2**64)


def make_pool(case, seed, l2_bytes, device="cuda"):
    """Enough independent copies of the case's paged KV for one rotation to exceed 4x L2; one
    shuffled permutation of all pages is dealt out to (copy, b, page) in order."""
    import torch
    raw = raw_seqlens(case, seed)
    min_pages = -(-case.s_q // PAGE_BLOCK_SIZE)
    pages = torch.tensor([max(-(-n // PAGE_BLOCK_SIZE), min_pages) for n in raw])
    per_copy, max_blocks = int(pages.sum()), int(pages.max())
    page_bytes = PAGE_BLOCK_SIZE * case.h_kv * HEAD_DIM * 2
    copies = min(max(-(-L2_MULTIPLE * l2_bytes // (per_copy * page_bytes)), 1), MAX_COPIES)
    cpu = torch.Generator().manual_seed((seed ^ 0xB10C7AB1E ^ copies * per_copy) % 2**64)
    perm = torch.randperm(copies * per_copy, generator=cpu, dtype=torch.int32)
    used = torch.arange(max_blocks)[None, :] < pages[:, None]             # [b, max_blocks]
    table = torch.full((copies, case.b, max_blocks), -1, dtype=torch.int32)
    table[used.expand(copies, -1, -1)] = perm                             # row-major deal
    dtype = torch.bfloat16 if case.dtype == "bf16" else torch.float16
    k_cache = torch.randn((copies * per_copy, PAGE_BLOCK_SIZE, case.h_kv, HEAD_DIM), dtype=dtype,
                          device=device, generator=generator(seed ^ 0xCAC4E, device))
    return KvPool(pool_key(case), raw, copies, k_cache, table.to(device))


def make_queries(case, pool, seed):
    """q of every copy: [copies, b, s_q, h_q, 576]."""
    import torch
    device = pool.k_cache.device
    return torch.randn((pool.copies, case.b, case.s_q, case.h_q, HEAD_DIM),
                       dtype=pool.k_cache.dtype, device=device, generator=generator(
                           seed ^ (0x51 << 40) ^ (case.h_q << 20) ^ case.s_q, device))


# ---------------------------------------------------------------------------------------------
# Timing (bench/mla_bench.cu) and ceilings (bench/ceilings.cu)
# ---------------------------------------------------------------------------------------------
def spin_cycles_per_us():
    """Clock cycles per µs of torch.cuda._sleep, measured (the clock boosts past its nominal)."""
    import torch
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(1000)  # loads the kernel
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    end.synchronize()
    return 10_000_000 / (start.elapsed_time(end) * 1e3)


def warm_up(fn, first, calls):
    """Runs fn(first), ..., fn(first + calls - 1); returns the host µs per call (queueing only)."""
    import torch
    t0 = time.perf_counter()
    for n in range(calls):
        fn(first + n)
    host_us = (time.perf_counter() - t0) * 1e6 / calls if calls else 10.0
    torch.cuda.synchronize()
    return host_us


def median_us(fn, first, reps, host_us=0.0, cycles_per_us=0.0):
    """Median µs of fn(first + n), each between two events. With cycles_per_us, a spin kernel
    queued first keeps the GPU busy until every call is queued: the events time the GPU alone."""
    import torch
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    if cycles_per_us:
        spin_us = min(max(SPIN_MARGIN * host_us * reps, MIN_SPIN_US), MAX_SPIN_US)
        torch.cuda._sleep(int(spin_us * cycles_per_us))
    for n, (start, end) in enumerate(events):
        start.record()
        fn(first + n)
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events) * 1e3


def measure_ceilings():
    """{"copy_gbs": 1 GiB device copy, bytes read + written; "gemm_tflops": bf16 8192^3 matmul}
    (cuBLAS, fp32 accumulation), on random data: zeros run faster than real data on Hopper."""
    import torch
    src = torch.randn(COPY_BYTES // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    warm_up(lambda _: dst.copy_(src), 0, CEILING_WARMUP)
    copy_gbs = 2 * COPY_BYTES / (median_us(lambda _: dst.copy_(src), 0, CEILING_REPS) * 1e3)
    del src, dst
    a, b = (torch.randn(GEMM_N, GEMM_N, dtype=torch.bfloat16, device="cuda") for _ in range(2))
    c = torch.empty_like(a)
    warm_up(lambda _: torch.matmul(a, b, out=c), 0, CEILING_WARMUP)
    us = median_us(lambda _: torch.matmul(a, b, out=c), 0, CEILING_REPS)
    return {"copy_gbs": copy_gbs, "gemm_tflops": 2 * GEMM_N**3 / (us * 1e6)}


# ---------------------------------------------------------------------------------------------
# Verification (bench/verify.cpp)
# ---------------------------------------------------------------------------------------------
def pick_batch_elements(seqlens, count, seed):
    """A longest sequence (its last query token sees the most keys), then seeded random others."""
    longest = max(range(len(seqlens)), key=lambda b: seqlens[b])
    others = [b for b in range(len(seqlens)) if b != longest]
    return [longest] + random.Random(seed ^ 0x5EED).sample(others, min(count - 1, len(others)))


def row_errors(out, lse, ref_out, ref_lse):
    """(max over rows of max|out - ref| / max|ref|, max of |lse - ref| / max(1, |ref|)); a row
    whose reference is all zero (no valid key) is compared absolutely, NaN counts as infinite."""
    import torch
    inf = float("inf")
    diff = torch.nan_to_num((out.double() - ref_out).abs().amax(-1), nan=inf, posinf=inf)
    scale = ref_out.abs().amax(-1)
    out_err = torch.where(scale > 0, diff / scale, diff)
    lse, ref_lse = lse.double(), ref_lse.double()
    lse_err = (lse - ref_lse).abs() / ref_lse.abs().clamp(min=1.0)
    either_inf = torch.isinf(lse) | torch.isinf(ref_lse)
    lse_err = torch.where(either_inf, torch.where(lse == ref_lse, 0.0, inf), lse_err)
    lse_err = torch.nan_to_num(lse_err, nan=inf, posinf=inf)
    return float(out_err.max()), float(lse_err.max())


def reference_errors(case, pool, q0, seqlens_t, out, lse, count, seed):
    """Errors of `count` whole batch elements of copy 0 against the float64 reference, run on a
    problem holding only their pages (identity block table), so it never sees the whole cache."""
    import torch
    from flash_mla.reference import mla_decode_reference
    picks = pick_batch_elements(seqlens_t.tolist(), count, seed)
    pages = [-(-int(seqlens_t[b]) // PAGE_BLOCK_SIZE) for b in picks]
    table0 = pool.block_table[0]
    physical = torch.cat([table0[b, :n] for b, n in zip(picks, pages)]).long()
    # Padding points at page 0: the reference must not read past L anyway (tests check that).
    table, offset = torch.zeros((len(picks), max(pages)), dtype=torch.int32), 0
    for row, n in enumerate(pages):
        table[row, :n] = torch.arange(offset, offset + n)
        offset += n
    idx = torch.tensor(picks, device=q0.device)
    q, k_cache, table = q0[idx], pool.k_cache[physical], table.to(q0.device)
    seqlens = seqlens_t[idx]
    # The reference expands K to every query head in float64 ([L, heads, 576]): called on a few
    # heads of one KV head at a time so that stays under REF_BYTES_PER_CALL.
    group = case.h_q // case.h_kv
    chunk = max(1, min(group, REF_BYTES_PER_CALL // (max(seqlens.tolist()) * HEAD_DIM * 8)))
    ref_out = torch.empty(out[idx].shape, dtype=torch.float64, device=q0.device)
    ref_lse = torch.empty(lse[idx].shape, dtype=torch.float64, device=q0.device)
    for g in range(case.h_kv):
        for h in range(g * group, (g + 1) * group, chunk):
            heads = slice(h, min(h + chunk, (g + 1) * group))
            ref_out[:, :, heads], ref_lse[:, heads] = mla_decode_reference(
                q[:, :, heads], k_cache[:, :, g:g + 1], table, seqlens, head_dim_v=HEAD_DIM_V,
                softmax_scale=None, causal=case.causal)
    return row_errors(out[idx], lse[idx], ref_out, ref_lse)


def poisoned_call(decode, case, dtype):
    """decode(0) after NaN-filled blocks of out's and lse's sizes were freed: the caching
    allocator usually hands them back, so rows the kernel never writes show as NaN. Best effort
    (the API allocates its outputs; the C++ bench poisons them for certain)."""
    import torch
    torch.cuda.empty_cache()
    rows = case.b * case.s_q * case.h_q
    poison = [torch.full((rows * HEAD_DIM_V,), math.nan, dtype=dtype, device="cuda"),
              torch.full((rows,), math.nan, dtype=torch.float32, device="cuda")]
    del poison
    out, lse = decode(0)
    torch.cuda.synchronize()
    return out, lse


# ---------------------------------------------------------------------------------------------
# One row: a case with one kernel
# ---------------------------------------------------------------------------------------------
def new_row(case, kernel, copies, sum_len):
    row = dict.fromkeys(JSON_KEYS)
    row.update(kernel=kernel, dtype=case.dtype, b=case.b, s_q=case.s_q, h_q=case.h_q,
               h_kv=case.h_kv, s_k=case.s_k, varlen=case.varlen, long=case.long,
               causal=case.causal, copies=copies, sum_len=sum_len, note="")
    return row


def is_not_supported(error):
    """The bindings raise RuntimeError with the library's message alone (no status code), so a
    kernel this GPU cannot run is recognised by the wording of those messages ("the Hopper
    kernel needs compute capability 9.0 ...")."""
    text = str(error).lower()
    return isinstance(error, NotImplementedError) or "not supported" in text or \
        "kernel needs" in text


def run_row(case, kernel, pool, q, seqlens_t, ceilings, args, cycles_per_us):
    """Times decode (rotating over the copies) and metadata apart, then checks copy 0."""
    import torch
    import flash_mla
    seqlens = seqlens_t.tolist()
    row = new_row(case, kernel, pool.copies, sum(seqlens))
    flops, nbytes = work(case, seqlens)
    rows_per_kv = case.s_q * case.h_q // case.h_kv

    def metadata(_n):
        return flash_mla.get_mla_metadata(seqlens_t, rows_per_kv, case.h_kv, kernel=kernel)

    try:  # the first calls validate: a rejection is the row's result
        schedule, splits = metadata(0)

        def decode(n):
            cp = n % pool.copies
            return flash_mla.flash_mla_with_kvcache(
                q[cp], pool.k_cache, pool.block_table[cp], seqlens_t, HEAD_DIM_V, schedule,
                splits, causal=case.causal, kernel=kernel)
        decode(0)
        torch.cuda.synchronize()
    except Exception as error:  # noqa: BLE001 - whatever the binding raises is the row's note
        if "CUDA error" in str(error):
            raise  # the context may be unusable: end the run
        row["status"] = "skipped" if is_not_supported(error) else "FAILED"
        row["note"] = f"{type(error).__name__}: {error}"
        return row

    # Warm-up and timed calls continue the rotation: no copy repeats before all were used.
    host_us = warm_up(decode, 1, args.warmup)
    # What a call costs the host (checks, dispatch, launches); unmeasured without a warm-up.
    row["host_us"] = host_us if args.warmup else None
    row["us"] = median_us(decode, 1 + args.warmup, args.reps, host_us, cycles_per_us)
    meta_host_us = warm_up(metadata, 0, max(args.warmup, 1))
    row["meta_us"] = median_us(metadata, 0, args.reps, meta_host_us, cycles_per_us)
    row["tflops"], row["gbs"] = flops / (row["us"] * 1e6), nbytes / (row["us"] * 1e3)
    if ceilings:
        row["pct_copy"] = 100 * row["gbs"] / ceilings["copy_gbs"]
        row["pct_gemm"] = 100 * row["tflops"] / ceilings["gemm_tflops"]
    if args.no_verify:
        row["status"] = "unverified"
        return row

    runs = [poisoned_call(decode, case, q.dtype) for _ in range(2)]
    (out, lse), (out2, lse2) = runs
    row["max_rel_err"], row["lse_err"] = reference_errors(
        case, pool, q[0], seqlens_t, out, lse, args.verify_batches, args.seed)
    problems = []
    if bool(out.isnan().any() or lse.isnan().any()):
        problems.append("NaN in output (unwritten or wrong)")
    if not row["max_rel_err"] <= OUT_TOLERANCE:
        problems.append(f"out error {row['max_rel_err']:.3g} > {OUT_TOLERANCE:g}")
    if not row["lse_err"] <= LSE_TOLERANCE:
        problems.append(f"lse error {row['lse_err']:.3g} > {LSE_TOLERANCE:g}")
    if not (torch.equal(out.view(torch.int16), out2.view(torch.int16))
            and torch.equal(lse.view(torch.int32), lse2.view(torch.int32))):
        problems.append("not bitwise reproducible")
    row["status"], row["note"] = ("FAILED" if problems else "verified"), "; ".join(problems)
    return row


# ---------------------------------------------------------------------------------------------
# Report (bench/report.cpp)
# ---------------------------------------------------------------------------------------------
TABLE_HEADER = (f"{'kernel':<10} {'dtype':<5} {'b':>4} {'s_q':>3} {'h_q':>4} {'h_kv':>4} "
                f"{'s_k':>6} {'vl':>2} {'us':>9} {'meta_us':>8} {'host_us':>8} {'TFLOPS':>7} "
                f"{'GB/s':>7} {'%copy':>6} {'%gemm':>6}  {'err(out/lse)':<15} status")


def format_row(r):
    def num(v, fmt, width):
        return format(v, fmt).rjust(width) if v is not None else "-".rjust(width)
    head = (f"{r['kernel']:<10} {r['dtype']:<5} {r['b']:>4} {r['s_q']:>3} {r['h_q']:>4} "
            f"{r['h_kv']:>4} {r['s_k']:>6} {r['varlen']:>2} ")
    if r["us"] is None:
        return head + f"{r['status']}: {r['note']}"
    err = (f"{r['max_rel_err']:.1e}/{r['lse_err']:.1e}" if r["max_rel_err"] is not None
           else "-")
    return head + " ".join([num(r["us"], ".1f", 9), num(r["meta_us"], ".1f", 8),
                            num(r["host_us"], ".1f", 8),
                            num(r["tflops"], ".1f", 7), num(r["gbs"], ".0f", 7),
                            num(r["pct_copy"], ".1f", 6), num(r["pct_gemm"], ".1f", 6)]) + \
        f"  {err:<15} {r['status']}" + (f": {r['note']}" if r["note"] else "")


def json_value(v):
    """JSON has no NaN or infinity (null instead); floats keep 6 significant digits."""
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else None
    return v


def write_json(path, doc):
    """Written whole under a temporary name and renamed: a run cut short keeps the last file."""
    doc = dict(doc, ceilings={k: json_value(v) for k, v in doc["ceilings"].items()},
               cases=[{k: json_value(v) for k, v in r.items()} for r in doc["cases"]])
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def tick_label(s_k):
    return f"{s_k // 1024}K" if s_k >= 1024 and s_k % 1024 == 0 else str(s_k)


def plot(doc, path):
    """One column per h_q: GB/s (top) and TFLOPS (bottom) against s_k, one line per (kernel,
    s_q, dtype, lengths), the run's copy / GEMM ceilings dashed. Only fixed and normal lengths
    of the most common (b, h_kv) are drawn (the sweep's: the --extra rows would join unrelated
    batch sizes into one line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator
    rows = [r for r in doc["cases"] if r.get("gbs") is not None and r.get("varlen") != ONE_LONG]
    if not rows:
        raise ValueError("no timed fixed- or normal-length rows to plot")
    shapes = [(r["b"], r["h_kv"]) for r in rows]
    b, h_kv = max(set(shapes), key=shapes.count)
    rows = [r for r in rows if (r["b"], r["h_kv"]) == (b, h_kv)]
    lines = {}
    for r in rows:
        lines.setdefault((r["kernel"], r["dtype"], r["s_q"], r["varlen"]), []).append(r)
    h_qs = sorted({r["h_q"] for r in rows})
    ceilings = doc.get("ceilings") or {}
    fig, axes = plt.subplots(2, len(h_qs), figsize=(4.2 * len(h_qs), 8), squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for col, h_q in enumerate(h_qs):
        top, bottom = axes[0][col], axes[1][col]
        for n, (key, series) in enumerate(sorted(lines.items(), key=str)):
            pts = sorted((r["s_k"], r["gbs"], r["tflops"]) for r in series if r["h_q"] == h_q)
            if not pts:
                continue
            kernel, dtype, s_q, varlen = key
            label = f"{kernel} s_q={s_q} {dtype} {'var' if varlen == NORMAL else 'fixed'}"
            style = dict(color=colors[n % len(colors)], marker="o" if dtype == "bf16" else "s",
                         linestyle="-" if varlen == FIXED else ":", label=label)
            top.plot([p[0] for p in pts], [p[1] for p in pts], **style)
            bottom.plot([p[0] for p in pts], [p[2] for p in pts], **style)
        for ax, ceiling, name in ((top, "copy_gbs", "copy"), (bottom, "gemm_tflops", "GEMM")):
            if ceilings.get(ceiling):
                ax.axhline(ceilings[ceiling], color="black", linestyle="--", linewidth=1,
                           label=f"{name} ceiling (this run)")
            ax.set_xscale("log", base=2)
            s_ks = sorted({r["s_k"] for r in rows if r["h_q"] == h_q})
            ax.set_xticks(s_ks, [tick_label(s) for s in s_ks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        top.set_title(f"h_q = {h_q}")
        bottom.set_xlabel("s_k (mean KV length)")
    axes[0][0].set_ylabel("GB/s")
    axes[1][0].set_ylabel("TFLOPS")
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=4, fontsize="small")
    legend_rows = -(-len(legend) // 4)
    fig.suptitle(f"flash_mla decode, b={b} h_kv={h_kv}: {doc.get('gpu', '?')}, "
                 f"commit {doc.get('commit', '?')}")
    fig.tight_layout(rect=(0, min(0.04 * legend_rows, 0.4), 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The run and the command line
# ---------------------------------------------------------------------------------------------
def device_info():
    import torch
    p = torch.cuda.get_device_properties(0)
    return {"name": p.name, "sm": f"sm_{p.major}{p.minor}", "sms": p.multi_processor_count,
            "l2_bytes": getattr(p, "L2_cache_size", 50 << 20), "memory_bytes": p.total_memory}


def resolve_kernels(choice):
    import flash_mla
    known = tuple(getattr(flash_mla, "KERNELS", ("auto", "portable")))
    if choice == "all":
        return list(known)
    if choice not in known:
        print(f"flash_mla.bench: unknown kernel '{choice}' (known: {', '.join(known)}, all)",
              file=sys.stderr)
        raise SystemExit(2)
    return [choice]


def run(args, cases):
    """Runs every case with every kernel; returns the JSON document."""
    import torch
    kernels = resolve_kernels(args.kernel)
    dev = device_info()
    print(f"flash_mla.bench  commit {args.commit}  seed {args.seed}  reps {args.reps}  "
          f"warmup {args.warmup}  cases {len(cases)} x {len(kernels)} kernels", flush=True)
    print(f"GPU: {dev['name']} ({dev['sm']}, {dev['sms']} SMs, L2 {dev['l2_bytes'] / 1e6:.0f} MB,"
          f" {dev['memory_bytes'] / 1e9:.0f} GB)  torch {torch.__version__}", flush=True)
    ceilings = {} if args.no_ceilings else measure_ceilings()
    if ceilings:
        print(f"ceilings (this run): copy {ceilings['copy_gbs']:.0f} GB/s (read + write, 1 GiB),"
              f" bf16 GEMM {ceilings['gemm_tflops']:.0f} TFLOPS (8192^3)", flush=True)
    else:
        print("ceilings: not measured (--no-ceilings)", flush=True)
    doc = {"gpu": dev["name"], "date": datetime.datetime.now(datetime.timezone.utc)
           .strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": args.commit, "source": "flash_mla.bench",
           "torch": torch.__version__, "cuda": torch.version.cuda, "device": dev,
           "seed": args.seed, "reps": args.reps, "warmup": args.warmup,
           "ceilings": {"copy_gbs": ceilings.get("copy_gbs"),
                        "gemm_tflops": ceilings.get("gemm_tflops")}, "cases": []}
    cycles_per_us, pool, rows = spin_cycles_per_us(), None, []
    for n, case in enumerate(cases, 1):
        if pool is None or pool.key != pool_key(case):
            pool = None  # freed before the next one is made
            pool = make_pool(case, args.seed, dev["l2_bytes"])
        q = make_queries(case, pool, args.seed)
        seqlens_t = torch.tensor([max(length, case.s_q) for length in pool.raw_len],
                                 dtype=torch.int32, device="cuda")
        for kernel in kernels:
            row = run_row(case, kernel, pool, q, seqlens_t, ceilings, args, cycles_per_us)
            rows.append(row)
            print(f"[{n}/{len(cases)}] {kernel} {case.describe()}: "
                  + (f"{row['us']:.1f} us, " if row["us"] else "") + row["status"],
                  file=sys.stderr, flush=True)
            doc["cases"] = [r for r in rows if r["status"] != "skipped"]
            if args.json:
                write_json(args.json, doc)
    print(TABLE_HEADER)
    print("\n".join(format_row(r) for r in rows))
    failed = [r for r in rows if r["status"] == "FAILED"]
    skipped = sum(r["status"] == "skipped" for r in rows)
    print(f"{len(rows)} rows: {len(rows) - skipped} run, {skipped} skipped (kernel not "
          f"available), {len(failed)} FAILED" + (f"; JSON: {args.json}" if args.json else ""))
    return doc


def default_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m flash_mla.bench", description=__doc__.split(
        "\n")[0], epilog="--case keys default to b=1 s_q=1 h_q=16 h_kv=1 s_k=4096 varlen=0 "
        "causal=1 dtype=bf16; varlen 0 fixed, 1 L~max(Normal(s_k, s_k/2), s_q), 2 b-1 "
        "sequences of s_k and one of `long` tokens (default 64*s_k).")
    cases = p.add_argument_group("cases (may be combined; default --sweep)")
    cases.add_argument("--sweep", action="store_true", help="SPEC §6 sweep (128 cases)")
    cases.add_argument("--quick", action="store_true", help="six small cases (smoke run)")
    cases.add_argument("--extra", action="store_true",
                       help="FlashMLA's weak spots: one 128K sequence, one 1K, 31x1K + 64K")
    cases.add_argument("--case", action="append", type=parse_case, default=[], metavar="SPEC",
                       help="b=..,s_q=..,h_q=..,h_kv=..,s_k=..,varlen=0|1|2,causal=0|1,"
                            "dtype=bf16|fp16[,long=N] (repeatable)")
    p.add_argument("--kernel", default="auto", help="a name in flash_mla.KERNELS, or all")
    p.add_argument("--reps", type=positive, default=50, help="timed calls, median (50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls first (10)")
    p.add_argument("--verify-batches", type=positive, default=4, metavar="N",
                   help="batch elements checked against the float64 reference (4)")
    p.add_argument("--seed", type=int, default=2025, help="lengths, data, block tables (2025)")
    p.add_argument("--no-ceilings", action="store_true", help="skip copy / GEMM ceilings")
    p.add_argument("--no-verify", action="store_true", help="skip the output checks")
    p.add_argument("--json", metavar="PATH", help="results file, rewritten after every row")
    p.add_argument("--commit", help="commit recorded in the JSON (default: git HEAD)")
    p.add_argument("--plot", metavar="OUT.png", help="draw GB/s and TFLOPS against s_k")
    p.add_argument("--plot-from", metavar="RESULTS.json", help="plot this file; run nothing")
    args = p.parse_args(argv)
    if args.plot_from and not args.plot:
        p.error("--plot-from needs --plot OUT.png")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.plot_from:
        with open(args.plot_from) as f:
            plot(json.load(f), args.plot)
        print(f"plot: {args.plot}")
        return 0
    import torch
    if not torch.cuda.is_available():
        print("flash_mla.bench: no CUDA GPU found (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2
    try:
        import flash_mla
    except ImportError as error:
        print(f"flash_mla.bench: cannot import flash_mla (is it built?): {error}", file=sys.stderr)
        return 2
    if hasattr(flash_mla, "is_supported"):
        ok, reason = flash_mla.is_supported(torch.device("cuda", 0))
        if not ok:
            print(f"flash_mla.bench: this GPU cannot run flash_mla: {reason}", file=sys.stderr)
            return 2
    args.commit = args.commit or default_commit()
    cases = ((quick_cases() if args.quick else []) +
             (sweep_cases() if args.sweep or not (args.quick or args.extra or args.case) else []) +
             (extra_cases() if args.extra else []) + args.case)
    doc = run(args, cases)
    if args.plot:
        plot(doc, args.plot)
        print(f"plot: {args.plot}")
    return 1 if any(r["status"] == "FAILED" for r in doc["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())

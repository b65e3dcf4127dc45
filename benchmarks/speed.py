"""How much faster are depthwise separable convolutions really? (`python3 book.py bench`)

Measures on the CPU, in one run, at batch 1 and at a larger batch, with 1 and 2 threads:

(a) each of MobileNet's 13 depthwise separable layer shapes, at batch 1: the standard 3x3 convolution against
    `DepthwiseSeparableConv2d`, and the depthwise and pointwise parts alone, in PyTorch with the
    default (contiguous) and the channels-last memory format, and in ONNX Runtime (one session per
    layer, from `dsc_utils.onnxruntime_session`);
(b) the whole `mobilenet_v1()` against `mobilenet_v1(separable=False)`, in five variants: PyTorch as
    built (batch norm, default memory format), with batch norm folded, prepared
    (`prepare_for_inference`: folded and channels-last), prepared then compiled by `torch.compile`
    (Inductor, frozen weights, compiled for each batch size and thread count; skipped without a
    C++ compiler), and ONNX Runtime ("onnxruntime"); at the larger batch, whose calls take seconds,
    as built, prepared, compiled and ONNX Runtime, one call per round;
(c) the roofs of the roofline model: the compute roof (the fastest multiply-accumulate rate of
    several matrix multiplies and of every convolution measured in this run, so that no measured
    point lies above it), the theoretical peak from the clock and vector width in /proc/cpuinfo, and
    the memory bandwidth of copies far beyond the last-level cache (256 MiB) and within the caches.

Every comparison is timed side by side: all its functions are warmed up, then take turns for several
rounds (each round one `torch.utils.benchmark` `blocked_autorange` per function, at a fixed thread
count); a function's time is the median of its round times, and a ratio's spread is the range and
interquartile range of its per-round ratios. Interleaving exposes the functions to the same load,
so ratios hold on a shared machine. The machine (CPU, instruction sets, caches, versions, load
average at start and end) is stored with the results in benchmarks/results.json, which the speed
chapter reads. Options: --quick (a smoke test, not a measurement), --threads 1,2, --batch N, --output.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

import dsc_utils as du

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("standard", "separable", "depthwise", "pointwise")
LAYER_VARIANTS = ("contiguous", "channels_last", "onnxruntime")
NETWORK_VARIANTS = ("as built", "folded", "prepared", "compiled", "onnxruntime")
LARGE_BATCH_VARIANTS = ("as built", "prepared", "compiled", "onnxruntime")
MIB = 2**20


# ----------------------------------------------------------------------------------------------
# Timing side by side
# ----------------------------------------------------------------------------------------------

def interleaved(functions: dict, threads: int, rounds: int, min_run_time: float | None, warmup: int) -> dict:
    """name -> list of per-round seconds per call (median of the round's blocks), interleaved."""
    blocks = du.time_blocks(functions, threads, rounds, min_run_time, warmup)
    return {name: [statistics.median(one_round) for one_round in rounds_] for name, rounds_ in blocks.items()}


def spread(values: list[float]) -> dict:
    """Median, quartiles and range of per-round values."""
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return dict(median=statistics.median(values), q1=quartiles[0], q3=quartiles[2], min=min(values),
                max=max(values))


def comparison(mults: dict, rounds: dict, slow: str, fast: str) -> dict:
    """Theoretical, measured and realized speedup of `fast` over `slow`, with per-round spreads."""
    theoretical = mults[slow] / mults[fast]
    ratios = [s / f for s, f in zip(rounds[slow], rounds[fast])]
    measured = spread(ratios)
    return dict(theoretical=theoretical, measured=measured["median"], realized=measured["median"] / theoretical,
                measured_spread=measured, realized_spread={k: v / theoretical for k, v in measured.items()},
                round_ratios=ratios)


# ----------------------------------------------------------------------------------------------
# (a) layers
# ----------------------------------------------------------------------------------------------

def layer_case(shape: dict, batch: int, threads: int, rounds: int, min_run_time: float) -> list[dict]:
    m, n, s = shape["in_channels"], shape["out_channels"], shape["stride"]
    torch.manual_seed(shape["index"])
    standard = nn.Conv2d(m, n, 3, s, padding=1, bias=False).eval().requires_grad_(False)
    separable = du.DepthwiseSeparableConv2d(m, n, 3, s, padding=1, bias=False).eval().requires_grad_(False)
    x = torch.randn(batch, m, shape["input_size"], shape["input_size"])
    with torch.inference_mode():
        hidden = separable.depthwise(x)
    functions = {}
    for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        copies = copy.deepcopy((standard, separable))        # each format its own weights
        copies = [module.to(memory_format=fmt) for module in copies]
        modules = {"standard": copies[0], "separable": copies[1], "depthwise": copies[1].depthwise,
                   "pointwise": copies[1].pointwise}
        xf, hf = x.contiguous(memory_format=fmt), hidden.contiguous(memory_format=fmt)
        for kind, module in modules.items():
            functions[fmt_name, kind] = (lambda mod=module, inp=(hf if kind == "pointwise" else xf): mod(inp))
    for kind, module, inp in (("standard", standard, x), ("separable", separable, x),
                              ("depthwise", separable.depthwise, x), ("pointwise", separable.pointwise, hidden)):
        session = du.onnxruntime_session(module, inp, threads=threads)
        functions["onnxruntime", kind] = (lambda run=session, inp=inp: run(inp))
    with torch.inference_mode():
        times = interleaved(functions, threads, rounds, min_run_time, warmup=3)
    g = shape["output_size"]
    mults = {
        "standard": batch * du.standard_conv_mults(m, n, 3, g),
        "separable": batch * du.separable_conv_mults(m, n, 3, g),
        "depthwise": batch * du.depthwise_conv_mults(m, 3, g),
        "pointwise": batch * du.pointwise_conv_mults(m, n, g),
    }
    rows = []
    for variant in LAYER_VARIANTS:
        per_round = {kind: times[variant, kind] for kind in KINDS}
        rows.append(dict(shape, batch=batch, threads=threads, variant=variant,
                         memory_format="channels_last" if variant == "onnxruntime" else variant,
                         seconds={k: statistics.median(v) for k, v in per_round.items()},
                         round_seconds=per_round, mults=mults,
                         **comparison(mults, per_round, "standard", "separable")))
    rows[-1]["memory_format"] = "onnxruntime (NCHWc blocks)"
    return rows


# ----------------------------------------------------------------------------------------------
# (b) networks
# ----------------------------------------------------------------------------------------------

def can_compile() -> bool:
    return shutil.which("g++") is not None or shutil.which("c++") is not None


def compiled(model: nn.Module):
    """prepare_for_inference, then torch.compile with frozen weights (compiled at the first call)."""
    import torch._inductor.config

    torch._inductor.config.freezing = True  # constant weights: prepacked, convolution + ReLU fused
    prepared = du.prepare_for_inference(model)
    function = torch.compile(prepared.model)
    return lambda x: function(x.contiguous(memory_format=torch.channels_last))


def network_case(batch: int, threads: int, rounds: int, min_run_time: float, warmup: int,
                 compile_too: bool) -> dict:
    torch.manual_seed(0)
    torch.set_num_threads(threads)           # torch.compile builds its kernels for this thread count
    models = {"separable": du.randomize_batch_norms(du.mobilenet_v1()).eval(),
              "standard": du.randomize_batch_norms(du.mobilenet_v1(separable=False)).eval()}
    x = torch.randn(batch, 3, 224, 224)
    mults = {name: du.count_mults(model, x) for name, model in models.items()}
    functions, skipped = {}, []
    variants = NETWORK_VARIANTS if batch == 1 else LARGE_BATCH_VARIANTS
    for variant in variants:
        for name, model in models.items():
            if variant == "as built":
                run = model
            elif variant == "folded":
                run = du.prepare_for_inference(model, memory_format=torch.contiguous_format)
            elif variant == "prepared":
                run = du.prepare_for_inference(model)
            elif variant == "compiled":
                if not (compile_too and can_compile()):
                    skipped.append(variant)
                    break
                torch._dynamo.reset()
                run = compiled(model)
                with torch.inference_mode():
                    run(x)                   # compile now, outside the timing
            else:
                run = du.onnxruntime_session(model, x, threads=threads)
            functions[variant, name] = (lambda run=run: run(x))
    with torch.inference_mode():
        reference = {name: model(x) for name, model in models.items()}
        for (variant, name), function in functions.items():      # every variant computes the same
            if batch > 1:
                break                        # checked at batch 1: at the larger batch it takes minutes
            error = (function() - reference[name]).abs().max() / reference[name].abs().max()
            assert error < 1e-3, (variant, name, float(error))
        times = interleaved(functions, threads, rounds, min_run_time, warmup)
    rows = []
    for variant in variants:
        if variant in skipped:
            continue
        per_round = {name: times[variant, name] for name in models}
        rows.append(dict(batch=batch, variant=variant, threads=threads,
                         seconds={k: statistics.median(v) for k, v in per_round.items()},
                         round_seconds=per_round, mults=mults,
                         **comparison(mults, per_round, "standard", "separable")))
    return rows


# ----------------------------------------------------------------------------------------------
# (c) roofs and the machine
# ----------------------------------------------------------------------------------------------

def cpuinfo() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda name: (re.search(rf"^{name}\s*:\s*(.*)$", text, re.M) or [None, ""])[1].strip()
    flags = set(field("flags").split())
    wanted = ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "amx_tile", "amx_bf16")
    caches = {}
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for level in ("L1d", "L2", "L3"):
            found = re.search(rf"^{level} cache:\s*(.*)$", out, re.M)
            if found:
                caches[level] = found.group(1).strip()
    return dict(model_name=field("model name") or platform.processor(), cpu_mhz=float(field("cpu MHz") or 0),
                instruction_sets=[f for f in wanted if f in flags], caches=caches)


def theoretical_peak(info: dict, threads: int) -> dict:
    """Clock x fp32 lanes per vector x 2 FMA units per core x cores (= threads, one per core)."""
    sets = info["instruction_sets"]
    lanes = 16 if "avx512f" in sets else 8 if "avx2" in sets or "avx" in sets else 4
    fma_units = 2
    ghz = info["cpu_mhz"] / 1000
    return dict(gmacs=ghz * lanes * fma_units * threads, ghz=ghz, lanes=lanes, fma_units=fma_units,
                threads=threads,
                derivation=f"{ghz:.3f} GHz (cpu MHz in /proc/cpuinfo) x {lanes} fp32 lanes "
                           f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}) x "
                           f"{fma_units} FMA units per core (assumed) x {threads} core(s)")


def best_seconds(function, threads: int, min_run_time: float, repeats: int = 3) -> float:
    """The fastest block of several: a roof is an upper bound, and load only slows things down."""
    torch.set_num_threads(threads)
    function()
    timer = benchmark.Timer("f()", globals={"f": function}, num_threads=threads)
    return min(min(timer.blocked_autorange(min_run_time=min_run_time).times) for _ in range(repeats))


def roofs(threads: int, min_run_time: float, quick: bool) -> dict:
    kernels = {}
    for m, k, n in ((512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (12544, 256, 256),
                    (196, 1024, 1024)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        kernels[f"torch.mm {m}x{k} @ {k}x{n}"] = m * k * n / best_seconds(lambda: torch.mm(a, b), threads,
                                                                            min_run_time) / 1e9
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    session = du.onnxruntime_session(_MatMul(b), a, threads=threads)
    kernels["onnxruntime MatMul 1024x1024"] = 1024**3 / best_seconds(lambda: session(a), threads,
                                                                      min_run_time) / 1e9
    bandwidth = {}
    for label, size in (("DRAM (2 x 256 MiB copy)", 256 * MIB), ("L3 (2 x 8 MiB copy)", 8 * MIB),
                        ("L2 (2 x 256 KiB copy)", MIB // 4)):
        if quick and size > 64 * MIB:
            size = 64 * MIB
        source = torch.randn(size // 4)
        target = torch.empty_like(source)
        seconds = best_seconds(lambda: target.copy_(source), threads, min_run_time)
        bandwidth[label] = 2 * size / seconds / 1e9             # each byte read once and written once
    return dict(threads=threads, kernels=kernels, bandwidth=bandwidth)


class _MatMul(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, x):
        return x @ self.weight


def machine(info: dict) -> dict:
    import onnxruntime

    return dict(cpu=info["model_name"], cpu_mhz=info["cpu_mhz"], instruction_sets=info["instruction_sets"],
                caches=info["caches"], cpu_count=os.cpu_count(), python=platform.python_version(),
                torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                date=time.strftime("%Y-%m-%d"), load_average_start=list(os.getloadavg()))


def explain(args, sections: set, threads: list[int]) -> int:
    """The measurements of benchmarks/why.py, added to the output file's results."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import why

    path = Path(args.output)
    results = json.loads(path.read_text()) if path.exists() else {"machine": machine(cpuinfo())}
    info = cpuinfo()
    start = time.perf_counter()
    log = lambda text: print(f"[{time.perf_counter() - start:5.0f}s] {text}", flush=True)
    stamp = dict(date=time.strftime("%Y-%m-%d %H:%M"), load_average_start=list(os.getloadavg()))
    results["machine"]["caches_bytes"] = why.caches()
    if "roof" in sections:
        results["roof"] = [why.roof(t, info["instruction_sets"], args.quick) for t in threads]
        for r in results["roof"]:
            log(f"roof, {r['threads']} thread(s): {r.get('compute_gmacs', 0):.1f} GMAC/s, "
                + ", ".join(f"{k} {v:.0f} GB/s" for k, v in r.get("bandwidth_gbs", {}).items()))
    if "attribution" in sections:
        results["attribution"] = [row for t in threads for row in why.attribution(t, args.quick)]
        for r in results["attribution"]:
            log(f"{r['runtime']:<20} {r['network']:<9} {r['threads']} thread(s): "
                f"{r['total_ms']:7.2f} ms profiled ({r['unprofiled_ms']:7.2f} ms unprofiled), "
                f"parts cover {r['covered']:.2f}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in r["parts_ms"].items()))
    if "per_call" in sections:
        results["per_call"] = [why.per_call(t, args.quick) for t in threads]
        for r in results["per_call"]:
            log(f"per call, {r['threads']} thread(s): "
                + ", ".join(f"{k} {v:.1f} us" for k, v in r["microseconds"].items()))
    stamp["load_average_end"] = list(os.getloadavg())
    stamp["seconds"] = round(time.perf_counter() - start)
    stamp["quick"] = bool(args.quick)
    results["machine"]["explained"] = stamp
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nadded {sorted(sections)} to {path}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--batch", type=int, default=32, help="the larger batch size (default 32)")
    parser.add_argument("--quick", action="store_true", help="short timings: a smoke test, not a measurement")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--sections", default="timings,roof,attribution,per_call",
                        help="what to measure (default: all): timings (layers, networks, the "
                             "roofs of matrix products and copies), roof (FMA and read-bandwidth "
                             "microbenchmarks), attribution (profiles), per_call; without "
                             "timings, the others are added to the existing output file")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    unknown = sections - {"timings", "roof", "attribution", "per_call"}
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    if "timings" not in sections:
        return explain(args, sections, [int(t) for t in args.threads.split(",")])
    threads = [int(t) for t in args.threads.split(",")]
    batches = [1, args.batch]
    shapes = du.mobilenet_v1_layer_shapes()
    if args.quick:
        batches = [1, 2]
        settings = dict(layer_rounds=2, layer_min_run_time=0.01, network_rounds=2, network_min_run_time=0.02,
                        large_batch_rounds=2, warmup=1, roof_min_run_time=0.02, layer_batches=[1])
        shapes = shapes[:2] + shapes[-1:]
    else:
        settings = dict(layer_rounds=5, layer_min_run_time=0.04, network_rounds=7, network_min_run_time=0.1,
                        large_batch_rounds=2, warmup=1, roof_min_run_time=0.1, layer_batches=[1])
    # Per layer at batch 1 only, four variants at the larger batch: on a shared 2-core machine the
    # rest would take most of the run's time.
    settings["batches"] = batches
    info = cpuinfo()
    results = {"machine": machine(info), "settings": settings, "roofs": [], "layers": [], "networks": []}
    start = time.perf_counter()
    log = lambda text: print(f"[{time.perf_counter() - start:5.0f}s] {text}", flush=True)

    for t in threads:
        roof = roofs(t, settings["roof_min_run_time"], args.quick)
        roof["theoretical"] = theoretical_peak(info, t)
        results["roofs"].append(roof)
        log(f"roofs, {t} thread(s): matrix multiply {max(roof['kernels'].values()):.1f} GMAC/s, "
            f"theoretical {roof['theoretical']['gmacs']:.1f}, bandwidth "
            + ", ".join(f"{k} {v:.1f} GB/s" for k, v in roof["bandwidth"].items()))
    for t in threads:
        for batch in batches:
            rounds = settings["network_rounds"] if batch == 1 else settings["large_batch_rounds"]
            min_run_time = settings["network_min_run_time"] if batch == 1 else None
            rows = network_case(batch, t, rounds, min_run_time, settings["warmup"],
                                compile_too=not args.quick)
            results["networks"] += rows
            for r in rows:
                s = r["realized_spread"]
                log(f"MobileNet {r['variant']:<12} batch {batch:<3d} threads {t}: "
                    f"{r['seconds']['separable'] * 1e3:8.2f} ms vs {r['seconds']['standard'] * 1e3:8.2f} ms, "
                    f"realized {r['realized']:.2f} [{s['min']:.2f}, {s['max']:.2f}]")
    for t in threads:
        for batch in settings["layer_batches"]:
            for shape in shapes:
                rows = layer_case(shape, batch, t, settings["layer_rounds"], settings["layer_min_run_time"])
                results["layers"] += rows
                log(f"layer {shape['index']:2d} batch {batch:<3d} threads {t}: realized "
                    + ", ".join(f"{r['variant']} {r['realized']:.2f}" for r in rows))
    # The compute roof holds every measured point: the fastest of the dedicated kernels and of
    # every convolution measured at this thread count.
    for roof in results["roofs"]:
        points = {f"layer {r['index']} {kind}, batch {r['batch']}, {r['variant']}": r["mults"][kind] / r["seconds"][kind] / 1e9
                  for r in results["layers"] if r["threads"] == roof["threads"] for kind in KINDS}
        best_kernel = max(roof["kernels"], key=roof["kernels"].get)
        best_point = max(points, key=points.get)
        roof["compute"] = (dict(gmacs=roof["kernels"][best_kernel], source=best_kernel)
                           if roof["kernels"][best_kernel] >= points[best_point]
                           else dict(gmacs=points[best_point], source=best_point))
        roof["memory"] = dict(gbs=roof["bandwidth"]["DRAM (2 x 256 MiB copy)"] if not args.quick
                              else max(roof["bandwidth"].values()), source="DRAM (2 x 256 MiB copy)")
        log(f"compute roof, {roof['threads']} thread(s): {roof['compute']['gmacs']:.1f} GMAC/s "
            f"({roof['compute']['source']})")
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["machine"]["seconds"] = round(time.perf_counter() - start)
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    if sections - {"timings"}:
        explain(args, sections - {"timings"}, threads)
    shown = Path(args.output).resolve()
    print(f"\nwrote {shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

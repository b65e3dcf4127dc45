"""How much faster are depthwise separable convolutions really? (`python3 book.py bench`)

Measures on the CPU, with `dsc_utils.time_side_by_side` (torch.utils.benchmark, warm-up, fixed thread
count, medians of interleaved timings), at batch 1 and at a larger batch:

(a) each of MobileNet's 13 depthwise separable layer shapes: the standard 3x3 convolution against
    `DepthwiseSeparableConv2d`, and the depthwise and pointwise parts alone, in the default
    (contiguous) and the channels-last memory format;
(b) the whole `mobilenet_v1()` against `mobilenet_v1(separable=False)`: as built (batch norm, default
    memory format), with batch norm folded, prepared (`prepare_for_inference`: folded and
    channels-last), and prepared then compiled by `torch.compile` (Inductor, weights frozen, which fuses
    each convolution with its ReLU; needs a C++ compiler, and is skipped without one), at each thread
    count asked for.

For every case it prints the theoretical speedup (the ratio of multiplications), the measured speedup
and realized = measured / theoretical, and writes everything to benchmarks/results.json, which the
speed chapter reads. Options: --quick (shorter timings, for a smoke test), --threads 1,2, --batch N,
--output PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import dsc_utils as du

ROOT = Path(__file__).resolve().parent.parent
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def layer_case(shape: dict, batch: int, memory_format: str, threads: int, rounds: int, min_run_time: float) -> dict:
    m, n, s = shape["in_channels"], shape["out_channels"], shape["stride"]
    torch.manual_seed(shape["index"])
    standard = nn.Conv2d(m, n, 3, s, padding=1, bias=False).eval()
    separable = du.DepthwiseSeparableConv2d(m, n, 3, s, padding=1, bias=False).eval()
    fmt = FORMATS[memory_format]
    for module in (standard, separable):
        module.to(memory_format=fmt).requires_grad_(False)
    x = torch.randn(batch, m, shape["input_size"], shape["input_size"]).contiguous(memory_format=fmt)
    with torch.inference_mode():
        hidden = separable.depthwise(x)
        functions = {
            "standard": lambda: standard(x),
            "separable": lambda: separable(x),
            "depthwise": lambda: separable.depthwise(x),
            "pointwise": lambda: separable.pointwise(hidden),
        }
        seconds = du.time_side_by_side(functions, threads, rounds, min_run_time)
    g = shape["output_size"]
    mults = {
        "standard": batch * du.standard_conv_mults(m, n, 3, g),
        "separable": batch * du.separable_conv_mults(m, n, 3, g),
        "depthwise": batch * du.depthwise_conv_mults(m, 3, g),
        "pointwise": batch * du.pointwise_conv_mults(m, n, g),
    }
    return dict(shape, batch=batch, memory_format=memory_format, threads=threads, seconds=seconds, mults=mults,
                **ratios(mults, seconds))


def ratios(mults: dict, seconds: dict) -> dict:
    theoretical = mults["standard"] / mults["separable"]
    measured = seconds["standard"] / seconds["separable"]
    return dict(theoretical=theoretical, measured=measured, realized=measured / theoretical)


def fold_only(model: nn.Module) -> nn.Module:
    """Batch norm folded, default memory format: prepare_for_inference's first half alone."""
    return du.prepare_for_inference(model, memory_format=torch.contiguous_format)


def compiled(model: nn.Module) -> nn.Module:
    """prepare_for_inference, then torch.compile with frozen weights (compiled at the first call)."""
    import torch._inductor.config

    torch._inductor.config.freezing = True  # constant weights: prepacked, convolution + ReLU fused
    prepared = du.prepare_for_inference(model)
    function = torch.compile(prepared.model)
    return lambda x: function(x.contiguous(memory_format=torch.channels_last))


def can_compile() -> bool:
    return shutil.which("g++") is not None or shutil.which("c++") is not None


def network_case(batch: int, variant: str, threads: int, rounds: int, min_run_time: float) -> dict:
    torch.manual_seed(0)
    models = {"separable": du.mobilenet_v1().eval(), "standard": du.mobilenet_v1(separable=False).eval()}
    x = torch.randn(batch, 3, 224, 224)
    mults = {name: du.count_mults(model, x) for name, model in models.items()}
    if variant == "folded":
        models = {name: fold_only(model) for name, model in models.items()}
    elif variant == "prepared":
        models = {name: du.prepare_for_inference(model) for name, model in models.items()}
    elif variant == "compiled":
        models = {name: compiled(model) for name, model in models.items()}
    with torch.inference_mode():
        seconds = du.time_side_by_side({name: (lambda model=model: model(x)) for name, model in models.items()},
                                       threads, rounds, min_run_time)
    return dict(batch=batch, variant=variant, threads=threads, seconds=seconds, mults=mults, **ratios(mults, seconds))


def machine() -> dict:
    return dict(
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        torch=torch.__version__,
        mkldnn=torch.backends.mkldnn.is_available(),
        date=time.strftime("%Y-%m-%d"),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--batch", type=int, default=32, help="the larger batch size (default 32)")
    parser.add_argument("--quick", action="store_true", help="short timings: a smoke test, not a measurement")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rounds, min_run_time = (1, 0.02) if args.quick else (3, 0.2)
    batches = [1, args.batch]
    shapes = du.mobilenet_v1_layer_shapes()

    plan = [("layer", shape, batch, fmt, t) for t in threads for batch in batches for fmt in FORMATS
            for shape in shapes]
    variants = ("as built", "folded", "prepared") + (("compiled",) if can_compile() else ())
    plan += [("network", None, batch, variant, t) for t in threads for batch in batches for variant in variants]
    results = {"machine": machine(), "rounds": rounds, "min_run_time": min_run_time, "layers": [], "networks": []}
    start = time.perf_counter()
    for step, (kind, shape, batch, option, t) in enumerate(plan, 1):
        if kind == "layer":
            row = layer_case(shape, batch, option, t, rounds, min_run_time)
            results["layers"].append(row)
            label = f"layer {shape['index']:2d} {shape['in_channels']:4d}->{shape['out_channels']:<4d} s{shape['stride']}"
        else:
            row = network_case(batch, option, t, rounds, min_run_time)
            results["networks"].append(row)
            label = f"MobileNet ({option})"
        print(f"[{step:3d}/{len(plan)} {time.perf_counter() - start:5.0f}s] {label:<32} batch {batch:<3d} "
              f"{option if kind == 'layer' else '':<13} threads {t}:  theoretical {row['theoretical']:5.2f}x  "
              f"measured {row['measured']:5.2f}x  realized {row['realized']:4.0%}", flush=True)

    print("\nsummary (median realized fraction over the 13 layers; whole network):")
    for t in threads:
        for batch in batches:
            for fmt in FORMATS:
                rows = [r for r in results["layers"] if r["threads"] == t and r["batch"] == batch
                        and r["memory_format"] == fmt]
                print(f"  threads {t} batch {batch:<3d} layers {fmt:<13}: "
                      f"{statistics.median(r['realized'] for r in rows):.2f}")
            for r in results["networks"]:
                if r["threads"] == t and r["batch"] == batch:
                    print(f"  threads {t} batch {batch:<3d} network {r['variant']:<12}: measured "
                          f"{r['measured']:.2f}x of {r['theoretical']:.2f}x = {r['realized']:.2f}")
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {Path(args.output).relative_to(ROOT) if Path(args.output).is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What does a depthwise separable network cost to train, and in int8? (`python3 benchmarks/training_and_int8.py`)

Measures on the CPU, with interleaved ``torch.utils.benchmark`` timings (warm-up, fixed thread count,
every function of a group timed in turn, ``rounds`` times over; medians and quartiles of all blocks):

(a) a training step (forward, backward, SGD with momentum) of ``mobilenet_v1()`` and of its
    full-convolution twin, at 64x64 with batch 2 and at ImageNet's 224x224 with batch 4;
(b) each of MobileNet's 13 layer shapes: the forward pass, the gradient with respect to the input and
    the gradient with respect to the weight (``aten.convolution_backward`` with one output asked for)
    of the standard 3x3 convolution, the depthwise part and the pointwise part;
(c) large depthwise kernels: the 1x1 expansion, the depthwise k x k convolution and the 1x1 projection
    of EfficientNet-B0's MBConv stages (k = 3, 5), ConvNeXt-T's blocks (k = 7) and four MobileNet
    layers (k = 3, with a dilated version), at batch 1 for inference, the whole set timed twice to
    show the drift from one run to the next, and which oneDNN kernel ran
    the plain and the dilated depthwise layers (its verbose log, in a child process);
(d) int8: the trained digits networks (the training chapter's recipe) and MobileNet in ONNX Runtime,
    float32 against static int8 quantization (per tensor and per channel): test accuracy and time.

Writes benchmarks/training_results.json with the machine (CPU model, instruction sets, threads,
versions, load average), which the chapter on training cost and quantization reads. About three
minutes on two cores. Options: --quick (a smoke test), --output PATH.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import dsc_utils as du

ROOT = Path(__file__).resolve().parent.parent
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8")
DIGITS_EPOCHS = 3          # the chapter's recipe: train_digits defaults, 3 epochs, seed 0
SINGLE_SHARE = 0.5         # single layers and blocks: timed for this share of min_run_time
LARGE_KERNEL_ROUNDS = 7    # the large-kernel blocks: more rounds, and the whole set timed twice


def interleaved(functions: dict, threads: int, rounds: int, min_run_time: float, warmup: int = 2) -> dict:
    """Median and quartiles (seconds per call) of each function, timed in turn ``rounds`` times."""
    result = {}
    for name, rounds_ in du.time_blocks(functions, threads, rounds, min_run_time, warmup).items():
        values = [t for one_round in rounds_ for t in one_round]
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        result[name] = dict(median=statistics.median(values), q1=q1, q3=q3, blocks=len(values))
    return result


def machine() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import onnxruntime
    return dict(cpu=model, isa=[f for f in ISA_FLAGS if f in flags], cpu_count=os.cpu_count(),
                aten_capability=torch.backends.cpu.get_cpu_capability(), python=platform.python_version(),
                torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                load_average=list(os.getloadavg()), date=time.strftime("%Y-%m-%d"))


def training_step_case(resolution: int, batch: int, threads: int, rounds: int, min_run_time: float) -> dict:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution)
    labels = torch.randint(0, 1000, (batch,))
    functions, mults = {}, {}
    for name, separable in (("separable", True), ("standard", False)):
        model = du.mobilenet_v1(separable=separable).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        rows = du.training_mults(model, x)
        mults[name] = sum(r["forward"] + r["grad_input"] + r["grad_weight"] for r in rows)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            F.cross_entropy(model(x), labels).backward()
            optimizer.step()
        functions[name] = step
    seconds = interleaved(functions, threads, rounds, min_run_time)
    theoretical = mults["standard"] / mults["separable"]
    measured = seconds["standard"]["median"] / seconds["separable"]["median"]
    return dict(resolution=resolution, batch=batch, threads=threads, mults=mults, seconds=seconds,
                theoretical=theoretical, measured=measured, realized=measured / theoretical)


def backward_parts_case(shape: dict, batch: int, threads: int, rounds: int, min_run_time: float) -> dict:
    m, n, s, size = shape["in_channels"], shape["out_channels"], shape["stride"], shape["input_size"]
    g = shape["output_size"]
    torch.manual_seed(shape["index"])
    x = torch.randn(batch, m, size, size)
    weights = {"standard": torch.randn(n, m, 3, 3), "depthwise": torch.randn(m, 1, 3, 3),
               "pointwise": torch.randn(n, m, 1, 1)}
    inputs = {"standard": x, "depthwise": x, "pointwise": torch.randn(batch, m, g, g)}
    settings = {"standard": (s, 1, 1), "depthwise": (s, 1, m), "pointwise": (1, 0, 1)}
    functions, mults = {}, {}
    for kind, w in weights.items():
        stride, padding, groups = settings[kind]
        inp = inputs[kind]
        grad = torch.randn(batch, w.shape[0], g, g)
        mults[kind] = batch * w.numel() * g * g          # one weight use per output position
        for part, mask in (("grad_input", [True, False, False]), ("grad_weight", [False, True, False])):
            functions[f"{kind} {part}"] = (
                lambda inp=inp, w=w, grad=grad, st=stride, p=padding, gr=groups, mask=mask:
                torch.ops.aten.convolution_backward(grad, inp, w, None, [st, st], [p, p], [1, 1],
                                                    False, [0, 0], gr, mask))
        functions[f"{kind} forward"] = (lambda inp=inp, w=w, st=stride, p=padding, gr=groups:
                                        F.conv2d(inp, w, None, st, p, 1, gr))
    with torch.no_grad():
        seconds = interleaved(functions, threads, rounds, min_run_time)
    return dict(shape, batch=batch, threads=threads, mults=mults, seconds=seconds)


def block_shapes() -> list[dict]:
    """The large-kernel cases: (network, stage, kernel, channels of the depthwise layer, map size,
    1x1 layers before and after it as (in, out) or None)."""
    cases = []
    channels = 32
    for stage, (t, k, c, layers, stride, resolution) in enumerate(du.EFFICIENTNET_B0_STAGES, 2):
        size = resolution // stride
        inner = c if layers > 1 else channels          # the stage's last layer
        hidden = t * inner
        cases.append(dict(network="EfficientNet-B0", stage=stage, kernel=k, channels=hidden, size=size,
                          dilation=1, before=(inner, hidden) if t > 1 else None, after=(hidden, c)))
        channels = c
    for stage, (c, blocks, size) in enumerate(du.CONVNEXT_T_STAGES, 1):
        cases.append(dict(network="ConvNeXt-T", stage=stage, kernel=7, channels=c, size=size, dilation=1,
                          before=None, after=(c, 4 * c), after2=(4 * c, c)))
    for shape in du.mobilenet_v1_layer_shapes():
        if shape["index"] in (2, 4, 7, 13):
            for dilation in (1, 2):
                cases.append(dict(network="MobileNet", stage=shape["index"], kernel=3,
                                  channels=shape["in_channels"], size=shape["output_size"],
                                  dilation=dilation, before=None,
                                  after=(shape["in_channels"], shape["out_channels"])))
    return cases


DILATED_PROBE = """
import torch
from torch import nn
torch.set_num_threads(1)
for channels, size, dilation in {shapes}:
    conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                     groups=channels, bias=False).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, channels, size, size).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
"""


def dilated_kernels() -> list[dict]:
    """Which oneDNN kernel runs MobileNet's depthwise layers of the large-kernel cases, plain and
    dilated (channels-last, batch 1, one thread), from oneDNN's verbose log in a child process."""
    import subprocess
    shapes = [(c["channels"], c["size"], c["dilation"]) for c in block_shapes()
              if c["network"] == "MobileNet"]
    env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1")
    log = subprocess.run([sys.executable, "-c", DILATED_PROBE.format(shapes=shapes)], env=env,
                         capture_output=True, text=True, check=True).stdout
    found = []
    for line in log.splitlines():
        fields = line.split(",")
        if len(fields) > 6 and fields[3] == "exec" and fields[5] == "convolution":
            problem = fields[-2]
            found.append(dict(kernel=fields[6], problem=problem,
                              dilation=1 + int(problem.split("dh")[1].split("p")[0])))
    return [dict(channels=c, size=s, dilation=d, kernel=f["kernel"])
            for (c, s, d), f in zip(shapes, found)]


def large_kernel_case(case: dict, threads: int, rounds: int, min_run_time: float) -> dict:
    torch.manual_seed(0)
    c, k, size, d = case["channels"], case["kernel"], case["size"], case["dilation"]
    fmt = torch.channels_last
    layers = {"depthwise": nn.Conv2d(c, c, k, padding=d * (k // 2), dilation=d, groups=c, bias=False)}
    inputs = {"depthwise": torch.randn(1, c, size, size)}
    for part in ("before", "after", "after2"):
        if case.get(part):
            m, n = case[part]
            layers[part] = nn.Conv2d(m, n, 1, bias=False)
            inputs[part] = torch.randn(1, m, size, size)
    functions = {}
    for part, layer in layers.items():
        layer.eval().requires_grad_(False).to(memory_format=fmt)
        functions[part] = (lambda layer=layer, x=inputs[part].contiguous(memory_format=fmt): layer(x))
    with torch.inference_mode():
        seconds = interleaved(functions, threads, rounds, min_run_time)
    mults = {"depthwise": c * k * k * size * size}
    for part in ("before", "after", "after2"):
        if case.get(part):
            mults[part] = case[part][0] * case[part][1] * size * size
    return dict(case, threads=threads, mults=mults, seconds=seconds)


def int8_cases(threads: int, rounds: int, min_run_time: float) -> list[dict]:
    torch.set_num_threads(1)
    data = du.load_digits_split()
    x_train, _, x_test, y_test = data
    rows = []
    for name, separable in (("digits separable", True), ("digits standard", False)):
        model = du.digits_cnn(separable=separable)
        du.train_digits(model, data, epochs=DIGITS_EPOCHS, seed=0)
        model = model.float().eval()
        example, calibration = x_test.float(), [x_train[:len(y_test)].float()]
        runs = {"float": du.onnxruntime_session(model, example, threads=threads)}
        for scheme, per_channel in (("int8 per tensor", False), ("int8 per channel", True)):
            runs[scheme] = du.onnxruntime_int8_session(model, example, calibration, per_channel, threads)
        accuracy = {scheme: (run(example).argmax(1) == y_test).double().mean().item()
                    for scheme, run in runs.items()}
        seconds = interleaved({scheme: (lambda run=run: run(example)) for scheme, run in runs.items()},
                              threads, rounds, min_run_time)
        rows.append(dict(model=name, batch=len(y_test), threads=threads, accuracy=accuracy, seconds=seconds))
    torch.manual_seed(0)
    x = torch.randn(1, 3, 128, 128)
    calibration = [torch.randn(1, 3, 128, 128) for _ in range(4)]
    for name, separable in (("MobileNet", True), ("Conv MobileNet", False)):
        model = du.randomize_batch_norms(du.mobilenet_v1(separable=separable)).eval()
        with torch.no_grad():
            reference = model(x)
        runs = {"float": du.onnxruntime_session(model, x, threads=threads),
                "int8 per channel": du.onnxruntime_int8_session(model, x, calibration, True, threads)}
        sqnr = {scheme: du.sqnr_db(reference, run(x)) for scheme, run in runs.items()}
        seconds = interleaved({scheme: (lambda run=run: run(x)) for scheme, run in runs.items()},
                              threads, rounds, min_run_time)
        rows.append(dict(model=name, batch=1, resolution=128, threads=threads, output_sqnr_db=sqnr,
                         seconds=seconds))
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timings: a smoke test, not a measurement")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "training_results.json"))
    args = parser.parse_args(argv)
    rounds, min_run_time = (1, 0.01) if args.quick else (3, 0.1)
    start = time.perf_counter()
    results = {"machine": machine(), "rounds": rounds, "min_run_time": min_run_time}

    def say(text):
        print(f"[{time.perf_counter() - start:5.0f}s] {text}", flush=True)

    results["training_steps"] = []
    for resolution, batch in ((64, 2), (224, 4)):   # small and fast; ImageNet's resolution
        row = training_step_case(resolution, batch, 1, rounds, min_run_time)
        results["training_steps"].append(row)
        say(f"training step, {resolution}x{resolution}, batch {batch}: theoretical "
            f"{row['theoretical']:.2f}x, measured {row['measured']:.2f}x, realized "
            f"{row['realized']:.2f}")
    results["backward_parts"] = []
    for shape in du.mobilenet_v1_layer_shapes(112):
        row = backward_parts_case(shape, 2, 1, rounds, min_run_time * SINGLE_SHARE)
        results["backward_parts"].append(row)
        dw = row["seconds"]
        say(f"layer {shape['index']:2d}: depthwise grad_weight / forward "
            f"{dw['depthwise grad_weight']['median'] / dw['depthwise forward']['median']:.2f}")
    for key in ("large_kernels", "large_kernels_repeat"):   # twice: the drift between runs
        results[key] = []
        for case in block_shapes():
            row = large_kernel_case(case, 1, LARGE_KERNEL_ROUNDS if not args.quick else 1,
                                    min_run_time * SINGLE_SHARE)
            results[key].append(row)
            share = row["seconds"]["depthwise"]["median"] / sum(v["median"] for v in row["seconds"].values())
            say(f"{key}: {case['network']} stage {case['stage']} k={case['kernel']} "
                f"d={case['dilation']}: depthwise time share {share:.2f}")
    results["dilated_kernels"] = dilated_kernels()
    say(f"oneDNN kernels, plain and dilated depthwise: {results['dilated_kernels']}")
    results["int8"] = int8_cases(1, rounds, min_run_time)
    for row in results["int8"]:
        say(f"{row['model']}: " + ", ".join(f"{k} {v['median'] * 1e3:.2f} ms" for k, v in row["seconds"].items()))
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["seconds_total"] = time.perf_counter() - start
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    say(f"wrote {Path(args.output).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

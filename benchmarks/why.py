"""Why the speed is what it is: the measurements behind the speed chapter's explanations.

Called by benchmarks/speed.py (`python3 book.py bench`, or `--sections roof,attribution,per_call`
to add these to the stored results without re-running the rest). Four measurements:

- ``roof``: the compute roof from an FMA microbenchmark (benchmarks/roof.c: independent fused
  multiply-adds in vector registers, compiled with the machine's own instruction set) and the read
  bandwidth of each cache level and of DRAM, each with a buffer sized from the cache sizes the
  machine reports (half a level's capacity per thread, so that it stays there), at 1 and 2 threads;
  and the speed of a plain depthwise kernel of the libraries' loop structure (roof.c ``dw``) on
  MobileNet's stride-1 depthwise shapes.
- ``attribution``: where the time of one MobileNet call goes, at batch 1, per runtime and network.
  PyTorch: ``torch.profiler`` with every leaf module labelled by its kind (standard, depthwise or
  pointwise convolution; element-wise: batch norm and ReLU; other), and oneDNN's own log
  (``ONEDNN_VERBOSE=1``, in a child process) naming every kernel and every reorder it executed
  with its time; the reorders are taken out of the convolutions that run them. ONNX Runtime: its
  session profile, node by node.
- ``per_call``: the cost of a convolution too small to cost anything else (one channel, 1x1), in
  PyTorch and in an ONNX Runtime session.
- ``kernels``: which library computes the pointwise convolutions at 1 and at 2 threads (the
  oneDNN log), and the bytes and time of the reorders per call in eager PyTorch.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

import dsc_utils as du

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# The machine's caches, read from the kernel
# ----------------------------------------------------------------------------------------------

def _size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]?)", text.strip()).groups()
    return int(number) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit]


def caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict:
    """Data and unified caches of CPU 0: level -> size in bytes and the CPUs that share it
    (empty where the kernel does not report them)."""
    found = {}
    for index in sorted(Path(root).glob("index*")):
        kind = (index / "type").read_text().strip()
        if kind == "Instruction":
            continue
        level = int((index / "level").read_text())
        shared = (index / "shared_cpu_list").read_text().strip()
        count = sum(len(range(int(a), int(b) + 1)) if "-" in part else 1
                    for part in shared.split(",") for a, _, b in [part.partition("-")])
        found[f"L{level}"] = dict(bytes=_size((index / "size").read_text()), shared_by=count)
    return found


# ----------------------------------------------------------------------------------------------
# The roof: FMA microbenchmark and read bandwidth per level
# ----------------------------------------------------------------------------------------------

def _compile_roof(vector_bytes: int, directory: Path) -> Path | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    binary = directory / "roof"
    subprocess.run([compiler, "-O2", "-march=native", "-ffp-contract=fast", "-fopenmp",
                    f"-DVB={vector_bytes}", "-o", str(binary), str(HERE / "roof.c")], check=True)
    return binary


def _run_roof(binary: Path, threads: int, *args) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="spread")
    out = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return float(out[0])


def roof(threads: int, instruction_sets: list[str], quick: bool = False) -> dict:
    vector_bytes = 64 if "avx512f" in instruction_sets else 32 if "avx" in instruction_sets else 16
    levels = caches()
    with tempfile.TemporaryDirectory() as directory:
        binary = _compile_roof(vector_bytes, Path(directory))
        if binary is None:
            return dict(threads=threads, skipped="no C compiler")
        repeats = 2 if quick else 5
        iterations = 2 * 10**7 if quick else 2 * 10**8
        compute = max(_run_roof(binary, threads, "fma", iterations) for _ in range(repeats))
        bandwidth, buffers = {}, {}
        for level, cache in levels.items():
            per_thread = cache["bytes"] // max(1, min(cache["shared_by"], threads)) \
                if cache["shared_by"] > 1 else cache["bytes"]
            buffers[level] = per_thread // 2
        buffers["DRAM"] = (32 if quick else 256) * 2**20 // threads
        for level, size in buffers.items():
            passes = max(1, int((1e9 if quick else 8e9) / size / threads))
            bandwidth[level] = max(_run_roof(binary, threads, "read", size, passes)
                                   for _ in range(repeats))
        kernel = []
        for channels, size in depthwise_shapes():
            calls = max(1, int((1e8 if quick else 1e9) / (9 * channels * size * size)))
            rates = [_run_roof(binary, threads, "dw", channels, size, calls)
                     for _ in range(repeats)]
            kernel.append(dict(channels=channels, size=size, gmacs=statistics.median(rates),
                               gmacs_range=[min(rates), max(rates)]))
    lanes = vector_bytes // 4
    return dict(threads=threads, compute_gmacs=compute,
                compute_source=(f"FMA microbenchmark (benchmarks/roof.c): 12 independent "
                                f"{lanes}-lane fp32 FMA chains per thread, {threads} thread(s), "
                                f"best of {repeats}"),
                vector_lanes=lanes, bandwidth_gbs=bandwidth, buffer_bytes_per_thread=buffers,
                bandwidth_source="each thread sums its own buffer (reads only), best of "
                                 f"{repeats}", caches=levels,
                depthwise_kernel=kernel,
                depthwise_kernel_source=(
                    "benchmarks/roof.c dw: 3x3 stride-1 depthwise convolution, channels in "
                    f"blocks of {lanes}, 4 outputs of a row per step, nine weight vectors in "
                    "registers, one input load per vector FMA, input padded in advance; "
                    f"median of {repeats} runs, each the median of 5 timings"))


def depthwise_shapes() -> list[tuple[int, int]]:
    """(channels, map size) of MobileNet's stride-1 depthwise convolutions, each once."""
    return sorted({(layer["in_channels"], layer["input_size"])
                   for layer in du.mobilenet_v1_layer_shapes() if layer["stride"] == 1})


# ----------------------------------------------------------------------------------------------
# Attribution: PyTorch (profiler + oneDNN log) and ONNX Runtime (session profile)
# ----------------------------------------------------------------------------------------------

def networks() -> dict:
    torch.manual_seed(0)
    return {"separable": du.randomize_batch_norms(du.mobilenet_v1()).eval(),
            "standard": du.randomize_batch_norms(du.mobilenet_v1(separable=False)).eval()}


def prepared(model: nn.Module, variant: str):
    if variant == "as built":
        return model
    return du.prepare_for_inference(model)          # "prepared": folded and channels-last


LABELS = ("standard", "depthwise", "pointwise", "elementwise", "other")   # profiler regions


def _label(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return du.layer_kind(module) or "standard"
    if isinstance(module, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6)):
        return "elementwise"
    if len(list(module.children())) == 0:
        return "other"
    return None


def _labelled(model: nn.Module) -> list:
    """Forward hooks that open a profiler region named by each leaf module's kind."""
    handles, open_regions = [], []
    for module in model.modules():
        label = _label(module)
        if label is None:
            continue

        def enter(module, inputs, label=label):
            open_regions.append(torch.profiler.record_function(label))
            open_regions[-1].__enter__()

        def leave(module, inputs, output):
            open_regions.pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


def profile_pytorch(model: nn.Module, x: torch.Tensor, threads: int, calls: int) -> dict:
    """Milliseconds per call of each labelled kind, of the ATen operators outside any module
    (the layout conversion of a prepared model), and of the whole call; the ATen operators that
    each kind ran."""
    torch.set_num_threads(threads)
    inner = model.model if isinstance(model, du.InferenceModel) else model
    handles = _labelled(inner)
    try:
        with torch.inference_mode():
            for _ in range(5):
                model(x)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(calls):
                    with torch.profiler.record_function("call"):
                        model(x)
    finally:
        for handle in handles:
            handle.remove()
    parts, operators, total = {}, {}, 0.0
    for event in prof.events():
        if event.name != "call":
            continue
        total += event.cpu_time_total
        stack = list(event.cpu_children)
        while stack:
            child = stack.pop()
            if child.name in LABELS:
                parts[child.name] = parts.get(child.name, 0.0) + child.cpu_time_total
                operators.setdefault(child.name, set()).update(
                    c.name for c in child.cpu_children)
            elif child.name.startswith("aten::") and not _has_region(child):
                parts["outside modules"] = parts.get("outside modules", 0.0) + child.cpu_time_total
            else:
                stack += list(child.cpu_children)
    return dict(parts_ms={k: v / calls / 1e3 for k, v in parts.items()},
                total_ms=total / calls / 1e3,
                operators={k: sorted(v) for k, v in operators.items()})


def _has_region(event) -> bool:
    stack = list(event.cpu_children)
    while stack:
        child = stack.pop()
        if child.name in LABELS:
            return True
        stack += list(child.cpu_children)
    return False


_ONEDNN_CHILD = r"""
import sys, torch, dsc_utils as du
sys.path.insert(0, {here!r})
import why
variant, name, threads, calls = {variant!r}, {name!r}, {threads}, {calls}
torch.set_num_threads(threads)
model = why.prepared(why.networks()[name], variant)
x = torch.randn(1, 3, 224, 224)
with torch.inference_mode():
    for _ in range(3):
        model(x)
    print("==== calls", flush=True)
    for _ in range(calls):
        model(x)
    print("==== end", flush=True)
"""


def onednn_log(variant: str, name: str, threads: int, calls: int) -> dict:
    """What oneDNN executed in `calls` calls (after three): per call, the milliseconds and count of
    each primitive kind, the reorders' bytes, and the reorder time attributed to the convolution
    kind whose call ran it (a reorder from a blocked layout follows its convolution, one to a
    blocked layout precedes it)."""
    code = _ONEDNN_CHILD.format(here=str(HERE), variant=variant, name=name, threads=threads,
                                calls=calls)
    env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True).stdout
    lines = out.split("==== calls", 1)[1].split("==== end", 1)[0].splitlines()
    return parse_onednn_log(lines, calls)


def parse_onednn_log(lines: list[str], calls: int) -> dict:
    """The summary of :func:`onednn_log` from the log's lines of `calls` calls."""
    events = []
    for line in lines:
        fields = line.split(",")
        if len(fields) < 10 or fields[0] != "onednn_verbose" or fields[3] != "exec":
            continue
        kind, implementation, shape, ms = fields[5], fields[6], fields[-2], float(fields[-1])
        if kind == "convolution":
            groups = re.match(r"g(\d+)mb", shape)
            channels = re.search(r"ic(\d+)oc(\d+)", shape)
            if groups and int(groups.group(1)) == int(channels.group(1)) == int(channels.group(2)):
                kind = "depthwise"
            elif "kh1" in shape and "kw1" in shape:
                kind = "pointwise"
            else:
                kind = "standard"
        elif kind == "reorder":
            source = re.search(r"src:f32:[a-z]*:blocked:([A-Za-z0-9]+)", line)
            blocked_source = bool(source and re.search(r"[A-Z]", source.group(1)))
            dims = [int(d) for d in shape.split("x") if d.isdigit()]
            events.append(dict(kind="reorder", ms=ms, implementation=implementation,
                               bytes=4 * int(torch.tensor(dims).prod()) if dims else 0,
                               after=blocked_source))
            continue
        algorithm = next((f for f in fields if f.startswith("alg:")), "")
        events.append(dict(kind=kind, ms=ms, implementation=implementation,
                           algorithm=algorithm.removeprefix("alg:")))
    per_kind, counts, implementations, algorithms = {}, {}, {}, {}
    reorder_of = {}
    convolutions = [i for i, e in enumerate(events) if e["kind"] != "reorder"]
    for i, event in enumerate(events):
        per_kind[event["kind"]] = per_kind.get(event["kind"], 0.0) + event["ms"]
        counts[event["kind"]] = counts.get(event["kind"], 0) + 1
        implementations.setdefault(event["kind"], set()).add(event["implementation"])
        if event.get("algorithm"):
            algorithms.setdefault(event["kind"], set()).add(event["algorithm"])
        if event["kind"] == "reorder":
            before = [c for c in convolutions if c < i]
            after = [c for c in convolutions if c > i]
            owner = (before[-1] if before else None) if event["after"] else \
                (after[0] if after else None)
            owner_kind = events[owner]["kind"] if owner is not None else "outside"
            reorder_of[owner_kind] = reorder_of.get(owner_kind, 0.0) + event["ms"]
    reorder_bytes = sum(e.get("bytes", 0) for e in events if e["kind"] == "reorder")
    return dict(ms={k: v / calls for k, v in per_kind.items()},
                count={k: v // calls for k, v in counts.items()},
                implementations={k: sorted(v) for k, v in implementations.items()},
                algorithms={k: sorted(v) for k, v in algorithms.items()},
                reorder_ms_by_convolution={k: v / calls for k, v in reorder_of.items()},
                reorder_bytes=reorder_bytes // calls)


def unprofiled_ms(function, threads: int, min_run_time: float) -> float:
    torch.set_num_threads(threads)
    timer = benchmark.Timer("f()", globals={"f": function}, num_threads=threads)
    return statistics.median(timer.blocked_autorange(min_run_time=min_run_time).times) * 1e3


def attribution_pytorch(variant: str, name: str, model: nn.Module, threads: int,
                        quick: bool) -> dict:
    x = torch.randn(1, 3, 224, 224)
    run = prepared(model, variant)
    calls = 3 if quick else 20
    profiled = profile_pytorch(run, x, threads, calls)
    log = onednn_log(variant, name, threads, 2 if quick else 10)
    parts = {}
    for kind in ("depthwise", "pointwise", "standard"):
        if kind in profiled["parts_ms"]:
            inside = log["reorder_ms_by_convolution"].get(kind, 0.0)
            parts[kind] = profiled["parts_ms"][kind] - inside
    parts["reorders"] = sum(log["reorder_ms_by_convolution"].values())
    parts["elementwise"] = profiled["parts_ms"].get("elementwise", 0.0)
    parts["other"] = (profiled["parts_ms"].get("other", 0.0)
                      + profiled["parts_ms"].get("outside modules", 0.0))
    with torch.inference_mode():
        plain = unprofiled_ms(lambda: run(x), threads, 0.05 if quick else 0.5)
    return dict(runtime=f"pytorch, {variant}", network=name, threads=threads, batch=1,
                parts_ms=parts, total_ms=profiled["total_ms"], unprofiled_ms=plain,
                covered=sum(parts.values()) / profiled["total_ms"],
                aten_operators=profiled["operators"], onednn=log)


def _ort_kind(node: dict) -> str:
    op = node["args"].get("op_name", "")
    shapes = node["args"].get("input_type_shape", [])
    if op in ("ReorderInput", "ReorderOutput", "Transpose"):
        return "reorders"
    if "Conv" in op and len(shapes) >= 2:
        weight = list(shapes[1].values())[0]
        if len(weight) == 4 and weight[1] == 1 and weight[2] > 1:
            return "depthwise"
        if len(weight) == 4 and weight[2] == weight[3] == 1:
            return "pointwise"
        return "standard"
    if op in ("Relu", "Clip", "Add", "BatchNormalization", "Mul"):
        return "elementwise"
    return "other"


def attribution_onnxruntime(name: str, model: nn.Module, threads: int, quick: bool) -> dict:
    import onnxruntime

    x = torch.randn(1, 3, 224, 224)
    onnx_bytes = du._to_onnx(copy.deepcopy(model).eval(), (x,))
    calls = 3 if quick else 20
    with tempfile.TemporaryDirectory() as directory:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(directory) / "profile")
        session = onnxruntime.InferenceSession(onnx_bytes, options,
                                               providers=["CPUExecutionProvider"])
        feed = {"input": x.numpy()}
        for _ in range(5):
            session.run(None, feed)
        start_marker = time.perf_counter_ns()
        for _ in range(calls):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"][-calls:]
    first = runs[0]["ts"]
    parts, ops = {}, {}
    for event in events:
        if event.get("cat") != "Node" or event["ts"] < first or not event["name"].endswith(
                "_kernel_time"):
            continue
        kind = _ort_kind(event)
        parts[kind] = parts.get(kind, 0.0) + event["dur"] / calls / 1e3
        ops.setdefault(kind, set()).add(event["args"].get("op_name", ""))
    total = sum(e["dur"] for e in runs) / calls / 1e3
    del start_marker
    plain_session = du.onnxruntime_session(model, x, threads=threads)
    plain = unprofiled_ms(lambda: plain_session(x), threads, 0.05 if quick else 0.5)
    return dict(runtime="onnxruntime", network=name, threads=threads, batch=1,
                parts_ms=parts, total_ms=total, unprofiled_ms=plain,
                covered=sum(parts.values()) / total, operators={k: sorted(v) for k, v in ops.items()})


def attribution(threads: int, quick: bool = False) -> list[dict]:
    rows = []
    for name, model in networks().items():
        for variant in ("as built", "prepared"):
            rows.append(attribution_pytorch(variant, name, model, threads, quick))
        rows.append(attribution_onnxruntime(name, model, threads, quick))
    return rows


# ----------------------------------------------------------------------------------------------
# Per-call cost and the pointwise kernels
# ----------------------------------------------------------------------------------------------

def per_call(threads: int, quick: bool = False) -> dict:
    """Median time of a 1x1 convolution of one channel on a 1x1 map: the cost of a call itself."""
    torch.manual_seed(0)
    tiny = nn.Conv2d(1, 1, 1).eval()
    x = torch.randn(1, 1, 1, 1)
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8).eval()
    x8 = torch.randn(1, 8, 1, 1)
    min_run_time = 0.05 if quick else 0.5
    with torch.inference_mode():
        result = {"pytorch 1x1 convolution, 1 channel, 1x1 map":
                  unprofiled_ms(lambda: tiny(x), threads, min_run_time) * 1e3,
                  "pytorch 3x3 depthwise, 8 channels, 1x1 map":
                  unprofiled_ms(lambda: depthwise(x8), threads, min_run_time) * 1e3}
    session = du.onnxruntime_session(tiny, x, threads=threads)
    result["onnxruntime session, 1x1 convolution, 1 channel"] = unprofiled_ms(
        lambda: session(x), threads, min_run_time) * 1e3
    return dict(threads=threads, microseconds=result)

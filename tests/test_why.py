"""The speed benchmark's explanations (benchmarks/why.py): the parsing of oneDNN's log and of
ONNX Runtime's profile, and the cache sizes read from the kernel."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import why  # noqa: E402

PREFIX = "onednn_verbose,v1,primitive,exec,cpu,"
LOG = [
    PREFIX + "reorder,jit:uni,undef,src:f32::blocked:abcd::f0 dst:f32::blocked:Acdb8a::f0,"
             "attr-scratchpad:user,,32x3x3x3,0.5",
    PREFIX + "convolution,jit:avx2,forward_training,src:f32:a:blocked:abcd::f0 wei:f32:a:blocked"
             ":Acdb8a::f0 dst:f32:a:blocked:aBcd8b::f0,attr-scratchpad:user,"
             "alg:convolution_direct,mb1_ic3oc32_ih224oh112kh3sh2dh0ph1_iw224ow112kw3sw2dw0pw1,2.0",
    PREFIX + "reorder,jit:blk,undef,src:f32::blocked:aBcd8b::f0 dst:f32::blocked:abcd::f0,"
             "attr-scratchpad:user,,1x32x112x112,1.0",
    PREFIX + "convolution,jit_dw:avx2,forward_training,src:f32:a:blocked:aBcd8b::f0 wei:f32:a:"
             "blocked:Abcde8a::f0 dst:f32:a:blocked:aBcd8b::f0,attr-scratchpad:user,"
             "alg:convolution_direct,g32mb1_ic32oc32_ih112oh112kh3sh1dh0ph1_iw112ow112kw3sw1dw0pw1,"
             "3.0",
    PREFIX + "convolution,jit_1x1:avx2,forward_training,src:f32:a:blocked:aBcd8b::f0 wei:f32:a:"
             "blocked:ABcd8b8a::f0 dst:f32:a:blocked:aBcd8b::f0,attr-scratchpad:user,"
             "alg:convolution_direct,mb1_ic32oc64_ih112oh112kh1sh1dh0ph0_iw112ow112kw1sw1dw0pw0,4.0",
    "a line that is not oneDNN's",
]


def test_the_log_is_summarised_per_call_by_kind():
    summary = why.parse_onednn_log(LOG * 2, calls=2)           # two identical calls
    assert summary["ms"] == {"reorder": 1.5, "standard": 2.0, "depthwise": 3.0,
                             "pointwise": 4.0}
    assert summary["count"] == {"reorder": 2, "standard": 1, "depthwise": 1, "pointwise": 1}
    assert summary["implementations"]["depthwise"] == ["jit_dw:avx2"]
    assert summary["algorithms"] == {k: ["convolution_direct"]
                                     for k in ("standard", "depthwise", "pointwise")}
    # bytes of the reorders: 32*3*3*3 and 32*112*112 fp32 values
    assert summary["reorder_bytes"] == 4 * (32 * 3 * 3 * 3 + 32 * 112 * 112)


def test_a_reorder_belongs_to_the_convolution_it_serves():
    # the weight reorder (from a plain layout) precedes the stem's convolution; the reorder from
    # the blocked output back to plain follows it: both are the stem's
    summary = why.parse_onednn_log(LOG, calls=1)
    assert summary["reorder_ms_by_convolution"] == {"standard": 1.5}
    alone = why.parse_onednn_log(LOG[:1], calls=1)             # no convolution at all
    assert alone["reorder_ms_by_convolution"] == {"outside": 0.5}


@pytest.mark.parametrize("op, weight, kind", [
    ("Conv", [32, 1, 3, 3], "depthwise"), ("FusedConv", [64, 32, 1, 1], "pointwise"),
    ("Conv", [64, 32, 3, 3], "standard"), ("ReorderInput", None, "reorders"),
    ("Relu", None, "elementwise"), ("Gemm", [1000, 1024], "other"),
])
def test_onnxruntime_nodes_are_sorted_by_kind(op, weight, kind):
    shapes = [{"float": [1, 32, 56, 56]}] + ([{"float": weight}] if weight else [])
    assert why._ort_kind({"args": {"op_name": op, "input_type_shape": shapes}}) == kind


def test_cache_sizes_are_read_from_sysfs(tmp_path):
    for index, (level, kind, size, shared) in enumerate([
            (1, "Data", "32K", "0"), (1, "Instruction", "32K", "0"),
            (2, "Unified", "512K", "0"), (3, "Unified", "32768K", "0-1")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size),
                            ("shared_cpu_list", shared)):
            (folder / name).write_text(f"{value}\n")
    assert why.caches(tmp_path) == {"L1": {"bytes": 32768, "shared_by": 1},
                                    "L2": {"bytes": 524288, "shared_by": 1},
                                    "L3": {"bytes": 33554432, "shared_by": 2}}
    assert why.caches(tmp_path / "missing") == {}


@pytest.mark.parametrize("text, value", [("32K", 32768), ("1024K", 2**20), ("32M", 2**25),
                                          ("512", 512)])
def test_cache_size_text(text, value):
    assert why._size(text) == value


def test_depthwise_shapes_are_mobilenets_stride_1_layers():
    shapes = why.depthwise_shapes()
    assert shapes == [(32, 112), (128, 56), (256, 28), (512, 14), (1024, 7)]


@pytest.mark.skipif(why.shutil.which("gcc") is None and why.shutil.which("cc") is None,
                    reason="no C compiler")
@pytest.mark.parametrize("threads, channels, size", [(1, 16, 7), (2, 24, 9), (1, 8, 1)])
def test_the_depthwise_kernel_checks_its_own_output(tmp_path, threads, channels, size):
    # roof.c compares every output of its kernel with a plain loop and exits non-zero if
    # one differs; sizes that are not multiples of the 4-output step exercise the tail
    binary = why._compile_roof(16, tmp_path)
    rate = why._run_roof(binary, threads, "dw", channels, size, 1)
    assert rate > 0

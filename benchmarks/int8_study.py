"""Int8 on the trained MobileNetV2 (`.venv/bin/python benchmarks/int8_study.py`).

The int8 section of the training-cost chapter reads the results. torchvision's ImageNet weights
(`dsc_utils.pretrained_mobilenet_v2`) run on crops of the eight photographs that ship with
scikit-learn and scikit-image (`dsc_utils.sample_photos`):

- evaluation: every photograph resized to a shorter side of 256 and of 320, cropped at the centre
  and at a quarter and three quarters of the way down and across, each crop also mirrored:
  12 crops a photograph, 96 in all;
- calibration: the four corner crops of every photograph at a shorter side of 288, 32 crops, none
  of them an evaluation crop.

Fidelity to the float network (float64, the same on every CPU): the SQNR of the logits over the
whole evaluation set and the share of crops whose top-1 class is unchanged, for int8 weights alone (`dsc_utils.quantize_weights`)
and for int8 weights and activations (`dsc_utils.simulate_int8`), per tensor and per channel, each
with and without cross-layer equalization (`dsc_utils.equalize_cross_layer`). The value of every
crop is stored, so that the chapter can recompute some and find the same.

ONNX Runtime (float32, this machine's kernels): static int8 in QDQ form
(`dsc_utils.onnxruntime_int8_session`), calibrated on the calibration crops, per tensor, per
channel (also with 7-bit weights, ONNX Runtime's remedy for processors without VNNI) and
equalized per tensor: the same fidelity, and the time of a call at batch 1 against the
float32 session (interleaved rounds, medians). Writes benchmarks/int8_results.json with the
machine, including the instruction sets for int8 (AVX-512 VNNI, AVX-VNNI) it has or lacks.
About three minutes on two cores; --quick for a smoke test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import dsc_utils as du

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from training_and_int8 import interleaved, machine  # noqa: E402

EVALUATION = [dict(short_side=short, position=(at, at), flip=flip)
              for short in (256, 320) for at in (0.5, 0.25, 0.75) for flip in (False, True)]
CALIBRATION = [dict(short_side=288, position=position, flip=False)
               for position in ((0, 0), (0, 1), (1, 0), (1, 1))]
SCHEMES = {"per tensor": (False, False), "per channel": (True, False),
           "equalized, per tensor": (False, True), "equalized, per channel": (True, True)}


def crops(settings: list[dict], photos: dict | None = None) -> tuple[torch.Tensor, list[str]]:
    """The crops of every photograph (float64) and their names, photograph by photograph."""
    photos = du.sample_photos() if photos is None else photos
    images, names = [], []
    for name, image in photos.items():
        for setting in settings:
            images.append(du.imagenet_preprocess(image, **setting, dtype=torch.float64))
            names.append(f"{name} {setting['short_side']} {setting['position']}"
                         f"{' flipped' if setting['flip'] else ''}")
    return torch.stack(images), names


def fidelity(reference: torch.Tensor, output: torch.Tensor) -> dict:
    """SQNR of the logits over the set, top-1 agreement, and both for every crop."""
    per_crop = [du.sqnr_db(r, o) for r, o in zip(reference, output)]
    same = (reference.argmax(1) == output.argmax(1)).tolist()
    return dict(sqnr_db=du.sqnr_db(reference, output), top1_agreement=sum(same) / len(same),
                sqnr_db_per_crop=per_crop, top1_same_per_crop=same)


def simulated(model, evaluation, calibration, batch: int = 24) -> dict:
    """Fidelity of int8 weights, and of int8 weights and activations, for every scheme."""
    def run(network):
        with torch.no_grad():
            return torch.cat([network(evaluation[i:i + batch])
                              for i in range(0, len(evaluation), batch)])

    reference = run(model)
    equalized = du.equalize_cross_layer(model)
    result = {"weights": {}, "weights and activations": {}}
    for scheme, (per_channel, equalize) in SCHEMES.items():
        source = equalized if equalize else model
        result["weights"][scheme] = fidelity(reference, run(du.quantize_weights(source, per_channel)))
        result["weights and activations"][scheme] = fidelity(
            reference, run(du.simulate_int8(source, calibration, per_channel)))
        print(f"[{time.strftime('%H:%M:%S')}] {scheme}: weights "
              f"{result['weights'][scheme]['sqnr_db']:.1f} dB, weights and activations "
              f"{result['weights and activations'][scheme]['sqnr_db']:.1f} dB", flush=True)
    return result


def onnxruntime_runs(model, evaluation, calibration, threads: int, rounds: int,
                     min_run_time: float) -> dict:
    """ONNX Runtime float32 and static int8 (QDQ): fidelity over the set and time per call."""
    float32 = model.float()
    example = evaluation[:1].float()
    batches = [calibration[i:i + 1].float() for i in range(len(calibration))]
    runs = {"float32": du.onnxruntime_session(float32, example, threads=threads)}
    equalized = du.equalize_cross_layer(float32)
    runs["float32 equalized"] = du.onnxruntime_session(equalized, example, threads=threads)
    for scheme, per_channel, source, reduce_range in (
            ("int8 per tensor", False, float32, False),
            ("int8 per channel", True, float32, False),
            ("int8 per channel, 7-bit weights", True, float32, True),
            ("int8 equalized, per tensor", False, equalized, False)):
        runs[scheme] = du.onnxruntime_int8_session(source, example, batches, per_channel, threads,
                                                   reduce_range)
    reference = torch.cat([runs["float32"](x[None].float()) for x in evaluation]).double()
    result = {}
    for scheme, run in runs.items():
        output = torch.cat([run(x[None].float()) for x in evaluation]).double()
        result[scheme] = fidelity(reference, output)
    seconds = interleaved({scheme: (lambda run=run: run(example)) for scheme, run in runs.items()},
                          threads, rounds, min_run_time)
    for scheme in runs:
        result[scheme]["seconds"] = seconds[scheme]
    result["equalized graph"] = graph_ops(equalized, example)
    return result


def graph_ops(model, example) -> dict:
    """How many nodes of each operator type the ONNX export of ``model`` has."""
    import onnx

    graph = onnx.load_from_string(du._to_onnx(model.eval(), (example,))).graph
    counts = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two photographs, short timings")
    parser.add_argument("--output", default=str(HERE / "int8_results.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    photos = du.sample_photos()
    if args.quick:
        photos = dict(list(photos.items())[:2])
    evaluation, names = crops(EVALUATION, photos)
    calibration, _ = crops(CALIBRATION, photos)
    model = du.pretrained_mobilenet_v2().double()
    results = dict(machine=machine(), evaluation=EVALUATION, calibration=CALIBRATION,
                   photos=list(photos), crops=names, quick=args.quick,
                   simulated=simulated(model, evaluation, calibration))
    rounds, min_run_time = (2, 0.1) if args.quick else (7, 0.5)
    results["onnxruntime"] = dict(threads=1, rounds=rounds, batch=1, runs=onnxruntime_runs(
        model, evaluation, calibration, 1, rounds, min_run_time))
    results["seconds"] = time.time() - start
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

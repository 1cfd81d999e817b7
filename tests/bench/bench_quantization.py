"""Quantization on the demo dataset: size, accuracy and latency of every TFLite variant.

    python -m tests.bench.bench_quantization [--epochs 30] [--seed 0] [--inferences 2000]

One run trains the ``mlp`` recipe on scikit-learn's handwritten digits (the
demo dataset, 8x8 images flattened by the recipe) through the training
pipeline a job runs, so every variant is produced by the real
``TFLiteConverter`` and scored by running the ``.tflite`` file through
tflite-runtime on the test split. Sizes and accuracies are compared with the
float32 variant of the same run (DESIGN.md: int8 <= 0.30x float32 with <= 1
point accuracy loss). Latency is the mean (and median) time of one
``invoke()`` on one thread, batch of one, over ``--inferences`` test inputs
(the split repeated), after three warm-up calls; every variant is timed in a
fresh child process on the same inputs. Besides the four variants every
profile may get, int8 with int8 input and output tensors (what a profile
with ``int8_io`` gets) is built too. Results go to
``bench-results/quantization.json`` (:mod:`tests.bench.results`) and
``bench-results/quantization.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.training import datasets, demo_data, pipeline, recipes
from edgefleet.server.training.evaluate import run_tflite
from edgefleet.server.training.pipeline import TrainingRequest
from edgefleet.server.training.progress import SilentProgress
from edgefleet.shared.profiles import HardwareProfile, Variant
from tests.bench.machine import machine_info, print_machine
from tests.bench.results import Figure, results_dir, write_results

REPO = Path(__file__).resolve().parents[2]
SIZE_LIMIT = 0.30
LOSS_LIMIT_POINTS = 1.0
INT8_IO = HardwareProfile(
    name="int8-io", description="int8 tensors in and out", variants=(Variant.INT8,), int8_io=True
)


def measure(epochs: int, seed: int, inferences: int) -> dict[str, Any]:
    samples = demo_data.load_demo("digits")
    catalog = ProfileCatalog.load(REPO / "firmware_configs")
    profiles = (*(catalog.get(n) for n in catalog.names()), INT8_IO)
    started = time.perf_counter()
    result = pipeline.run(
        TrainingRequest(profiles=profiles, recipe="mlp", params={"epochs": epochs}, seed=seed),
        samples,
        SilentProgress(),
    )
    elapsed = time.perf_counter() - started
    test = samples.take(datasets.split(samples, result_split(result)).test)
    repeat = -(-inferences // len(test))
    inputs = np.concatenate([test.x] * repeat)[:inferences]
    metric = result.metric.value
    float32 = result.variants["float32"]
    assert float32.data is not None, float32.gate.reason
    tf_interpreter = recipes.tensorflow().lite.Interpreter
    rows: list[dict[str, Any]] = []
    for name, variant in result.variants.items():
        if variant.data is None or variant.scores is None:
            rows.append({"variant": name, "error": variant.gate.reason})
            continue
        timing = run_tflite(variant.data, inputs)
        rows.append(
            {
                "variant": name,
                "size_bytes": len(variant.data),
                "size_ratio": len(variant.data) / len(float32.data),
                metric: variant.scores.value,
                "loss_points": variant.gate.loss_points,
                "latency_ms": timing.latency_ms,
                "latency_p50_ms": timing.latency_p50_ms,
                "tensorflow_latency_ms": tensorflow_latency(tf_interpreter, variant.data, inputs),
                "publishable": variant.gate.publishable,
            }
        )
    int8 = next(r for r in rows if r["variant"] == "int8")
    return {
        "dataset": {"name": "digits", "samples": len(samples), "test_samples": len(test)},
        "recipe": {"name": "mlp", "params": result.lineage["params"], "seed": seed},
        "training_seconds": elapsed,
        "metric": metric,
        "float_model": result.float_scores.values,
        "variants": rows,
        "selection": result.selection,
        "inferences_timed": len(inputs),
        "targets": {
            "int8_size_ratio": {
                "value": int8.get("size_ratio"),
                "limit": SIZE_LIMIT,
                "met": int8.get("size_ratio", 1.0) <= SIZE_LIMIT,
            },
            "int8_loss_points": {
                "value": int8.get("loss_points"),
                "limit": LOSS_LIMIT_POINTS,
                "met": (int8.get("loss_points") or 0.0) <= LOSS_LIMIT_POINTS
                and "error" not in int8,
            },
        },
        "versions": result.lineage["versions"],
    }


def tensorflow_latency(interpreter_class: Any, data: bytes, inputs: npt.NDArray[Any]) -> float:
    """Mean ``invoke()`` time in TensorFlow's own interpreter (newer kernels), for comparison."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = interpreter_class(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    scale, zero_point = source["quantization"]
    fed = inputs if not scale else np.clip(np.rint(inputs / scale) + zero_point, -128, 127)
    fed = fed.astype(source["dtype"]).reshape((len(inputs), *source["shape"]))
    seconds = 0.0
    for index in range(-3, len(fed)):
        interpreter.set_tensor(source["index"], fed[max(index, 0)])
        started = time.perf_counter()
        interpreter.invoke()
        seconds += (time.perf_counter() - started) if index >= 0 else 0.0
    return seconds / len(fed) * 1000.0


def result_split(result: pipeline.PipelineResult) -> datasets.SplitSpec:
    lineage = result.lineage
    return datasets.SplitSpec(
        seed=lineage["seeds"]["split"],
        validation=lineage["split"]["validation_fraction"],
        test=lineage["split"]["test_fraction"],
    )


def markdown(results: dict[str, Any]) -> str:
    metric = results["metric"]
    lines = [
        f"Demo dataset `digits` ({results['dataset']['samples']} samples, "
        f"{results['dataset']['test_samples']} in the test split), recipe `mlp`; "
        f"float Keras model {metric} {results['float_model'][metric]:.4f}. "
        f"Latency: one `invoke()`, one thread, mean over {results['inferences_timed']} inputs, "
        f"in tflite-runtime {results['versions'].get('tflite-runtime', '?')} (what devices run) "
        f"and in TensorFlow {results['versions'].get('tensorflow-cpu', '?')}'s interpreter.",
        "",
        f"| variant | size (bytes) | size vs float32 | {metric} | loss (points) "
        "| latency (ms), tflite-runtime | latency (ms), TF interpreter | ships |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["variants"]:
        if "error" in row:
            lines.append(f"| {row['variant']} | | | | | | | no: {row['error'][:80]} |")
            continue
        lines.append(
            f"| {row['variant']} | {row['size_bytes']:,} | {row['size_ratio']:.3f} "
            f"| {row[metric]:.4f} | {row['loss_points']:+.2f} | {row['latency_ms']:.4f} "
            f"| {row['tensorflow_latency_ms']:.4f} | {'yes' if row['publishable'] else 'no'} |"
        )
    targets = results["targets"]
    lines += [
        "",
        f"int8 size ratio {targets['int8_size_ratio']['value']:.3f} (goal <= "
        f"{SIZE_LIMIT}), int8 loss {targets['int8_loss_points']['value']:+.2f} points "
        f"(goal <= {LOSS_LIMIT_POINTS:g}).",
    ]
    return "\n".join(lines) + "\n"


def figures(results: dict[str, Any]) -> list[Figure]:
    rows = {row["variant"]: row for row in results["variants"]}
    int8, float32 = rows["int8"], rows["float32"]
    if "error" in int8:
        raise RuntimeError(f"no int8 variant to measure: {int8['error']}")
    setup = f"`digits` demo, mlp, {results['metric']}"
    return [
        Figure(f"int8 ÷ float32 size ({setup})", int8["size_ratio"], goal=f"<= {SIZE_LIMIT}"),
        Figure(
            f"int8 accuracy loss vs float ({setup})",
            int8["loss_points"],
            "points",
            goal=f"<= {LOSS_LIMIT_POINTS:g}",
        ),
        Figure(
            "int8 ÷ float32 latency of one `invoke()`, tflite-runtime",
            int8["latency_ms"] / float32["latency_ms"],
        ),
        Figure(
            "int8 ÷ float32 latency of one `invoke()`, TensorFlow's interpreter",
            int8["tensorflow_latency_ms"] / float32["tensorflow_latency_ms"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inferences", type=int, default=2000)
    args = parser.parse_args(argv)
    machine = machine_info()
    print_machine(machine)
    results = measure(args.epochs, args.seed, args.inferences)
    write_results("quantization", figures(results), results, machine=machine)
    table = markdown(results)
    (results_dir() / "quantization.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

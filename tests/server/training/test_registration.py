"""A trained result becomes a signed version devices accept and can self-test without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgefleet.server.profiles import ProfileCatalog
from edgefleet.server.signing import SigningService
from edgefleet.shared import schema
from edgefleet.shared.manifest import Manifest
from edgefleet.shared.signed import SignedEnvelope
from edgefleet.shared.trust import TrustStore
from tests.server.training.conftest import Registry, Run, registered

pytestmark = pytest.mark.slow

SELF_TEST = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("tensorflow", "keras"):
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())

    import numpy as np
    from tflite_runtime.interpreter import Interpreter
    from edgefleet.shared.manifest import Manifest

    checked = 0
    for model_path, manifest_path in zip(sys.argv[1::2], sys.argv[2::2]):
        envelope = json.load(open(manifest_path))
        manifest = Manifest.from_signed(envelope["signed"])
        interpreter = Interpreter(model_path=model_path)
        interpreter.allocate_tensors()
        source = interpreter.get_input_details()[0]
        target = interpreter.get_output_details()[0]
        spec_in, spec_out = manifest.inputs[0], manifest.outputs[0]
        for vector in manifest.self_test.vectors:
            real = np.asarray(vector.input, dtype=np.float64)
            if spec_in.quantization is not None:
                q = spec_in.quantization
                real = np.clip(np.rint(real / q.scale) + q.zero_point, -128, 127)
            fed = real.astype(source["dtype"]).reshape(source["shape"])
            interpreter.set_tensor(source["index"], fed)
            interpreter.invoke()
            out = interpreter.get_tensor(target["index"]).astype(np.float64).ravel()
            if spec_out.quantization is not None:
                out = spec_out.quantization.scale * (out - spec_out.quantization.zero_point)
            error = np.abs(out - vector.expected).max()
            assert error <= manifest.self_test.tolerance, (out, vector.expected)
            checked += 1
    leaked = [m for m in sys.modules if m.partition(".")[0] in ("tensorflow", "keras")]
    assert not leaked, leaked
    print(checked)
    """
)


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, digits_mlp: Run, catalog: ProfileCatalog
) -> Iterator[Registry]:
    with registered(
        tmp_path_factory.mktemp("registry"), digits_mlp.result, catalog, "digits"
    ) as found:
        yield found


def _trust(signing: SigningService) -> TrustStore:
    bundle = signing.trust_bundle()
    trust = TrustStore.pin(bundle.roots[0])
    return trust.update_signing_keys(bundle.signing_keys, now=time.time())


def test_version_carries_every_profile_metrics_and_lineage(
    registry: Registry, digits_mlp: Run
) -> None:
    version = registry.version
    assert (version.version, version.training_run, version.dataset_hash) == (1, "job-7", "ab" * 32)
    assert {a.hardware_profile: a.variant for a in version.artifacts} == {
        "jetson-nano": "float16",
        "rpi4": "int8",
        "sim": "int8",
        "x86-gateway": "float32",
    }
    assert set(version.metrics["variants"]) == {"float32", "float16", "dynamic_range", "int8"}
    assert version.metrics["lineage"] == digits_mlp.result.lineage
    assert version.quantization["profiles"] == digits_mlp.result.selection
    keras_sha = version.quantization["keras_sha256"]
    assert registry.store.read(keras_sha)[:2] == b"PK"  # the float model, kept for lineage


def test_manifests_verify_with_the_shared_trust_chain(registry: Registry, digits_mlp: Run) -> None:
    trust = _trust(registry.signing)
    for artifact in registry.version.artifacts:
        envelope = schema.from_json(SignedEnvelope, artifact.manifest)
        manifest = trust.verify_manifest(envelope, now=time.time())
        assert manifest.hardware_profile == artifact.hardware_profile
        assert manifest.artifact.sha256 == artifact.sha256
        assert manifest.baseline == digits_mlp.result.baseline
        rows = digits_mlp.result.self_test_inputs.reshape(4, -1)
        np.testing.assert_allclose([v.input for v in manifest.self_test.vectors], rows)


def test_self_test_vectors_reproduce_on_tflite_runtime_without_tensorflow(
    registry: Registry, tmp_path: Path
) -> None:
    args = []
    for artifact in registry.version.artifacts:
        model = tmp_path / f"{artifact.hardware_profile}.tflite"
        model.write_bytes(registry.store.read(artifact.sha256))
        manifest = tmp_path / f"{artifact.hardware_profile}.json"
        manifest.write_text(json.dumps(artifact.manifest))
        Manifest.from_signed(artifact.manifest["signed"])  # well-formed before the child reads it
        args += [str(model), str(manifest)]
    done = subprocess.run(
        [sys.executable, "-c", SELF_TEST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == 4 * len(registry.version.artifacts)

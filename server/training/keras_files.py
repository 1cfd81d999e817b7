"""Uploaded ``.keras`` files: checked without TensorFlow, loaded (in the worker) with it.

A Keras 3 ``.keras`` file is a zip of ``metadata.json`` (the Keras
version), ``config.json`` (the architecture) and ``model.weights.h5``.
:func:`inspect_keras` checks that structure in the API process, where
TensorFlow is never imported: a corrupt archive, a legacy HDF5 or
SavedModel, a zip bomb, or a model that needs arbitrary code (``Lambda``
layers, custom classes) is refused with a reason before anything is stored.
:func:`load_keras` is the worker's full load, with Keras' ``safe_mode`` on.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.server.errors import InvalidInputError
from edgefleet.shared import jsoncodec
from edgefleet.shared.errors import MessageError

MEMBERS = ("metadata.json", "config.json", "model.weights.h5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_CONFIG_BYTES = 16 * 1024 * 1024
UNPACK_FACTOR = 4
"""A file may unpack to at most this many times the upload limit (zip bombs)."""


def _bad(message: str) -> InvalidInputError:
    return InvalidInputError(f"not a usable .keras model: {message}", reason="bad_keras_file")


@dataclass(frozen=True, slots=True)
class KerasInfo:
    keras_version: str
    class_name: str
    layers: int
    input_shape: tuple[int, ...] | None
    """One sample's shape (no batch axis) when the config states it."""


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every serialized Keras object (a dict with ``class_name``) in a config tree."""
    if isinstance(node, dict):
        if "class_name" in node:
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _check_code_free(config: dict[str, Any]) -> None:
    for item in _objects(config):
        name = str(item.get("class_name"))
        layer = item.get("config", {}).get("name") if isinstance(item.get("config"), dict) else None
        where = f"layer {layer!r} ({name})" if layer else name
        if name == "Lambda":
            raise _bad(
                f"{where} is a Lambda layer, which runs arbitrary Python; use built-in layers"
            )
        module = item.get("module")
        registered = item.get("registered_name")
        custom = (isinstance(module, str) and module.split(".")[0] != "keras") or (
            isinstance(registered, str) and registered != name
        )
        if custom:
            raise _bad(
                f"{where} is a custom class ({registered or module}); only built-in Keras "
                "objects load without running uploaded code"
            )


def _input_shape(config: dict[str, Any]) -> tuple[int, ...] | None:
    body = config.get("config")
    if not isinstance(body, dict):
        return None
    shapes = [body.get("build_input_shape")]
    for layer in body.get("layers") or []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            shapes.append(layer.get("config", {}).get("batch_shape"))
    for shape in shapes:
        if (
            isinstance(shape, list)
            and len(shape) >= 2
            and all(isinstance(d, int) and d > 0 for d in shape[1:])
        ):
            return tuple(shape[1:])
    return None


def inspect_keras(data: bytes, *, max_bytes: int) -> KerasInfo:
    """What the file claims to be, after checking it is a whole, code-free ``.keras``."""
    if len(data) > max_bytes:
        raise _bad(f"{len(data)} bytes is over the limit of {max_bytes}")
    if data.startswith(HDF5_SIGNATURE):
        raise _bad("this is a legacy HDF5 (.h5) model; save it with model.save('model.keras')")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise _bad(f"not a zip archive ({err}); a .keras file is one") from err
    with archive:
        names = set(archive.namelist())
        if "saved_model.pb" in names:
            raise _bad("this is a TensorFlow SavedModel; save it with model.save('model.keras')")
        missing = [m for m in MEMBERS if m not in names]
        if missing:
            raise _bad(f"the archive lacks {', '.join(missing)}")
        unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > UNPACK_FACTOR * max_bytes:
            raise _bad(f"it unpacks to {unpacked} bytes")
        try:
            damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise _bad(f"the archive is corrupt ({err})") from err
        if damaged is not None:
            raise _bad(f"member {damaged!r} is corrupt (CRC mismatch)")
        with archive.open("model.weights.h5") as weights:
            if weights.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise _bad("model.weights.h5 is not an HDF5 file")
        try:
            metadata = jsoncodec.parse(archive.read("metadata.json"), max_bytes=64 * 1024)
            config = jsoncodec.parse(archive.read("config.json"), max_bytes=MAX_CONFIG_BYTES)
        except MessageError as err:
            raise _bad(f"its JSON is unreadable ({err})") from err
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    if not isinstance(version, str) or not version.startswith("3."):
        raise _bad(f"want a file saved by Keras 3, metadata names {version!r}")
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise _bad("config.json does not describe a model")
    _check_code_free(config)
    layers = (
        config.get("config", {}).get("layers") if isinstance(config.get("config"), dict) else None
    )
    return KerasInfo(
        keras_version=version,
        class_name=config["class_name"],
        layers=len(layers) if isinstance(layers, list) else 0,
        input_shape=_input_shape(config),
    )


def load_keras(data: bytes) -> Any:
    """The model in ``data`` (TensorFlow imported here); refuses what does not load safely."""
    from edgefleet.server.training.recipes import tensorflow

    keras = tensorflow().keras
    with tempfile.TemporaryDirectory(prefix="edgefleet-keras-") as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(data)
        try:
            return keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as err:  # noqa: BLE001 - Keras raises anything from a bad file
            raise _bad(f"Keras cannot load it: {' '.join(str(err).split())[:600]}") from err


def save_keras(model: Any) -> bytes:
    """``model`` as ``.keras`` bytes (for lineage and retraining)."""
    with tempfile.TemporaryDirectory(prefix="edgefleet-keras-") as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()

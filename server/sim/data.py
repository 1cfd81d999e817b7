"""What simulated devices feed their models: synthetic sensor windows or rows from a file.

Devices share pools of rows (one per input shape and drift setting) and
each walks its pool from its own offset, so ten thousand devices cost ten
thousand offsets, not ten thousand arrays. Pools are deterministic in the
fleet's seed: the demo regenerates them in its own process to know each
row's true label when it plays the operator who labels edge samples.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.server.errors import InvalidInputError
from edgefleet.server.training import synthetic

POOL_ROWS = 256
SYNTHETIC = "synthetic"

Rows = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DriftSetting:
    sigma: float = 0.0
    channels: tuple[str, ...] = ()


NO_DRIFT = DriftSetting()


def synthetic_pool(
    shape: tuple[int, ...], drift: DriftSetting, *, seed: int
) -> tuple[Rows, npt.NDArray[np.int32]] | None:
    """``POOL_ROWS`` sensor windows shaped like the model's input (batch axis first, of one),
    and their true class indices; None if the model does not take sensor windows."""
    if len(shape) != 3 or shape[0] != 1 or shape[2] != len(synthetic.CHANNELS) or shape[1] < 2:
        return None
    salt = f"{shape}:{drift.sigma}:{','.join(drift.channels)}".encode()
    samples = synthetic.generate(
        POOL_ROWS,
        seed=(seed * 1_000_003 + zlib.crc32(salt)) % 2**32,
        spec=synthetic.SensorSpec(window=shape[1]),
        drift=drift.sigma,
        drift_channels=drift.channels or synthetic.CHANNELS,
    )
    if samples.y is None:  # four classes are always labelled; typed as optional all the same
        return None
    return samples.x[:, np.newaxis], samples.y


def load_rows(path: Path) -> Rows:
    """Input rows from ``.npz`` (array ``x``) or ``.csv`` (one flattened input per line,
    numbers only); reshaped to the model's input when a device first serves it."""
    try:
        if path.suffix == ".npz":
            with np.load(path) as archive:
                if "x" not in archive:
                    raise InvalidInputError(f"{path}: no array named 'x' in the archive")
                rows = np.asarray(archive["x"], dtype=np.float32)
        elif path.suffix == ".csv":
            rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
        else:
            raise InvalidInputError(f"{path}: want a .npz or .csv dataset file")
    except (OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read dataset {path}: {err}") from err
    if rows.shape[0] == 0:
        raise InvalidInputError(f"{path}: no rows")
    return rows


class RowSource:
    """Rows for one host process: pools built on first use, per input shape and drift."""

    def __init__(self, data: str, *, seed: int) -> None:
        self._seed = seed
        self._file = None if data == SYNTHETIC else load_rows(Path(data))
        self._pools: dict[tuple[Any, ...], Rows | None] = {}

    def pool(self, shape: tuple[int, ...], drift: DriftSetting) -> Rows | None:
        """Rows for a model of input ``shape``; None if this data cannot feed it."""
        key = (shape, drift)
        if key not in self._pools:
            self._pools[key] = self._build(shape, drift)
        return self._pools[key]

    def _build(self, shape: tuple[int, ...], drift: DriftSetting) -> Rows | None:
        if self._file is None:
            made = synthetic_pool(shape, drift, seed=self._seed)
            return None if made is None else made[0]
        size = int(np.prod(shape))
        if self._file[0].size != size:
            return None
        rows = self._file.reshape((-1, *shape))
        if drift.sigma:
            # A file has no named channels: every input value moves by sigma of its own spread.
            rows = (rows + drift.sigma * rows.std(axis=0)).astype(np.float32)
        return rows

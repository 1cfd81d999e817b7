"""Real values to a tensor's own dtype and back, and the NaN check every call makes.

Callers of the agent deal in real values only. A quantized tensor's inputs
are quantized with the manifest's scale and zero point, rounded half to even
and clipped: the rule the server used to record the self-test vectors (it
snaps their inputs to the grid, so any rounding order gives the same
integers). Quantized outputs are dequantized the same way.

Both directions run on every inference, so the work is a few in-place ufuncs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.errors import InferenceInputError
from edgefleet.shared.manifest import Quantization, TensorSpec

RealArray = npt.NDArray[np.float32]


class TensorCodec:
    """Real values to a tensor's own dtype and back, per the manifest's quantization.

    Both directions run on every call, so the work is cut to a few in-place
    ufuncs, and an 8-bit output is dequantized by a 256-entry table (exact in
    float64, then rounded once to float32, as the server wrote the self-test).
    """

    def __init__(self, spec: TensorSpec) -> None:
        self.dtype = np.dtype(spec.dtype.value)  # the enum's values are numpy's names
        self.passthrough = self.dtype == np.float32
        self.is_float = self.dtype.kind == "f"
        quantization = spec.quantization or Quantization(scale=1.0, zero_point=0)
        self.scale = quantization.scale
        self.zero_point = quantization.zero_point
        self.scaled = spec.quantization is not None
        self._table: RealArray | None = None
        if not self.is_float:
            info = np.iinfo(self.dtype.name)
            # float32 holds every 8- and 16-bit step exactly and halves the memory traffic;
            # numpy scalars, not Python numbers, because a ufunc takes them without converting.
            work = np.float32 if self.dtype.itemsize <= 2 else np.float64
            self._work = np.dtype(work)
            self._bounds = (work(info.min), work(info.max))
            self._steps = (work(self.scale), work(self.zero_point))
        if self.dtype.itemsize == 1:
            codes = np.arange(256, dtype=np.uint8).view(self.dtype).astype(np.float64)
            self._table = ((codes - self.zero_point) * self.scale).astype(np.float32)

    def encode(self, real: RealArray) -> npt.NDArray[Any]:
        if self.passthrough:
            return real
        if self.is_float:
            with np.errstate(over="ignore"):
                narrowed = real.astype(self.dtype)
            if not all_finite(narrowed):
                raise InferenceInputError(f"inputs overflow the model's {self.dtype.name} tensor")
            return narrowed
        scale, zero_point = self._steps
        low, high = self._bounds
        steps = np.divide(real, scale, dtype=self._work)
        np.rint(steps, out=steps)  # before the zero point: half-to-even rounding needs it there
        steps += zero_point
        np.maximum(steps, low, out=steps)  # np.clip is several times slower than these two
        np.minimum(steps, high, out=steps)
        return steps.astype(self.dtype)

    def decode(self, raw: npt.NDArray[Any]) -> RealArray:
        if self.passthrough:
            return raw
        if self._table is not None:
            real: RealArray = self._table[raw.view(np.uint8)]
            return real
        real = raw.astype(np.float32)
        if self.scaled:
            real -= np.float32(self.zero_point)
            real *= np.float32(self.scale)
        return real


def all_finite(array: npt.NDArray[Any]) -> bool:
    """No NaN or infinity in ``array``.

    Small arrays: one float64 sum is finite exactly then (float32 values cannot
    overflow it), and one reduction costs less than ``isfinite().all()``'s two.
    Past a few hundred values the two vectorized passes win.
    """
    if array.size > 256:
        return bool(np.isfinite(array).all())
    return math.isfinite(np.add.reduce(array, axis=None, dtype=np.float64))

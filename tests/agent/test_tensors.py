"""Quantizing and dequantizing tensors: the rule the server's self-test vectors follow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefleet.agent.errors import InferenceInputError
from edgefleet.agent.tensors import TensorCodec, all_finite
from edgefleet.shared.manifest import Quantization, TensorDType, TensorSpec


def codec(dtype: TensorDType, scale: float | None = None, zero_point: int = 0) -> TensorCodec:
    quantization = None if scale is None else Quantization(scale=scale, zero_point=zero_point)
    return TensorCodec(TensorSpec(name="t", dtype=dtype, shape=(1, 6), quantization=quantization))


def test_int8_rounds_half_to_even_before_the_zero_point_and_saturates() -> None:
    int8 = codec(TensorDType.INT8, scale=0.5, zero_point=1)
    real = np.array([[0.25, 0.75, -0.25, 1.0, 100.0, -100.0]], np.float32)
    # 0.25 / 0.5 = 0.5 -> 0 (even) -> 1; 0.75 / 0.5 = 1.5 -> 2 -> 3; -0.5 -> -0 -> 1
    assert int8.encode(real).tolist() == [[1, 3, 1, 3, 127, -128]]


def test_8_bit_outputs_dequantize_through_the_table_like_the_arithmetic() -> None:
    for dtype in (TensorDType.INT8, TensorDType.UINT8):
        quantized = codec(
            dtype, scale=0.00390625, zero_point=-128 if dtype is TensorDType.INT8 else 0
        )
        codes = np.arange(256, dtype=np.uint8).view(np.dtype(dtype.value)).reshape(1, -1)
        expected = ((codes.astype(np.float64) - quantized.zero_point) * quantized.scale).astype(
            np.float32
        )
        np.testing.assert_array_equal(quantized.decode(codes), expected)


@pytest.mark.parametrize("size", [6, 5000])
@pytest.mark.parametrize("dtype", [TensorDType.INT8, TensorDType.UINT8, TensorDType.INT16])
def test_large_and_small_tensors_quantize_alike_in_and_out_of_range(
    size: int, dtype: TensorDType
) -> None:
    """Small samples always clip; large ones skip clipping only when nothing is outside."""
    spec = TensorSpec(
        name="t", dtype=dtype, shape=(1, size), quantization=Quantization(0.02, zero_point=3)
    )
    quantized = TensorCodec(spec)
    info = np.iinfo(dtype.value)
    rng = np.random.default_rng(size)
    inside = rng.uniform(-1.0, 1.0, (2, size)).astype(np.float32)
    outside = inside.copy()
    outside[1, size // 2] = 1e6
    outside[0, -1] = -1e6
    for real in (inside, outside):
        steps = np.rint(np.divide(real, np.float32(0.02), dtype=np.float32)) + 3
        expected = np.clip(steps, info.min, info.max).astype(dtype.value)
        np.testing.assert_array_equal(quantized.encode(real), expected)
    saturated = quantized.encode(outside)
    assert (saturated.min(), saturated.max()) == (info.min, info.max)


def test_wider_integers_and_floats() -> None:
    int16 = codec(TensorDType.INT16, scale=0.001, zero_point=0)
    raw = int16.encode(np.array([[0.0015, -40.0, 0.0, 1.0, 2.0, 3.0]], np.float32))
    assert raw.dtype == np.int16
    assert raw.tolist() == [[2, -32768, 0, 1000, 2000, 3000]]
    np.testing.assert_allclose(int16.decode(raw)[0, 3:], [1.0, 2.0, 3.0], rtol=1e-6)
    plain = codec(TensorDType.INT32)
    assert plain.encode(np.array([[1.4, 1.6, -2.5, 0, 0, 0]], np.float32)).tolist() == [
        [1, 2, -2, 0, 0, 0]
    ]
    float32 = codec(TensorDType.FLOAT32)
    values = np.ones((1, 6), np.float32)
    assert float32.encode(values) is values  # no copy on the common path
    half = codec(TensorDType.FLOAT16)
    assert half.encode(values).dtype == np.float16
    with pytest.raises(InferenceInputError, match="overflow the model's float16"):
        half.encode(np.full((1, 6), 1e6, np.float32))


@pytest.mark.parametrize("size", [4, 5000])
def test_all_finite_small_and_large(size: int) -> None:
    values = np.zeros(size, np.float32)
    assert all_finite(values)
    values[-1] = np.float32(3e38)  # finite: a float32 sum would overflow, ours does not
    values[0] = np.float32(3e38)
    assert all_finite(values)
    for bad in (math.nan, math.inf, -math.inf):
        values[size // 2] = bad
        assert not all_finite(values)

"""spp (whole maps) against a brute-force reference, for every map size including ones below n."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _spp_reference import spp_reference
from hypothesis import given
from hypothesis import strategies as st

import sppnet
from sppnet.ops import SpatialPyramidPooling, roi_spp, spp


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 3), (2, 5), (13, 13), (10, 11), (6, 17)])
@pytest.mark.parametrize("levels", [(4, 2, 1), (6, 3, 2, 1), (5,), (1, 3)])
def test_matches_brute_force_reference(h, w, levels, mode):
    gen = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    got = spp(x, levels, mode)
    want = spp_reference(x.numpy(), levels, mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=0)


def test_paper_example_sizes():
    """conv5 of 13x13x256 with (4, 2, 1) gives 5376 values; (6, 3, 2, 1) gives 12800."""
    x = torch.randn(1, 256, 13, 13)
    assert spp(x).shape == (1, 5376)
    assert spp(x, (6, 3, 2, 1)).shape == (1, 12800)
    assert spp(torch.randn(1, 256, 3, 3), (6, 3, 2, 1)).shape == (1, 12800)  # map smaller than n


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_equals_roi_spp_on_whole_map_windows(mode):
    """A box covering the map exactly (paper mapping, stride 1: cells 0..W-1 are x in (-1, W))."""
    x = torch.randn(2, 4, 9, 14)
    boxes = torch.tensor([[0, -0.5, -0.5, 14.5, 9.5], [1, -0.5, -0.5, 14.5, 9.5]])
    want = spp(x, (6, 3, 2, 1), mode)
    got = roi_spp(x, boxes, (6, 3, 2, 1), 1.0, mode)
    if mode == "max":
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradcheck(mode):
    x = torch.randn(2, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spp(t, (4, 2, 1), mode), (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes_and_channels_last(dtype):
    x = torch.randn(2, 3, 11, 7).to(dtype)
    out = spp(x, (4, 2, 1))
    assert out.dtype == dtype
    np.testing.assert_array_equal(
        out.double().numpy(), spp_reference(x.double().numpy(), (4, 2, 1), "max")
    )
    xl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(spp(xl, (4, 2, 1)), out)


def test_nan_propagates():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    out = spp(x, (2, 1))
    assert torch.isnan(out[0, 0]) and bool((out[0, 1:4] == 0).all()) and torch.isnan(out[0, 4])


def test_module():
    module = SpatialPyramidPooling((6, 3, 2, 1), "avg")
    assert module.output_size(256) == 12800
    assert repr(module) == "SpatialPyramidPooling(levels=(6, 3, 2, 1), mode='avg', bins=50)"
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(module(x), spp(x, (6, 3, 2, 1), "avg"))
    assert sppnet.spp is spp and sppnet.SpatialPyramidPooling is SpatialPyramidPooling


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": torch.zeros(2, 3, 4)}, ValueError, "spp: input must be 4-D"),
        ({"input": torch.zeros(1, 1, 4, 4, dtype=torch.uint8)}, TypeError, "floating"),
        ({"input": torch.zeros(1, 1, 4, 0)}, ValueError, "height and width"),
        ({"levels": []}, ValueError, "must not be empty"),
        ({"levels": (3, -1)}, ValueError, ">= 1"),
        ({"levels": (True,)}, TypeError, "must be an int"),
        ({"mode": "min"}, ValueError, "mode must be one of"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    args = {"input": torch.zeros(1, 2, 5, 5), "levels": (2, 1), "mode": "max"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        spp(**args)


@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    levels=st.lists(st.integers(1, 8), min_size=1, max_size=4).map(tuple),
    value=st.floats(-1e6, 1e6, allow_nan=False),
    mode=st.sampled_from(["max", "avg"]),
)
def test_property_fixed_length_and_constant_map(h, w, levels, value, mode):
    x = torch.full((1, 3, h, w), value, dtype=torch.float64)
    out = spp(x, levels, mode)
    assert out.shape == (1, 3 * sum(n * n for n in levels))
    if mode == "max":
        assert bool((out == value).all())
    else:
        torch.testing.assert_close(out, torch.full_like(out, value))

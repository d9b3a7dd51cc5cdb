"""Tests of convcore.geometry: output sizes, padding forms, normalisation, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from convcore.geometry import (
    ConvGeometry,
    conv_geometry,
    conv_output_size,
    conv_transpose_geometry,
    conv_transpose_output_size,
    pool_geometry,
    pool_output_size,
)


def _count_positions(size, k, stride, before, after, dilation):
    """Number of kernel placements, counted by walking the padded input (no formula)."""
    padded = size + before + after
    extent = dilation * (k - 1) + 1
    return sum(1 for start in range(0, padded, stride) if start + extent <= padded)


@pytest.mark.parametrize(
    ("input_size", "kernel_size", "kwargs", "expected"),
    [
        ((227, 227), 11, {"stride": 4}, (55, 55)),
        ((5, 5), 3, {}, (3, 3)),
        ((5, 5), 3, {"stride": 2}, (2, 2)),
        ((6, 6), 3, {"stride": 2}, (2, 2)),
        ((6, 7), 3, {"stride": 2, "padding": 1}, (3, 4)),
        ((7, 7), 3, {"dilation": 2}, (3, 3)),
        ((8, 9), (2, 3), {"stride": (3, 2), "padding": (0, 1), "dilation": (2, 1)}, (2, 5)),
        ((3, 3), 3, {}, (1, 1)),
        ((1, 1), 1, {"stride": 5}, (1, 1)),
        ((4, 4), 1, {"stride": 3}, (2, 2)),
    ],
    ids=[
        "alexnet-conv1",
        "k3-s1",
        "k3-s2-odd",
        "k3-s2-even-floor",
        "pad1-mixed",
        "dilation2",
        "per-axis-everything",
        "kernel-equals-input",
        "1x1-big-stride",
        "pointwise-stride3-floor",
    ],
)
def test_conv_output_size_floor(input_size, kernel_size, kwargs, expected):
    assert conv_output_size(input_size, kernel_size, **kwargs) == expected


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_output_size_matches_counting(k, dilation, padding, stride):
    for size in range(1, 12):
        extent = dilation * (k - 1) + 1
        if extent > size + 2 * padding:
            with pytest.raises(ValueError, match="kernel_size"):
                conv_output_size((size, size), k, stride=stride, padding=padding, dilation=dilation)
            continue
        expected = _count_positions(size, k, stride, padding, padding, dilation)
        got = conv_output_size(
            (size, 4 * size), (k, 1), stride=stride, padding=padding, dilation=dilation
        )
        assert got[0] == expected, (size, k, stride, padding, dilation)


def _tf_same(size, k_eff, stride):
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return out, (total // 2, total - total // 2)


@pytest.mark.parametrize(
    ("size", "k", "stride", "dilation", "out", "pads"),
    [
        (5, 3, 1, 1, 5, (1, 1)),
        (5, 4, 1, 1, 5, (1, 2)),
        (5, 1, 1, 1, 5, (0, 0)),
        (5, 3, 1, 2, 5, (2, 2)),
        (7, 3, 2, 1, 4, (1, 1)),
        (6, 3, 2, 1, 3, (0, 1)),
        (6, 4, 2, 1, 3, (1, 1)),
        (10, 3, 3, 1, 4, (1, 1)),
        (11, 3, 3, 1, 4, (0, 1)),
        (9, 5, 3, 1, 3, (1, 1)),
        (2, 1, 3, 1, 1, (0, 0)),
        (1, 3, 3, 1, 1, (1, 1)),
    ],
    ids=[
        "s1-k3",
        "s1-k4-odd-total",
        "s1-k1",
        "s1-k3-d2",
        "s2-in7",
        "s2-in6-odd-total",
        "s2-k4",
        "s3-in10",
        "s3-in11-odd-total",
        "s3-k5",
        "s3-negative-total-clamped",
        "s3-input-smaller-than-kernel",
    ],
)
def test_same_padding_tf_semantics(size, k, stride, dilation, out, pads):
    # Expected numbers are written out by hand; cross-check them against the TF rule too.
    assert _tf_same(size, dilation * (k - 1) + 1, stride) == (out, pads)
    geom = conv_geometry(
        (size, 8), (k, 1), stride=(stride, 1), padding="same", dilation=(dilation, 1)
    )
    assert geom.output_size == (out, 8)
    assert geom.padding == (*pads, 0, 0)
    assert geom.pad_before == (pads[0], 0)
    assert geom.pad_after == (pads[1], 0)
    assert conv_output_size(
        (size, 8), (k, 1), stride=(stride, 1), padding="same", dilation=(dilation, 1)
    ) == (
        out,
        8,
    )


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_padding_all_sizes(stride):
    for size in range(1, 15):
        for k in range(1, 6):
            geom = conv_geometry((size, size), k, stride=stride, padding="same")
            out, pads = _tf_same(size, k, stride)
            assert geom.output_size == (out, out)
            assert geom.padding == (*pads, *pads)


@pytest.mark.parametrize("spelling", ["same", "SAME", "Same"], ids=["lower", "upper", "title"])
def test_same_is_case_insensitive(spelling):
    assert conv_geometry((7, 7), 3, stride=2, padding=spelling).padding == (1, 1, 1, 1)


@pytest.mark.parametrize("spelling", ["valid", "VALID"], ids=["lower", "upper"])
def test_valid_means_no_padding(spelling):
    geom = conv_geometry((7, 6), 3, stride=2, padding=spelling)
    assert geom.padding == (0, 0, 0, 0)
    assert geom.output_size == (3, 2)


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        (0, (0, 0, 0, 0)),
        (2, (2, 2, 2, 2)),
        ((1, 2), (1, 1, 2, 2)),
        ([1, 2], (1, 1, 2, 2)),
        ((1, 2, 3, 4), (1, 2, 3, 4)),
        ([0, 1, 0, 1], (0, 1, 0, 1)),
        (((1, 2), (3, 4)), (1, 2, 3, 4)),
        ([[0, 1], [2, 0]], (0, 1, 2, 0)),
        ((np.int64(1), np.int32(2)), (1, 1, 2, 2)),
    ],
    ids=[
        "int0",
        "int2",
        "pair",
        "pair-list",
        "four",
        "four-list",
        "pairs-of-pairs",
        "lists-of-lists",
        "numpy-ints",
    ],
)
def test_padding_forms(padding, expected):
    geom = conv_geometry((9, 10), 3, padding=padding)
    assert geom.padding == expected
    assert all(type(p) is int for p in geom.padding)
    top, bottom, left, right = expected
    assert geom.padded_size == (9 + top + bottom, 10 + left + right)
    assert geom.output_size == (9 + top + bottom - 2, 10 + left + right - 2)


def test_asymmetric_padding_output_size():
    # top/bottom pad the height, left/right the width:
    # (8 + 1 + 3 - 3) // 2 + 1 = 5 and (5 + 0 + 2 - 3) // 1 + 1 = 5.
    assert conv_output_size((8, 5), 3, stride=(2, 1), padding=(1, 3, 0, 2)) == (5, 5)


def test_numpy_integer_scalars_are_normalised():
    geom = conv_geometry(
        (np.int64(9), np.int32(8)),
        np.int64(3),
        stride=np.int16(2),
        padding=np.uint8(1),
        dilation=(np.int64(1), np.int8(2)),
    )
    assert geom == ConvGeometry(
        input_size=(9, 8),
        kernel_size=(3, 3),
        stride=(2, 2),
        padding=(1, 1, 1, 1),
        dilation=(1, 2),
        output_size=(5, 3),
    )
    for field in dataclasses.fields(geom):
        assert all(type(v) is int for v in getattr(geom, field.name)), field.name
    assert hash(geom) == hash(conv_geometry((9, 8), 3, stride=2, padding=1, dilation=(1, 2)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_size": np.array([9, 8]), "kernel_size": 3},
        {"input_size": (9, 8), "kernel_size": np.array([3, 3])},
        {"input_size": (9, 8), "kernel_size": 3, "stride": np.array([2, 1])},
        {"input_size": (9, 8), "kernel_size": 3, "padding": np.array([1, 0])},
    ],
    ids=["input_size", "kernel_size", "stride", "padding"],
)
def test_numpy_integer_arrays_are_normalised(kwargs):
    # 1-D integer arrays are sequences of sizes (e.g. what the MATLAB adapter passes).
    geom = conv_geometry(**kwargs)
    plain = {
        key: tuple(int(v) for v in value) if isinstance(value, np.ndarray) else value
        for key, value in kwargs.items()
    }
    assert geom == conv_geometry(**plain)
    assert all(
        type(v) is int for v in geom.kernel_size + geom.stride + geom.padding + geom.input_size
    )


def test_geometry_properties():
    geom = conv_geometry((10, 12), (3, 2), stride=(2, 3), padding=(1, 0, 2, 1), dilation=(2, 1))
    assert geom.nd == 2
    assert geom.pad_before == (1, 2)
    assert geom.pad_after == (0, 1)
    assert geom.padded_size == (11, 15)
    assert geom.effective_kernel_size == (5, 2)
    assert geom.kernel_numel == 6
    assert geom.output_size == (4, 5)
    assert geom.output_numel == 20
    assert not geom.is_pointwise


@pytest.mark.parametrize(
    ("kwargs", "pointwise"),
    [
        ({}, True),
        ({"stride": 2}, False),
        ({"padding": 1}, False),
        ({"padding": (0, 0, 0, 1)}, False),
        ({"dilation": 3}, True),
    ],
    ids=["plain", "strided", "padded", "one-side-padded", "dilated"],
)
def test_is_pointwise(kwargs, pointwise):
    assert conv_geometry((5, 5), 1, **kwargs).is_pointwise is pointwise
    assert conv_geometry((5, 5), (1, 2), **kwargs).is_pointwise is False


def test_geometry_is_frozen():
    geom = conv_geometry((5, 5), 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        geom.stride = (2, 2)


def test_one_and_three_spatial_axes():
    assert conv_output_size((10,), 3, stride=2) == (4,)
    geom = conv_geometry((4, 5, 6), (1, 2, 3), padding=1)
    assert geom.padding == (1,) * 6
    assert geom.output_size == (6, 6, 6)


GEOMETRY_ERRORS = [
    ({"stride": 0}, ValueError, r"stride.*0"),
    ({"stride": -1}, ValueError, r"stride.*-1"),
    ({"stride": (1, 0)}, ValueError, r"stride.*\(1, 0\)"),
    ({"dilation": 0}, ValueError, r"dilation.*0"),
    ({"dilation": -2}, ValueError, r"dilation.*-2"),
    ({"padding": -1}, ValueError, r"padding.*-1"),
    ({"padding": (0, 0, -1, 0)}, ValueError, r"padding.*-1"),
    ({"padding": (1, 2, 3)}, ValueError, r"padding.*\(1, 2, 3\)"),
    ({"padding": (1, 2, 3, 4, 5)}, ValueError, r"padding"),
    ({"padding": ((1, 2), (3,))}, ValueError, r"padding"),
    ({"padding": "full"}, ValueError, r"padding.*'full'"),
    ({"padding": ""}, ValueError, r"padding"),
    ({"padding": 1.5}, TypeError, r"padding.*1\.5"),
    ({"padding": True}, TypeError, r"padding.*True"),
    ({"padding": (1, 2.0)}, TypeError, r"padding.*2\.0"),
    ({"stride": 1.5}, TypeError, r"stride.*1\.5"),
    ({"stride": True}, TypeError, r"stride.*True"),
    ({"stride": "2"}, TypeError, r"stride.*'2'"),
    ({"stride": (1, 2, 3)}, ValueError, r"stride.*\(1, 2, 3\)"),
    ({"stride": None}, TypeError, r"stride.*None"),
    ({"dilation": 2.0}, TypeError, r"dilation.*2\.0"),
    ({"dilation": False}, TypeError, r"dilation.*False"),
    ({"kernel_size": 1.5}, TypeError, r"kernel_size.*1\.5"),
    ({"kernel_size": True}, TypeError, r"kernel_size.*True"),
    ({"kernel_size": "3"}, TypeError, r"kernel_size.*'3'"),
    ({"kernel_size": 0}, ValueError, r"kernel_size.*0"),
    ({"kernel_size": (3, 3, 3)}, ValueError, r"kernel_size.*\(3, 3, 3\)"),
    ({"kernel_size": 9}, ValueError, r"kernel_size.*9"),
    ({"kernel_size": 5, "dilation": 2}, ValueError, r"kernel_size.*dilation"),
    ({"input_size": (0, 5)}, ValueError, r"input_size.*\(0, 5\)"),
    ({"input_size": (5, -1)}, ValueError, r"input_size"),
    ({"input_size": (5.0, 5)}, TypeError, r"input_size.*5\.0"),
    ({"input_size": 5}, TypeError, r"input_size.*5"),
    ({"input_size": "55"}, TypeError, r"input_size.*'55'"),
    ({"input_size": ()}, ValueError, r"input_size"),
]


def _case_id(kwargs):
    return ",".join(f"{key}={value!r}" for key, value in kwargs.items())


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [pytest.param(*case, id=_case_id(case[0])) for case in GEOMETRY_ERRORS],
)
def test_invalid_geometry_names_parameter_and_value(kwargs, exc, pattern):
    args = {"input_size": (7, 7), "kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=pattern):
        conv_geometry(args.pop("input_size"), args.pop("kernel_size"), **args)
    args = {"input_size": (7, 7), "kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=pattern):
        conv_output_size(args.pop("input_size"), args.pop("kernel_size"), **args)


def test_kernel_larger_than_padded_input_message_mentions_sizes():
    with pytest.raises(ValueError, match=r"kernel_size") as info:
        conv_geometry((4, 6), (5, 3), padding=0)
    message = str(info.value)
    assert "height" in message
    assert "4" in message
    # Padding can make it fit.
    assert conv_output_size((4, 6), (5, 3), padding=(1, 0)) == (2, 4)


# --------------------------------------------------------------------------
# pooling and transposed windows: the same geometry type
# --------------------------------------------------------------------------
@pytest.mark.parametrize("ceil_mode", [False, True, "cover_all"])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_pool_geometry_against_the_oracle(ceil_mode, k, stride, dilation):
    import naive

    for size in range(1, 9):
        for pad in range(k // 2 + 1):
            pads = (pad, pad)
            extent = dilation * (k - 1) + 1
            if extent > size + 2 * pad and ceil_mode is False:
                with pytest.raises(ValueError, match="no window fits"):
                    pool_geometry((size,), k, stride=stride, padding=pad, dilation=dilation)
                continue
            want = naive.pool_output_size((size,), (k,), (stride,), pads, (dilation,), ceil_mode)
            if want[0] < 1:
                with pytest.raises(ValueError, match="no window fits"):
                    pool_geometry(
                        (size,),
                        k,
                        stride=stride,
                        padding=pad,
                        dilation=dilation,
                        ceil_mode=ceil_mode,
                    )
                continue
            g = pool_geometry(
                (size,), k, stride=stride, padding=pad, dilation=dilation, ceil_mode=ceil_mode
            )
            assert g.output_size == want, (size, pad)
            assert pool_output_size((size,), k, stride, pad, dilation, ceil_mode) == want
            # every window lies inside the padded input the kernels see
            assert (g.output_size[0] - 1) * stride + extent <= g.padded_size[0]
            assert g.requested_padding == pads
            assert g.padding == (pad, pad + g.overhang[0])


def test_pool_geometry_overhang_and_defaults():
    g = pool_geometry((5, 5), 2, padding=1, ceil_mode="cover_all")
    assert g.output_size == (4, 4) and g.overhang == (1, 1) and g.padding == (1, 2, 1, 2)
    assert g.stride == (2, 2)  # stride defaults to the kernel size
    assert pool_geometry((5, 5), 2, padding=1, ceil_mode=True).output_size == (3, 3)
    assert pool_geometry((4, 6, 8), (2, 3, 4)).output_size == (2, 2, 2)
    assert conv_geometry((5,), 3).overhang == (0,)  # a convolution has none


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"padding": 2}, ValueError, r"padding must be at most half the kernel size"),
        (
            {"padding": "same", "ceil_mode": "cover_all"},
            ValueError,
            r"ceil_mode must be False with padding='same'",
        ),
        ({"ceil_mode": "seed"}, ValueError, r"ceil_mode='seed' is now called 'cover_all'"),
        ({"ceil_mode": "yes"}, ValueError, r"ceil_mode must be False, True or 'cover_all'"),
        ({"ceil_mode": 1}, TypeError, r"ceil_mode must be"),
        ({"stride": 0}, ValueError, r"stride"),
        ({"kernel_size": 9}, ValueError, r"no window fits"),
    ],
)
def test_pool_geometry_errors(kwargs, exc, pattern):
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=pattern):
        pool_geometry((7, 7), args.pop("kernel_size"), **args)


def test_pool_geometry_padding_limit_can_be_lifted():
    """The seed's pooling columns take any padding (convcore.matlab uses this)."""
    g = pool_geometry((3, 3), 2, padding=3, ceil_mode="cover_all", limit_padding=False)
    assert g.output_size == (5, 5)


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("pads", [(0, 0), (1, 0), (1, 2)])
@pytest.mark.parametrize("output_padding", [0, 1])
def test_conv_transpose_geometry_against_the_oracle(
    size, k, stride, dilation, pads, output_padding
):
    import naive

    if output_padding >= stride and output_padding >= dilation:
        with pytest.raises(ValueError, match="output_padding must be smaller"):
            conv_transpose_geometry(
                (size,),
                k,
                stride=stride,
                padding=pads,
                output_padding=output_padding,
                dilation=dilation,
            )
        return
    want = naive.conv_transpose_output_size(
        (size,), (k,), (stride,), pads, (output_padding,), (dilation,)
    )
    if want[0] < 1:
        with pytest.raises(ValueError, match="leaves no output"):
            conv_transpose_output_size(
                (size,),
                k,
                stride=stride,
                padding=pads,
                output_padding=output_padding,
                dilation=dilation,
            )
        return
    g = conv_transpose_geometry(
        (size,), k, stride=stride, padding=pads, output_padding=output_padding, dilation=dilation
    )
    assert g.input_size == want
    assert g.output_padding == (output_padding,)
    # the windows of the convolution being transposed: one per input pixel, plus one
    # where output_padding >= stride
    assert g.output_size[0] - size == (1 if output_padding >= stride else 0)
    assert conv_geometry(want, k, stride=stride, padding=pads, dilation=dilation) == (
        dataclasses.replace(g, output_padding=(0,))
    )


def test_lifted_geometry_keeps_the_windows():
    g = pool_geometry((7,), 3, stride=2, padding=1, ceil_mode=True)
    lifted = g.lifted()
    assert lifted.nd == 2 and lifted.output_size == (1, *g.output_size)
    assert lifted.padding == (0, 0, *g.padding) and lifted.overhang == (0, *g.overhang)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: conv_output_size((5,), 3, padding=(1, 2, 3)),
         "padding must be an int, (before, after), 'valid' or 'same', got (1, 2, 3)"),
        (lambda: pool_output_size((5, 5), 2, padding="full"),
         "padding must be an int, 2 ints (per axis), 4 ints (top, bottom, left, right), "
         "'valid' or 'same', got 'full'"),
        (lambda: conv_transpose_output_size((5, 5, 5), 2, padding="full"),
         "padding must be an int, 3 ints (per axis), 6 ints (before, after per axis), "
         "'valid' or 'same', got 'full'"),
    ],
)  # fmt: skip
def test_padding_errors_list_the_forms_the_operator_takes(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message)

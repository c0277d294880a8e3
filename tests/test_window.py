"""The gap window: edges, membership, probability under a normal prediction, records."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from gapforge.errors import InputError
from gapforge.window import GapWindow


def test_open_and_closed_windows():
    wide = GapWindow(6)
    assert wide.open and not wide.closed and wide.upper == math.inf and wide.centre == 6.0
    assert isinstance(wide.gap_min, float)
    assert str(wide) == "≥ 6.00 eV"
    band = GapWindow(2.0, 3.0)
    assert band.closed and band.centre == 2.5 and band.bounds == (2.0, 3.0)
    assert str(band) == "2.00–3.00 eV"
    assert band.contains([1.99, 2.0, 2.5, 3.0, 3.01, np.nan]).tolist() == [
        False, True, True, True, False, False,
    ]  # fmt: skip
    assert wide.contains(np.array([[5.0, 6.0], [7.0, np.nan]])).tolist() == [[False, True], [True, False]]
    assert band.distance([1.0, 2.5, 4.5]).tolist() == [1.0, 0.0, 1.5]


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [(-0.1, None, "gap_min"), (math.nan, None, "gap_min"), (3.0, 3.0, "above"), (3.0, 2.0, "above"),
     (1.0, math.inf, "finite"), (True, None, "gap_min")],
)  # fmt: skip
def test_bad_windows_are_refused(lo, hi, match):
    with pytest.raises(InputError, match=match):
        GapWindow(lo, hi)


def test_probability_matches_the_normal_distribution():
    band, wide = GapWindow(2.0, 3.0), GapWindow(6.0)
    means = np.array([2.5, 1.0, 6.0, 8.0, 3.4])
    stds = np.array([0.5, 0.3, 1.2, 0.1, 2.0])
    for m, s, pb, pw in zip(
        means, stds, band.probability(means, stds), wide.probability(means, stds), strict=True
    ):
        d = NormalDist(m, s)
        assert pb == pytest.approx(d.cdf(3.0) - d.cdf(2.0), abs=1e-12)
        assert pw == pytest.approx(1 - d.cdf(6.0), abs=1e-12)
    # a mean on the edge of an open window is a coin toss; far inside is near certain
    assert wide.probability(6.0, 0.4) == pytest.approx(0.5)
    assert wide.probability(9.0, 0.4) > 0.999
    # a missing or zero spread is read as a near-certain prediction, a missing mean as "not in window"
    assert band.probability([2.5, 3.5, np.nan], [0.0, np.nan, 0.3]).tolist() == [1.0, 0.0, 0.0]
    # a wide spread on a narrow window lowers the probability even with the mean at the centre
    assert band.probability(2.5, 1.5) < band.probability(2.5, 0.3)


def test_round_trip():
    for w in (GapWindow(4.0), GapWindow(2.0, 3.5)):
        assert GapWindow.from_dict(w.to_dict()) == w
    assert GapWindow(4.0).to_dict() == {"gap_min": 4.0, "gap_max": None}
    with pytest.raises(InputError, match="gap_min"):
        GapWindow.from_dict({"gap_max": 3.0})

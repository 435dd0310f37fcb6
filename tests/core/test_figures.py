"""Summary figures and their text (core/figures.py): the one copy the CLI and the plugin use."""

import numpy as np
import pytest
from segexplain.core.figures import format_number, nanmean_or_none, nanmedian_or_none


def test_nan_statistics_are_none_without_a_finite_value():
    assert nanmean_or_none([np.nan, 1.0, 3.0]) == pytest.approx(2.0)
    assert nanmedian_or_none(np.array([np.nan, 1.0, 2.0, 10.0])) == pytest.approx(2.0)
    assert nanmean_or_none([np.nan, np.nan]) is None
    assert nanmedian_or_none([]) is None
    assert isinstance(nanmean_or_none(np.array([1, 2], np.int64)), float)


def test_format_number():
    assert format_number(0.72345) == "0.723"
    assert format_number(0.72345, percent=True) == "72.34"
    assert format_number(np.float32(0.5)) == "0.500"
    assert format_number(2) == "2.000"
    for missing in (None, float("nan"), np.inf, True, "0.5"):
        assert format_number(missing) == "n/a"
        assert format_number(missing, missing="-") == "-"

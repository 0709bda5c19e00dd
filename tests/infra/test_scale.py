"""The one switch of how much work the notebooks do."""
import pytest

from mdmlib.infra.scale import by_scale, current_scale


def test_scale_switch(monkeypatch):
    monkeypatch.setenv("MDMLIB_SCALE", "full")
    assert current_scale() == "full" and by_scale(1, 2, 3) == 2
    monkeypatch.setenv("MDMLIB_SCALE", "paper")
    assert by_scale(1, 2) == 2
    monkeypatch.setenv("MDMLIB_SCALE", "huge")
    with pytest.raises(ValueError, match="MDMLIB_SCALE"):
        current_scale()

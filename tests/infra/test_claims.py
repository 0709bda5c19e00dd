import json

import pytest

from mdmlib.infra import claims


@pytest.fixture(autouse=True)
def _tmp_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path))
    monkeypatch.delenv("MDMLIB_SCALE", raising=False)


def test_a_failed_claim_stops_the_notebook_and_is_recorded():
    log = claims.ClaimLog("99_demo")
    log.check("ok", "a true thing", section="3.1", measured=0.5, uncertainty=0.01, expected="within 3 SE of 0.5", passed=True)
    with pytest.raises(AssertionError, match="'bad' does not hold: measured 2"):
        log.check("bad", "a false thing", section="5", measured=2, expected="< 1", passed=2 < 1)
    with pytest.raises(ValueError, match="twice"):
        log.check("ok", "again", section="3.1", measured=1, expected="", passed=True)
    saved = json.loads(log.save().read_text())
    assert [c["passed"] for c in saved["claims"]] == [True, False] and saved["scale"] == "quick"


def test_summary_gathers_every_notebook_in_order(tmp_path):
    for name, value in [("02_b", 2.0), ("01_a", 1e-7)]:
        log = claims.ClaimLog(name)
        log.check("k", f"claim of {name}", section="5.2", measured=value, expected="> 0", passed=True, figure="01_fig")
        log.save()
    (tmp_path / "01_fig.png").write_bytes(b"png")
    text = claims.summarize()
    rows = [line for line in text.splitlines() if line.startswith("| 0")]
    assert [r.split("|")[1].strip() for r in rows] == ["01", "02"]
    assert "1e-07" in rows[0] and "[01_fig](figures/01_fig.png)" in rows[0]
    assert "2 claims in 2 notebooks, 2 hold, 0 do not" in text
    assert (tmp_path / "claims.md").read_text() == text
    assert json.loads((tmp_path / "claims.json").read_text())["total"] == 2


def test_no_claims_is_an_error():
    with pytest.raises(ValueError, match="run the notebooks first"):
        claims.summarize()

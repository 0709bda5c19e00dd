"""The report writes its JSON and its figure."""
import json

from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe
from mdmlib.audit.public_lines import LINES

QUIET = dict(show_progress=False)


def test_report_writes_json_and_a_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path))
    from mdmlib.infra.results import save_figure, save_json

    report = audit(LINES["project_truncated_race"], probes=[Probe("zipf", 1e-2, 100), Probe("flat", 1e-3, 100)], **QUIET)
    data = json.loads(save_json(report.to_json(), "audit_test").read_text())
    assert data["verdict"] == report.verdict and len(data["probes"]) == 2
    assert save_figure(report.figure(), "audit_test").stat().st_size > 0

"""The Monte Carlo path stops at its time budget and says so."""
from mdmlib.audit.core import audit
from mdmlib.audit.probes import Probe
from mdmlib.precision.categorical import inverse_cdf

QUIET = dict(show_progress=False)


def _undeclared(f):
    """The same function without its declaration: the audit must measure it."""
    return lambda p, g: f(p, g)


def test_time_budget_stops_early_and_says_so():
    report = audit(_undeclared(lambda p, g: inverse_cdf(p, g)), probes=[Probe("flat", 1e-3, 1_000)], dtype="float64", budget=0.5,
                   chunk_elems=1 << 16, **QUIET)
    r = report.results[0]
    assert report.out_of_time and 0 < r.n < r.target_n and r.power < 0.99
    assert "ran out" in report.table()

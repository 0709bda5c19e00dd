"""The Monte Carlo path stops at its time budget and says so, holds that budget for a slow
line (chunks sized from the line's speed), refuses a line too slow for one chunk, and
resumes an interrupted run from its kept progress to the very draws of an uninterrupted one."""
import time

import pytest
import torch

from mdmlib.audit import monte_carlo
from mdmlib.audit.core import audit
from mdmlib.audit.line import AuditError
from mdmlib.audit.probes import Probe
from mdmlib.infra.results import CacheWarning, KeptParts
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


def slow_line(probs, generator):
    """2 ms a row: the default chunk of 2^22 inputs (41,000 rows of 101) would take 83 s."""
    time.sleep(0.002 * probs.shape[0])
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def test_the_budget_holds_for_a_slow_line():
    budget = 2.0
    start = time.monotonic()
    report = audit(slow_line, probes=[Probe("flat", 1e-2, 100), Probe("zipf", 1e-3, 100)], budget=budget, **QUIET)
    wall = time.monotonic() - start
    assert report.out_of_time and all(r.n > 0 for r in report.results)
    assert report.seconds <= budget * (1 + 1 / monte_carlo.CHUNKS_PER_BUDGET) + 0.1  # the stated factor, and the clock's slack
    assert wall <= budget * 1.25 + 1.0  # the two timed calls on 3 rows and the fits besides


def test_the_draws_do_not_depend_on_the_line_s_speed_while_the_budget_holds():
    """Two audits of one line whose calls take different times (the first slowest, as a cold
    line's are) draw the same sample: the chunks are sized by time only when time binds."""
    def line_with_delays(delays):
        def line(probs, generator):
            time.sleep(delays.pop(0) if delays else 0.0)
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return line

    probes = [Probe("flat", 1e-2, 50), Probe("zipf", 1e-3, 200)]
    runs = [audit(line_with_delays(delays), probes=probes, budget=60, chunk_elems=1 << 14, **QUIET)
            for delays in ([0.05, 0.05, 0.01], [0.0])]
    assert not any(r.out_of_time for r in runs)
    assert [(x.n, x.leaves) for x in runs[0].results] == [(x.n, x.leaves) for x in runs[1].results]


def test_a_line_too_slow_for_one_chunk_is_refused():
    def sluggish(probs, generator):
        time.sleep(0.2)
        return torch.zeros(probs.shape[0], dtype=torch.int64)

    with pytest.raises(AuditError, match=r"on 3 rows of 11 classes takes 0\.2\d* s, more than one chunk of the 1 s budget.*at least [45] s"):
        audit(sluggish, probes=[Probe("flat", 0.1, 10)], budget=1.0, **QUIET)


STOP_AT = [None]  # the call at which `stoppable` is interrupted, as by Ctrl-C
CALLS = [0]


def stoppable(probs, generator):
    CALLS[0] += 1
    if CALLS[0] == STOP_AT[0]:
        raise KeyboardInterrupt
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def test_an_interrupted_audit_resumes_to_the_uninterrupted_draws(tmp_path, capsys):
    probes = [Probe("flat", 0.05, 10), Probe("zipf", 0.02, 10)]
    options = dict(probes=probes, budget=600, chunk_elems=2_000, **QUIET)
    STOP_AT[0], CALLS[0] = None, 0
    whole = audit(stoppable, **options)
    calls = CALLS[0]
    kept = KeptParts(tmp_path / "audit.partial", "mdmlib.tests").check()
    STOP_AT[0], CALLS[0] = calls // 2, 0
    with pytest.raises(KeyboardInterrupt):
        audit(stoppable, kept=kept, **options)
    assert (tmp_path / "audit.partial" / "monte_carlo.json").is_file()
    STOP_AT[0], CALLS[0] = None, 0
    resumed = audit(stoppable, kept=kept, **options)
    assert "resuming the Monte Carlo kept in" in capsys.readouterr().out
    assert 0 < CALLS[0] - 2 < calls - 2  # it drew only what was left (2 calls check the contract and time the line)
    for a, b in zip(whole.results, resumed.results):
        assert (a.n, a.leaves) == (b.n, b.leaves) and torch.equal(a.token_counts, b.token_counts)
    STOP_AT[0], CALLS[0] = None, 0
    with pytest.warns(CacheWarning, match=r"other parameters \(seed\)"):
        other = audit(stoppable, kept=kept, **{**options, "seed": 1})  # other parameters: nothing reused
    assert CALLS[0] == calls and other.results[0].leaves != whole.results[0].leaves

"""Running a line: a broken contract gets a clear message, and a line on the global
generator is seeded and leaves that generator alone."""
import sys

import pytest
import torch

from mdmlib.audit.core import audit
from mdmlib.audit.line import AuditError, run_line
from mdmlib.audit.probes import Probe

QUIET = dict(show_progress=False)


def test_bad_lines_get_clear_messages():
    x = torch.full((4, 11), 1 / 11)
    g = torch.Generator().manual_seed(0)
    cases = [
        (lambda p, g: torch.multinomial(p, 1, generator=g), "shape \\(4, 1\\).*squeeze"),
        (lambda p, g: torch.full((4,), 11), "outside \\[0, 10\\]"),
        (lambda p, g: torch.zeros(4), "dtype torch.float32"),
        (lambda p, g: [0, 1, 2, 3], "returned list"),
        (lambda p, g: 1 / 0, "raised ZeroDivisionError"),
    ]
    for f, message in cases:
        with pytest.raises(AuditError, match=message):
            run_line(f, x, g)
    with pytest.raises(AuditError, match="shape"):  # checked before any long run
        audit(lambda p, g: p.argmax(-1, keepdim=True), probes=[Probe("flat", 0.1, 10)], **QUIET)


def test_a_line_on_the_global_generator_is_seeded_and_leaves_it_alone():
    x = torch.full((50, 11), 1 / 11)
    before = torch.get_rng_state()
    a = run_line(lambda p: torch.multinomial(p, 1).squeeze(-1), x, torch.Generator().manual_seed(4))
    assert torch.equal(before, torch.get_rng_state())
    assert torch.equal(a, run_line(lambda p: torch.multinomial(p, 1).squeeze(-1), x, torch.Generator().manual_seed(4)))


def test_a_line_that_calls_sys_exit_is_reported_not_obeyed():
    x = torch.full((4, 11), 1 / 11)
    with pytest.raises(AuditError, match=r"called sys.exit\(3\)"):
        run_line(lambda p, g: sys.exit(3), x, torch.Generator())
    with pytest.raises(KeyboardInterrupt):  # an interrupt stays an interrupt
        run_line(lambda p, g: (_ for _ in ()).throw(KeyboardInterrupt()), x, torch.Generator())

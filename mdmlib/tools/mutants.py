"""Plausible bugs that the tests must catch: `python -m mdmlib.tools.mutants [NAME ...]`.

A test suite that passes proves little until it is seen to fail. Each mutant below
replaces one exact snippet of one file of the package with a wrong version (a bug
someone could plausibly write) and names the tests that should catch it. The
package and its tests are copied to a temporary folder; there, one mutant at a time
is applied, its tests run (pytest -x -q, in a subprocess, with a time limit) and the
file restored. A table says which test caught each mutant. The exit status is 1 if
any mutant survives (or if the unmutated copy fails its own tests).

tests/tools/test_mutants.py checks, cheaply, that every snippet still occurs exactly once
in its file and that every named test exists, so the list cannot go stale silently.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mdmlib.infra.paths import require_project_root

from mdmlib.infra.progress import progress

ROOT = require_project_root("mdmlib.tools.mutants")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file, relative to the project root
    snippet: str  # exact source text, occurring once in the file
    replacement: str
    description: str
    tests: tuple[str, ...]  # pytest node ids, relative to the project root


MUTANTS = (
    Mutant(
        "sparse-no-truncation",
        "mdmlib/mdm/step.py",
        "return u * (1.0 - eps)",
        "return u",
        "sparse_step's float64+trunc uniforms (the mask's and the candidates') lose the factor 1 - eps",
        (
            "tests/mdm/test_step.py::test_sparse_and_dense_steps_follow_the_law_of_their_precision[float64+trunc]",
            "tests/mdm/test_samplers.py::test_ancestral_sampler_follows_the_law_of_its_precision[float64+trunc-sparse]",
        ),
    ),
    Mutant(
        "sparse-all-tokens-no-truncation",
        "mdmlib/mdm/step.py",
        '        if precision == "float64+trunc":\n            u = u * (1.0 - eps)\n',
        "",
        "where sparse_step draws all V token uniforms, float64+trunc forgets to truncate them",
        ("tests/mdm/test_step.py::test_sparse_and_dense_steps_follow_the_law_of_their_precision[float64+trunc]",),
    ),
    Mutant(
        "step-mask-at-t",
        "mdmlib/mdm/step.py",
        "m_s.expand(mu.shape[0], 1)",
        "m_t.expand(mu.shape[0], 1)",
        "the literal step's mask category is m(t) instead of m(s): the time grid off by one step",
        ("tests/mdm/test_step.py::test_sparse_and_dense_steps_follow_the_law_of_their_precision",),
    ),
    Mutant(
        "sparse-token-ties-to-last",
        "mdmlib/mdm/step.py",
        '"amin"',
        '"amax"',
        "sparse_step gives a tie between candidate tokens to the largest index (argmax gives it to the first)",
        ("tests/mdm/test_step.py::test_sparse_float32_follows_the_grid_law_and_breaks_ties_like_argmax",),
    ),
    Mutant(
        "window-without-margin",
        "mdmlib/mdm/step.py",
        "top = torch.floor(-torch.expm1(-e_star * (1 + 1e-4)) * 2.0**bits) + 8",
        "top = torch.floor(-torch.expm1(-e_star) * 2.0**bits)",
        "the candidate window without its margin for the rounding of the literal scores",
        ("tests/mdm/test_step.py::test_candidate_window_contains_every_possible_winner",),
    ),
    Mutant(
        "grid-law-continuous-uniforms",
        "mdmlib/precision/grid_law.py",
        "return base if dtype == torch.float32 else _rounded(base, dtype)",
        "return base",
        "the grid law ignores the format's grid: its uniforms are float32's 2^-24 grid, nearly continuous",
        (
            "tests/precision/test_grid_law.py::test_rand_grid_models_torch_rand",
            "tests/precision/test_grid_law.py::test_law_on_grid_matches_the_real_sampler",
        ),
    ),
    Mutant(
        "grid-law-unrounded-scores",
        "mdmlib/precision/grid_law.py",
        "return score_fn(p.expand_as(u), u).to(torch.float64)",
        "return score_fn(p.expand_as(u).double(), u.double()).to(torch.float64)",
        "the grid law computes the scores in float64 instead of the sampler's format (no rounding, fewer ties)",
        ("tests/precision/test_grid_law.py::test_gumbel_max_in_bfloat16_ties_by_its_rounded_scores",),
    ),
    Mutant(
        "grid-law-ties-to-all",
        "mdmlib/precision/grid_law.py",
        "term = own * torch.exp(-above_fin - lf - before_fin)",
        "term = own * torch.exp(-above_fin - lf)",
        "the grid law lets every tied class win (argmax gives a tie to the first index only)",
        (
            "tests/precision/test_grid_law.py::test_law_on_grid_matches_the_real_sampler",
            "tests/mdm/test_step.py::test_sparse_float32_follows_the_grid_law_and_breaks_ties_like_argmax",
        ),
    ),
    Mutant(
        "race-guards",
        "mdmlib/precision/categorical.py",
        "p / (1e-10 - torch.log(u + 1e-10))",
        "p / (1e-8 - torch.log(u + 1e-8))",
        "the MDLM/SEDD race line with other guard constants",
        ("tests/precision/test_categorical.py::test_race_score_is_mdlm_line_at_both_ends_of_the_grid",),
    ),
    Mutant(
        "truncated-race-no-cap",
        "mdmlib/precision/categorical.py",
        "u = _uniform(p, generator, torch.float64) * (1.0 - eps)",
        "u = _uniform(p, generator, torch.float64)",
        "the literal float64 + truncation line forgets to scale its uniforms",
        ("tests/precision/test_categorical.py::test_truncated_race_follows_the_closed_form",),
    ),
    Mutant(
        "closed-form-count",
        "mdmlib/precision/truncation.py",
        "above = torch.arange(K - 1, 0, -1, dtype=s.dtype, device=s.device)",
        "above = torch.arange(K, 1, -1, dtype=s.dtype, device=s.device)",
        "the closed form counts one class too many above each class (K + 1 - i becomes K + 2 - i)",
        ("tests/precision/test_truncation.py::test_closed_form_matches_numerical_integration",),
    ),
    Mutant(
        "paper-formula-term",
        "mdmlib/precision/symbolic.py",
        "first = sp.exp((K + 1 - i - S_i / pis[i - 1]) * delta)",
        "first = sp.exp((K - i - S_i / pis[i - 1]) * delta)",
        "the paper's beta(i) with K - i for K + 1 - i in its first exponential",
        ("tests/precision/test_symbolic.py::test_paper_formula_is_the_law_for_two_classes",),
    ),
    Mutant(
        "denoiser-left-distance",
        "mdmlib/language/synthetic.py",
        "torch.where(has_a, c - a - 1, 0)",
        "torch.where(has_a, c - a, 0)",
        "the exact denoiser counts the distance to the left neighbour one too long",
        (
            "tests/language/test_synthetic.py::test_brute_force_denoiser",
            "tests/mdm/test_samplers.py::test_any_order_filling_with_the_exact_denoiser_is_the_language",
        ),
    ),
    Mutant(
        "denoiser-right-distance",
        "mdmlib/language/synthetic.py",
        "torch.where(has_b, b - c - 1, 0)",
        "torch.where(has_b, b - c, 0)",
        "the exact denoiser counts the distance to the right neighbour one too long",
        (
            "tests/language/test_synthetic.py::test_brute_force_denoiser",
            "tests/mdm/test_samplers.py::test_any_order_filling_with_the_exact_denoiser_is_the_language",
        ),
    ),
    Mutant(
        "zipf-rank-offset",
        "mdmlib/language/synthetic.py",
        "torch.arange(1, V + 1, dtype=torch.float64) ** -spec.zipf_exponent",
        "torch.arange(2, V + 2, dtype=torch.float64) ** -spec.zipf_exponent",
        "the Zipf base counts ranks from 2",
        ("tests/language/test_synthetic.py::test_zipf_base_without_spread_is_exact",),
    ),
    Mutant(
        "time-grid-off-by-one",
        "mdmlib/mdm/schedules.py",
        "torch.arange(steps, -1, -1, dtype=torch.float64) / steps",
        "torch.arange(steps, -1, -1, dtype=torch.float64) / (steps + 1)",
        "the time grid t_n = n / (N + 1): it starts below t = 1",
        (
            "tests/mdm/test_schedules.py::test_time_grid_walks_from_one_to_zero_in_equal_steps",
            "tests/mdm/test_samplers.py::test_denoiser_calls_follow_the_caching_law",
        ),
    ),
    Mutant(
        "unmask-steps-off-by-one",
        "mdmlib/mdm/schedules.py",
        "m = mask_probability(schedule, time_grid(steps))",
        "m = mask_probability(schedule, time_grid(steps + 1))",
        "the exact sampler's unmask-step probabilities come from a grid of one step more",
        ("tests/mdm/test_samplers.py::test_denoiser_calls_follow_the_caching_law[exact]",),
    ),
    Mutant(
        "per-batch-cache",
        "mdmlib/mdm/samplers.py",
        "cache.stale[rows[unmasked]] = True",
        "cache.stale[:] = True",
        "the ancestral sampler recomputes every sequence when any sequence changed (a per-batch cache)",
        ("tests/mdm/test_samplers.py::test_denoiser_calls_follow_the_caching_law[ancestral float64]",),
    ),
    Mutant(
        "stale-cache",
        "mdmlib/mdm/samplers.py",
        "        cache.stale[rows] = True\n",
        "",
        "the exact sampler never refreshes its cached denoiser output",
        ("tests/mdm/test_samplers.py::test_two_steps_follow_the_exact_law[exact]",),
    ),
    Mutant(
        "pool-never-grows",
        "mdmlib/stats/significance.py",
        "if total >= min_expected:",
        "if total >= 0:",
        "the chi-square pool of small classes stays below min_expected (the old pooling bug)",
        ("tests/stats/test_significance.py::test_small_classes_are_pooled_until_the_pool_is_large_enough",),
    ),
    Mutant(
        "power-without-n",
        "mdmlib/stats/significance.py",
        "noncentrality = n * float(((qb - pb) ** 2 / pb).sum())",
        "noncentrality = float(((qb - pb) ** 2 / pb).sum())",
        "the chi-square power forgets the sample size in its non-centrality",
        ("tests/stats/test_significance.py::test_power_agrees_with_simulation",),
    ),
)


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # "caught", "timeout", "SURVIVED", "ERROR"
    detail: str  # the first failing test, or what went wrong
    seconds: float


def _copy_project(dest: Path) -> None:
    for name in ("mdmlib", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")  # pytest's settings


def _environment(dest: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(dest), MDMLIB_PROGRESS="0")
    env["MDMLIB_CACHE"], env["MDMLIB_FIGURES"] = str(dest / ".cache"), str(dest / "figures")
    return env


def _first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0]
    return output.strip().splitlines()[-1] if output.strip() else "no output"


def run_tests(dest: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    """pytest -x -q on the named tests in the copy: (exit status or None on timeout, output)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(cmd, cwd=dest, env=_environment(dest), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def apply(mutant: Mutant, root: Path) -> str:
    """Write the mutant into the copy at root; return the original text to restore."""
    path = root / mutant.path
    original = path.read_text()
    if original.count(mutant.snippet) != 1:
        raise ValueError(f"mutant {mutant.name}: its snippet occurs {original.count(mutant.snippet)} times in {mutant.path}, not once")
    path.write_text(original.replace(mutant.snippet, mutant.replacement))
    return original


def check(mutants, timeout: float) -> tuple[list[Outcome], str | None]:
    """Run every mutant's tests on a mutated copy. Returns the outcomes, and an error if the
    unmutated copy does not pass the same tests (then no outcome means anything)."""
    with tempfile.TemporaryDirectory(prefix="mdmlib-mutants-") as tmp:
        dest = Path(tmp)
        _copy_project(dest)
        where = subprocess.run([sys.executable, "-c", "import mdmlib; print(mdmlib.__file__)"], cwd=dest, env=_environment(dest), capture_output=True, text=True)
        if not where.stdout.strip().startswith(str(dest)):
            return [], f"the copy's tests would import mdmlib from {where.stdout.strip() or where.stderr.strip()}, not from the copy"
        every_test = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        status, output = run_tests(dest, every_test, timeout * len(mutants))
        if status != 0:
            return [], f"the unmutated tests do not pass: {_first_failure(output)}"
        outcomes = []
        bar = progress(mutants, desc="mutants", unit="mutant")
        for mutant in bar:
            bar.set_postfix_str(mutant.name)
            start = time.perf_counter()
            original = apply(mutant, dest)
            try:
                status, output = run_tests(dest, mutant.tests, timeout)
            finally:
                (dest / mutant.path).write_text(original)
            if status is None:
                verdict = ("timeout", output)
            elif status in (1, 2):  # a test failed, or the mutated package failed to import
                verdict = ("caught", _first_failure(output))
            elif status == 0:
                verdict = ("SURVIVED", "every named test passed")
            else:
                verdict = ("ERROR", f"pytest exit status {status}: {_first_failure(output)}")
            outcomes.append(Outcome(mutant, *verdict, time.perf_counter() - start))
        return outcomes, None


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutant", "tests run", "caught?", "by", "s")]
    for o in outcomes:
        tests = ", ".join(t.split("/")[-1] for t in o.mutant.tests)
        rows.append((o.mutant.name, tests, o.status, o.detail.removeprefix("FAILED ").removeprefix("ERROR "), f"{o.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + " | " + r[4] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants (default: all)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's tests (default 600)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutants {unknown}; known: {sorted(known)}")
    chosen = [known[n] for n in args.names] if args.names else list(MUTANTS)
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.description} ({m.path})")
        return 0
    outcomes, error = check(chosen, args.timeout)
    if error:
        print(error)
        return 1
    print(table(outcomes))
    missed = [o.mutant.name for o in outcomes if o.status not in ("caught", "timeout")]
    print(f"\n{len(outcomes) - len(missed)} of {len(outcomes)} mutants caught" + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

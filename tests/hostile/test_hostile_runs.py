"""Careless and hostile input to the long runs and what they write (issue 17, items 6 and 7):
the paper-scale runner, the audit, the GPU checks, the cache and every atomically written
file. One row per case in CASES: the call, and the named error it must give (`Raises`: the
exception and words of its message; `Exits`: a command's status and words on stderr) or
the safe behaviour it must show (`Safe`: the row's own assertions)."""
import json
import os
import re
import stat
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mdmlib.audit import cli as audit_cli
from mdmlib.audit import fit
from mdmlib.audit.core import audit
from mdmlib.audit.line import AuditError
from mdmlib.audit.probes import Probe
from mdmlib.infra import results
from mdmlib.mdm.samplers import expected_nfe
from mdmlib.mdm.schedules import time_grid
from mdmlib.runs import paper_scale
from mdmlib.tools import gpu_check
from mdmlib.tools import paper_scale as paper_scale_cli

SEDD_STEPS = 20


# ---- the expectations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Raises:
    error: type
    words: str  # a regular expression searched in the message


@dataclass(frozen=True)
class Exits:
    code: int
    words: str  # searched in what the command wrote to stderr


SAFE = None  # the row asserts its safe behaviour itself


@dataclass
class Context:
    tmp: Path
    folders: object  # a callable giving the tiny checkpoints (they need transformers)
    capsys: object
    monkeypatch: object


# ---- helpers -------------------------------------------------------------------------------------
def _tiny(ctx) -> Path:
    return ctx.folders()


def _paper_args(ctx, out, *extra, checkpoint="tiny-mdlm", samples=2) -> list[str]:
    from tiny_judge import LENGTH

    root = _tiny(ctx)
    return ["--checkpoint", str(root / checkpoint), "--judge", str(root / "tiny-gpt2"), "--samples", str(samples), "--length", str(LENGTH),
            "--steps", "6", "--precisions", "float32", "--trunc-steps", "6", "--shard-size", "2", "--seed", "3", "--device", "cpu",
            "--local-files-only", "--no-progress", "--out", str(out), *extra]


def _paper_exit(ctx, out) -> tuple[int, str]:
    """The paper-scale command on a checkpoint that does not exist: an --out error must come first."""
    code = paper_scale_cli.main(["--checkpoint", str(ctx.tmp / "no-checkpoint"), "--device", "cpu", "--out", str(out)])
    return code, ctx.capsys.readouterr().err


USER_FILE = '''
import os, sys, torch

CALLS = [0]

def race(probs, generator):
    CALLS[0] += 1
    if CALLS[0] == int(os.environ.get("STOP_AT", "0")):
        raise KeyboardInterrupt
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype)
    return (probs / -torch.log(u)).argmax(-1)

def exits(probs, generator):
    sys.exit(3)

def fails(probs, generator):
    raise RuntimeError("no sampler here")

def keepdim(probs, generator):
    return torch.multinomial(probs, 1, generator=generator)

def floats(probs, generator):
    return probs.argmax(-1).float()

def fails_later(probs, generator):
    CALLS[0] += 1
    if CALLS[0] > 4:
        raise RuntimeError("tired")
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
'''


def _audit(ctx, target, *extra, out=None, env=None) -> tuple[int, str, str]:
    """The audit command in this process on the user's file; (status, stdout, stderr)."""
    (ctx.tmp / "my_sampler.py").write_text(textwrap.dedent(USER_FILE))
    (ctx.tmp / "exits_on_import.py").write_text("import sys\nsys.exit(4)\ndef race(p, g):\n    return p.argmax(-1)\n")
    ctx.monkeypatch.setenv("MDMLIB_CACHE", str(ctx.tmp / "cache"))
    ctx.monkeypatch.setenv("MDMLIB_PROGRESS", "0")
    for k, v in (env or {}).items():
        ctx.monkeypatch.setenv(k, v)
    out = ctx.tmp / "out" if out is None else out
    code = audit_cli.main([str(ctx.tmp / target), "--vocab", "10", "--steps", "1e-1", "--mu", "flat", "--budget", "60s", "--chunk", "2000",
                           "--out", str(out), *extra])
    captured = ctx.capsys.readouterr()
    return code, captured.out, captured.err


def _nothing_written(folder: Path) -> None:
    assert not folder.exists() or not [p.name for p in folder.iterdir() if p.suffix in (".json", ".png")], list(folder.iterdir())


def _audit_refused(target, *extra):
    """An audit of a bad line: status 2, and no JSON or figure written."""

    def case(ctx):
        code, _, err = _audit(ctx, target, *extra)
        _nothing_written(ctx.tmp / "out")
        return code, err

    return case


# ---- paper scale: --out is checked before anything is loaded -----------------------------------
def paper_out_is_a_folder(ctx):
    return _paper_exit(ctx, ctx.tmp)


def paper_out_in_a_missing_folder(ctx):
    return _paper_exit(ctx, ctx.tmp / "missing" / "run.json")


def paper_out_is_someone_elses_file(ctx):
    (ctx.tmp / "notes.json").write_text('{"mine": 1}')
    code, err = _paper_exit(ctx, ctx.tmp / "notes.json")
    assert (ctx.tmp / "notes.json").read_text() == '{"mine": 1}'
    return code, err


def paper_partial_folder_not_its_own(ctx):
    (ctx.tmp / "run.json.partial").mkdir()
    (ctx.tmp / "run.json.partial" / "data.txt").write_text("someone's")
    code, err = _paper_exit(ctx, ctx.tmp / "run.json")
    assert (ctx.tmp / "run.json.partial" / "data.txt").read_text() == "someone's"
    return code, err


def paper_out_in_a_read_only_folder(ctx):
    (ctx.tmp / "ro").mkdir(mode=0o500)
    return _paper_exit(ctx, ctx.tmp / "ro" / "run.json")


def paper_own_result_may_be_replaced(ctx):
    out = paper_scale.write_results({"table": []}, ctx.tmp / "run.json")
    assert json.loads(out.read_text())[results.WRITTEN_BY] == paper_scale.TOOL
    assert paper_scale.output_path(out) == out


# ---- paper scale: what finished is kept, and a rerun resumes from it -----------------------------
def _interrupted(ctx, out, at="float64+trunc@6"):
    """The command interrupted (as by Ctrl-C) when it reaches the setting `at`."""
    real = paper_scale.run_setting

    def run_setting(denoiser, judge, setting, **kwargs):
        if setting.name == at:
            raise KeyboardInterrupt
        return real(denoiser, judge, setting, **kwargs)

    ctx.monkeypatch.setattr(paper_scale, "run_setting", run_setting)
    code = paper_scale_cli.main(_paper_args(ctx, out))
    ctx.monkeypatch.setattr(paper_scale, "run_setting", real)
    return code, ctx.capsys.readouterr().err


def paper_interrupt_keeps_finished_settings(ctx):
    out = ctx.tmp / "run.json"
    code, err = _interrupted(ctx, out)
    assert code == 130 and f"kept in {out}.partial" in err and not out.exists()
    kept = sorted(p.name for p in (ctx.tmp / "run.json.partial").iterdir())
    assert kept == [".written_by", "float32_6.json"]


def paper_rerun_resumes_and_says_so(ctx):
    out, fresh = ctx.tmp / "run.json", ctx.tmp / "fresh.json"
    _interrupted(ctx, out)
    assert paper_scale_cli.main(_paper_args(ctx, out)) == 0
    assert "resuming: 1 of 2 settings reused" in ctx.capsys.readouterr().out
    assert not (ctx.tmp / "run.json.partial").exists()  # the record is whole: what was kept is gone
    assert paper_scale_cli.main(_paper_args(ctx, fresh)) == 0
    a, b = (json.loads(p.read_text()) for p in (out, fresh))
    for ra, rb in zip(a["results"], b["results"], strict=True):  # the resumed record is the uninterrupted one
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}


def paper_kept_settings_of_another_seed_are_not_reused(ctx):
    out = ctx.tmp / "run.json"
    _interrupted(ctx, out)
    arguments = _paper_args(ctx, out)
    arguments[arguments.index("--seed") + 1] = "4"
    with pytest.warns(results.CacheWarning, match=r"float32_6.json was made by a run with other parameters \(seed\)"):
        assert paper_scale_cli.main(arguments) == 0
    assert "resuming" not in ctx.capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["seed"] == paper_scale.setting_seed(4, paper_scale.Setting("float32", 6))


# ---- paper scale: caching that is valid for the network ----------------------------------------
def _record(ctx, checkpoint, **options):
    from tiny_judge import LENGTH

    root = _tiny(ctx)
    return paper_scale.paper_run(root / checkpoint, root / "tiny-gpt2", [paper_scale.Setting("float32", SEDD_STEPS)], samples=3, length=LENGTH,
                                 device="cpu", shard_size=2, local_files_only=True, progress=False, **options)


def sedd_default_options_give_the_correct_nfe(ctx):
    """A time-conditioned network is evaluated at every step, at that step's time, for every
    sequence still masked: NFE = the steps until the sequence is done, no stale output."""
    from mdmlib.models.parameterization import ScoreDenoiser
    from tiny_judge import LENGTH

    calls = []
    real = ScoreDenoiser.__call__

    def spy(self, x, t=None):
        t = torch.as_tensor(t, dtype=torch.float64).flatten()
        assert (t == t[0]).all()
        calls.append((x.shape[0], float(t[0])))
        return real(self, x, t)

    ctx.monkeypatch.setattr(ScoreDenoiser, "__call__", spy)
    record = _record(ctx, "tiny-sedd")
    assert record["provenance"]["settings"]["caching"] == "none"
    nfe = record["results"][0]["per_sequence"]["nfe"]
    grid = time_grid(SEDD_STEPS)
    starts = [i for i, (_, t) in enumerate(calls) if t == float(grid[0])] + [len(calls)]
    shards = [calls[a:b] for a, b in zip(starts, starts[1:])]
    assert [rows for rows, _ in (s[0] for s in shards)] == [2, 1]  # shards of 2 and 1 sequences
    for shard, shard_nfe in zip(shards, (nfe[:2], nfe[2:]), strict=True):
        assert [t for _, t in shard] == [float(t) for t in grid[: len(shard)]]  # one call per step, at its own time
        assert [rows for rows, _ in shard] == [int((shard_nfe > n).sum()) for n in range(len(shard))]
        assert len(shard) == int(shard_nfe.max())
    assert float(nfe.double().mean()) > expected_nfe(SEDD_STEPS, LENGTH, "loglinear")  # more than per-sequence caching would make


def sedd_explicit_per_sequence_is_refused(ctx):
    root = _tiny(ctx)
    paper_scale.paper_run(root / "tiny-sedd", ctx.tmp / "no-judge", [paper_scale.Setting("float32", 4)], samples=2, device="cpu",
                          caching="per_sequence", local_files_only=True, progress=False)  # refused before the judge is looked for


def sedd_per_sequence_when_asked_by_name(ctx):
    record = _record(ctx, "tiny-sedd", caching="per_sequence", allow_stale_time=True)
    assert record["provenance"]["settings"]["caching"] == "per_sequence"
    assert int(record["results"][0]["per_sequence"]["nfe"].max()) < SEDD_STEPS


def mdlm_default_keeps_per_sequence_caching(ctx):
    record = _record(ctx, "tiny-mdlm")
    assert record["provenance"]["settings"]["caching"] == "per_sequence"


def paper_cli_refuses_stale_time_caching_by_default(ctx):
    code = paper_scale_cli.main(_paper_args(ctx, ctx.tmp / "run.json", "--caching", "per_batch", checkpoint="tiny-sedd"))
    assert not (ctx.tmp / "run.json").exists() and not (ctx.tmp / "run.json.partial").exists()
    return code, ctx.capsys.readouterr().err


# ---- audit: its outputs ------------------------------------------------------------------------------
def audit_out_is_a_file(ctx):
    (ctx.tmp / "taken").write_text("x")
    code, _, err = _audit(ctx, "my_sampler.py:race", out=ctx.tmp / "taken")
    assert (ctx.tmp / "taken").read_text() == "x"
    return code, err


def audit_json_not_its_own(ctx):
    (ctx.tmp / "out").mkdir()
    (ctx.tmp / "out" / "audit_race.json").write_text('{"mine": 1}')
    code, _, err = _audit(ctx, "my_sampler.py:race")
    assert (ctx.tmp / "out" / "audit_race.json").read_text() == '{"mine": 1}'
    return code, err


def audit_figure_not_its_own(ctx):
    (ctx.tmp / "out").mkdir()
    (ctx.tmp / "out" / "audit_race.png").write_bytes(b"my picture")
    code, _, err = _audit(ctx, "my_sampler.py:race")
    assert (ctx.tmp / "out" / "audit_race.png").read_bytes() == b"my picture"
    return code, err


def audit_own_results_may_be_replaced(ctx):
    for _ in range(2):
        code, out, err = _audit(ctx, "my_sampler.py:race")
        assert code == 0, err
    assert json.loads((ctx.tmp / "out" / "audit_race.json").read_text())[results.WRITTEN_BY] == audit_cli.TOOL
    assert sorted(p.name for p in (ctx.tmp / "out").iterdir()) == ["audit_race.json", "audit_race.png"]


def audit_interrupt_keeps_progress_and_resumes(ctx):
    code, _, err = _audit(ctx, "my_sampler.py:race", env={"STOP_AT": "40"})
    assert code == 130 and "progress is kept in" in err
    _nothing_written(ctx.tmp / "out")
    assert (ctx.tmp / "out" / "audit_race.json.partial" / "monte_carlo.json").is_file()
    code, out, err = _audit(ctx, "my_sampler.py:race", env={"STOP_AT": "0"})
    assert code == 0 and "resuming the Monte Carlo kept in" in out and "of 1 probes finished" in out, err
    assert not (ctx.tmp / "out" / "audit_race.json.partial").exists()
    resumed = json.loads((ctx.tmp / "out" / "audit_race.json").read_text())
    (ctx.tmp / "out" / "audit_race.json").unlink()
    (ctx.tmp / "out" / "audit_race.png").unlink()
    assert _audit(ctx, "my_sampler.py:race")[0] == 0
    whole = json.loads((ctx.tmp / "out" / "audit_race.json").read_text())
    assert [(p["n"], p["leaves"]) for p in resumed["probes"]] == [(p["n"], p["leaves"]) for p in whole["probes"]]


# ---- audit: budgets and memory -----------------------------------------------------------------------
def slow_line(probs, generator):
    import time

    time.sleep(0.002 * probs.shape[0])  # 2 ms a row: one default chunk would take 80 s
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def audit_budget_holds_for_a_slow_line(ctx):
    report = audit(slow_line, probes=[Probe("flat", 1e-2, 100)], budget=1.0, show_progress=False)
    assert report.out_of_time and report.results[0].n > 0 and report.seconds <= 1.0 * 1.05 + 0.1


def audit_line_too_slow_for_one_chunk(ctx):
    def sluggish(probs, generator):
        import time

        time.sleep(0.3)
        return torch.zeros(probs.shape[0], dtype=torch.int64)

    audit(sluggish, probes=[Probe("flat", 0.1, 10)], budget=1.0, show_progress=False)


# ---- caches checked when read ------------------------------------------------------------------------
def _damaged_cache(damage, ctx):
    ctx.monkeypatch.setenv("MDMLIB_CACHE", str(ctx.tmp / "cache"))
    results.cached("thing", {"a": 1}, lambda: {"value": [7]})
    path = next((ctx.tmp / "cache").glob("thing-*.json"))
    path.write_text(damage(path.read_text()))
    with pytest.warns(results.CacheWarning, match="thing-.*json") as caught:
        assert results.cached("thing", {"a": 1}, lambda: {"value": [7]}) == {"value": [7]}
    assert str(path) in str(caught[0].message)


def edited_audit_cache_keeps_its_eps_fit(ctx):
    ctx.monkeypatch.setenv("MDMLIB_CACHE", str(ctx.tmp / "cache"))
    probe = Probe("flat", 1e-3, 100)
    fit._eps_curve_cached.cache_clear()
    truth = fit.eps_curve(probe)
    path = next((ctx.tmp / "cache").glob("audit_eps_curve-*.json"))
    stored = json.loads(path.read_text())
    stored["result"]["leave"] = [x * 10 for x in stored["result"]["leave"]]  # what an edit of the cache did to the fitted eps
    path.write_text(json.dumps(stored))
    fit._eps_curve_cached.cache_clear()
    with pytest.warns(results.CacheWarning, match="fails its checksum"):
        assert torch.equal(fit.eps_curve(probe), truth)
    fit._eps_curve_cached.cache_clear()


def _old_format(text):
    return json.dumps({k: v for k, v in json.loads(text).items() if k != "sha256"})


# ---- files written with the user's usual permissions ---------------------------------------------------
def _mode_under_umask(umask):
    def case(ctx):
        old = os.umask(umask)
        try:
            path = results.write_json({"a": 1}, ctx.tmp / "new.json")
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask

    return case


def replaced_file_keeps_its_mode(ctx):
    (ctx.tmp / "shared.json").write_text("{}")
    (ctx.tmp / "shared.json").chmod(0o664)
    results.write_json({"a": 1}, ctx.tmp / "shared.json")
    assert stat.S_IMODE((ctx.tmp / "shared.json").stat().st_mode) == 0o664


# ---- the GPU checks' --out -------------------------------------------------------------------------------
def gpu_out_is_a_folder(ctx):
    return gpu_check.main(["rand_lattice", "--out", str(ctx.tmp)]), ctx.capsys.readouterr().err


def gpu_out_is_someone_elses_file(ctx):
    (ctx.tmp / "gpu.json").write_text("[1, 2]")
    code = gpu_check.main(["rand_lattice", "--out", str(ctx.tmp / "gpu.json")])
    assert (ctx.tmp / "gpu.json").read_text() == "[1, 2]"
    return code, ctx.capsys.readouterr().err


AS_ROOT = os.name == "posix" and os.geteuid() == 0
NOT_POSIX = os.name != "posix"

CASES = [
    # paper scale: --out checked before any work (the checkpoint named does not exist, so a later check would never be reached)
    pytest.param(paper_out_is_a_folder, Exits(2, "is a folder"), id="paper-scale --out is a folder"),
    pytest.param(paper_out_in_a_missing_folder, Exits(2, "does not exist"), id="paper-scale --out in a missing folder"),
    pytest.param(paper_out_is_someone_elses_file, Exits(2, "was not written by mdmlib.runs.paper_scale"), id="paper-scale --out is another's file"),
    pytest.param(paper_partial_folder_not_its_own, Exits(2, "was not made by mdmlib.runs.paper_scale"), id="paper-scale OUT.partial is another's"),
    pytest.param(paper_out_in_a_read_only_folder, Exits(2, "cannot write in"), id="paper-scale --out in a read-only folder",
                 marks=pytest.mark.skipif(AS_ROOT or NOT_POSIX, reason="permissions do not bind root")),
    pytest.param(paper_own_result_may_be_replaced, SAFE, id="paper-scale --out its own result: replaced"),
    # paper scale: long runs keep what they finished
    pytest.param(paper_interrupt_keeps_finished_settings, SAFE, id="paper-scale interrupted: finished settings kept"),
    pytest.param(paper_rerun_resumes_and_says_so, SAFE, id="paper-scale rerun: resumes, says so, equals the uninterrupted run"),
    pytest.param(paper_kept_settings_of_another_seed_are_not_reused, SAFE, id="paper-scale kept settings of another seed: not reused"),
    # paper scale: caching valid for the network
    pytest.param(sedd_default_options_give_the_correct_nfe, SAFE, id="paper-scale SEDD default options: one call per step, correct NFE"),
    pytest.param(sedd_explicit_per_sequence_is_refused, Raises(ValueError, "time-conditioned.*--allow-stale-time"),
                 id="paper-scale SEDD per_sequence caching: refused"),
    pytest.param(paper_cli_refuses_stale_time_caching_by_default, Exits(2, "reuses the network's output at stale times"),
                 id="paper-scale command SEDD --caching per_batch: refused, nothing written"),
    pytest.param(sedd_per_sequence_when_asked_by_name, SAFE, id="paper-scale SEDD per_sequence with allow_stale_time: runs, recorded"),
    pytest.param(mdlm_default_keeps_per_sequence_caching, SAFE, id="paper-scale MDLM default: per_sequence caching"),
    # audit: outputs
    pytest.param(audit_out_is_a_file, Exits(2, "is not a folder"), id="audit --out is a file"),
    pytest.param(audit_json_not_its_own, Exits(2, "audit_race.json exists and was not written by mdmlib.audit"), id="audit --out holds another's json"),
    pytest.param(audit_figure_not_its_own, Exits(2, "audit_race.png exists and no audit JSON"), id="audit --out holds another's figure"),
    pytest.param(audit_own_results_may_be_replaced, SAFE, id="audit --out its own results: replaced"),
    pytest.param(audit_interrupt_keeps_progress_and_resumes, SAFE, id="audit interrupted: progress kept, rerun resumes to the same draws"),
    # audit: bad lines get a message naming them, and nothing is written
    pytest.param(_audit_refused("my_sampler.py:exits"), Exits(2, r"my_sampler.py:exits: the sampling function called sys.exit\(3\)"),
                 id="audit line calls sys.exit"),
    pytest.param(_audit_refused("exits_on_import.py:race"), Exits(2, r"importing .*exits_on_import.py called sys.exit\(4\)"),
                 id="audit file calls sys.exit on import"),
    pytest.param(_audit_refused("my_sampler.py:fails"), Exits(2, "my_sampler.py:fails: the sampling function raised RuntimeError: no sampler here"),
                 id="audit line raises"),
    pytest.param(_audit_refused("my_sampler.py:fails_later"), Exits(2, "fails_later: the sampling function raised RuntimeError: tired"),
                 id="audit line raises in the middle of the Monte Carlo"),
    pytest.param(_audit_refused("my_sampler.py:keepdim"), Exits(2, r"returned shape \(3, 1\) for 3 rows of 11 classes"), id="audit line returns a wrong shape"),
    pytest.param(_audit_refused("my_sampler.py:floats"), Exits(2, "returned dtype torch.float32, expected integer"), id="audit line returns floats"),
    # audit: budgets and memory
    pytest.param(_audit_refused("my_sampler.py:race", "--vocab", "1e11"), Exits(2, r"V=100,000,000,000 .*would need at least 8\.8 TB, more than"),
                 id="audit --vocab 1e11: refused with the memory it needs"),
    pytest.param(audit_budget_holds_for_a_slow_line, SAFE, id="audit --budget 1s with a slow line: holds within 5%"),
    pytest.param(audit_line_too_slow_for_one_chunk, Raises(AuditError, r"takes 0\.3\d* s, more than one chunk of the 1 s budget"),
                 id="audit line too slow for one chunk: refused"),
    # caches checked when read
    pytest.param(edited_audit_cache_keeps_its_eps_fit, SAFE, id="cache edited audit eps curve: recomputed, same fit"),
    pytest.param(lambda ctx: _damaged_cache(lambda t: t[: len(t) // 2], ctx), SAFE, id="cache truncated entry: recomputed, file named"),
    pytest.param(lambda ctx: _damaged_cache(lambda t: "\x00garbage", ctx), SAFE, id="cache entry not JSON: recomputed, file named"),
    pytest.param(lambda ctx: _damaged_cache(lambda t: t.replace('"sha256": "', '"sha256": "f'), ctx), SAFE, id="cache wrong checksum: recomputed"),
    pytest.param(lambda ctx: _damaged_cache(_old_format, ctx), SAFE, id="cache entry of the older format (no checksum): recomputed"),
    # permissions
    pytest.param(_mode_under_umask(0o022), SAFE, id="written file under umask 022: 0644", marks=pytest.mark.skipif(NOT_POSIX, reason="POSIX modes")),
    pytest.param(_mode_under_umask(0o077), SAFE, id="written file under umask 077: 0600", marks=pytest.mark.skipif(NOT_POSIX, reason="POSIX modes")),
    pytest.param(replaced_file_keeps_its_mode, SAFE, id="replaced file keeps its mode", marks=pytest.mark.skipif(NOT_POSIX, reason="POSIX modes")),
    # GPU checks: --out checked first, with or without a GPU
    pytest.param(gpu_out_is_a_folder, Exits(2, "is a folder"), id="gpu_check --out is a folder"),
    pytest.param(gpu_out_is_someone_elses_file, Exits(2, "was not written by mdmlib.tools.gpu_check"), id="gpu_check --out is another's file"),
]


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    made = []

    def folders() -> Path:
        pytest.importorskip("transformers")
        if not made:
            from mdmlib.models import build_network, save_pretrained
            from tiny_judge import perturbed, tiny_dit, tokenizer, write_folders

            root = write_folders(tmp_path_factory.mktemp("hostile-runs"))
            sedd = tiny_dit(len(tokenizer()) + 1).replace(kind="sedd", time_conditioning=True)
            save_pretrained(perturbed(build_network(sedd), 3), root / "tiny-sedd")
            made.append(root)
        return made[0]

    return folders


@pytest.mark.parametrize("case, expected", CASES)
def test_hostile_input(case, expected, tmp_path, tiny_folders, capsys, monkeypatch):
    monkeypatch.setenv("MDMLIB_FIGURES", str(tmp_path / "figures"))
    ctx = Context(tmp_path, tiny_folders, capsys, monkeypatch)
    if isinstance(expected, Raises):
        with pytest.raises(expected.error, match=expected.words):
            case(ctx)
    elif isinstance(expected, Exits):
        code, err = case(ctx)
        assert code == expected.code, err
        assert re.search(expected.words, err), err
        assert "Traceback" not in err
    else:
        assert case(ctx) is None  # the row's own assertions passed


def test_the_table_has_a_row_per_case():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids)) == 38
    print(f"{len(ids)} hostile cases")

"""The paper-scale command line (mdmlib.tools.paper_scale): a run in this process, under
`python -m` and under torchrun with two gloo processes (which give the one-process run), and
errors that exit 2 with what to do."""
import json
import os
import subprocess
import sys

import pytest
import torch

from mdmlib.tools import paper_scale as command

transformers = pytest.importorskip("transformers")
from tiny_judge import LENGTH, write_folders  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("cli"))


def _arguments(folders, out, samples=5):
    return ["--checkpoint", str(folders / "tiny-mdlm"), "--judge", str(folders / "tiny-gpt2"), "--samples", str(samples),
            "--length", str(LENGTH), "--steps", "6", "--precisions", "float32", "--trunc-steps", "6", "--shard-size", "2",
            "--seed", "3", "--device", "cpu", "--local-files-only", "--no-progress", "--out", str(out)]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MDMLIB_SCALE")}
    env.update(OMP_NUM_THREADS="1", MDMLIB_PROGRESS="0", HF_HUB_OFFLINE="1")
    return env


def test_the_command_in_this_process(folders, tmp_path, capsys):
    assert command.parser().prog == "python -m mdmlib.tools.paper_scale"
    record = command.run_command(_arguments(folders, tmp_path / "run.json", samples=2))
    assert [(r["precision"], r["steps"]) for r in record["results"]] == [("float32", 6), ("float64+trunc", 6)]
    assert json.loads((tmp_path / "run.json").read_text())["table"] == []  # no setting at the table's 2,048 steps
    assert f"wrote {tmp_path / 'run.json'}" in capsys.readouterr().out
    assert command.main(["--checkpoint", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2  # bad input: exit 2, not a traceback
    assert "error: no folder" in capsys.readouterr().err


def test_two_gloo_processes_give_the_one_process_run(folders, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    runs = [
        subprocess.run([sys.executable, "-m", "mdmlib.tools.paper_scale", *_arguments(folders, one)], env=_env(), capture_output=True,
                       text=True, timeout=600),
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mdmlib.tools.paper_scale",
                        *_arguments(folders, two)], env=_env(), capture_output=True, text=True, timeout=600),
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-3000:] for r in runs]
    a, b = (json.loads(p.read_text()) for p in (one, two))
    assert (a["provenance"]["device"]["processes"], b["provenance"]["device"]["processes"]) == (1, 2)
    assert len(a["results"]) == 2  # float32 and float64+trunc at 6 steps, 3 shards each
    for ra, rb in zip(a["results"], b["results"]):
        assert ra["tokens"] == rb["tokens"] and ra["per_sequence"] == rb["per_sequence"] and ra["summary"] == rb["summary"]
        assert len(ra["tokens"]) == 5


def test_a_missing_checkpoint_or_gpu_exits_2_with_what_to_do(folders, tmp_path):
    run = subprocess.run([sys.executable, "-m", "mdmlib.tools.paper_scale", "--checkpoint", "kuleshov-group/mdlm-owt", "--device", "cpu"],
                         env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 2 and "huggingface-cli download kuleshov-group/mdlm-owt" in run.stderr
    if not torch.cuda.is_available():
        out = tmp_path / "x.json"
        arguments = _arguments(folders, out)
        arguments[arguments.index("--device") + 1] = "cuda"
        run = subprocess.run([sys.executable, "-m", "mdmlib.tools.paper_scale", *arguments], env=_env(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and "CUDA was asked for" in run.stderr and not out.exists()


def test_two_gloo_processes_resume_what_one_process_kept(folders, tmp_path, monkeypatch, capsys):
    """An interrupted run keeps its finished setting; a torchrun of two processes reuses it
    (every process skips it) and gives the record of an uninterrupted run."""
    from mdmlib.runs import paper_scale

    real = paper_scale.run_setting

    def interrupted(denoiser, judge, setting, **kwargs):
        if setting.name == "float64+trunc@6":
            raise KeyboardInterrupt
        return real(denoiser, judge, setting, **kwargs)

    out, fresh = tmp_path / "run.json", tmp_path / "fresh.json"
    monkeypatch.setattr(paper_scale, "run_setting", interrupted)
    assert command.main(_arguments(folders, out)) == 130
    assert "interrupted: the settings that finished are kept in" in capsys.readouterr().err
    monkeypatch.setattr(paper_scale, "run_setting", real)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mdmlib.tools.paper_scale",
                          *_arguments(folders, out)], env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "resuming: 1 of 2 settings reused" in run.stdout, run.stderr[-3000:]
    command.run_command(_arguments(folders, fresh))
    a, b = (json.loads(p.read_text()) for p in (out, fresh))
    assert a["provenance"]["device"]["processes"] == 2 and not (tmp_path / "run.json.partial").exists()
    for ra, rb in zip(a["results"], b["results"], strict=True):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}

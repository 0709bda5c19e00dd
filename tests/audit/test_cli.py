"""The command line, `python -m mdmlib.audit`: on a user's file and on a module's function,
with one-line errors for bad targets and bad lines."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mdmlib.audit.cli import parse_seconds


def test_parse_seconds():
    assert parse_seconds("60s") == 60 and parse_seconds("2m") == 120 and parse_seconds("1.5h") == 5400 and parse_seconds("90") == 90
    with pytest.raises(ValueError, match="budget"):
        parse_seconds("soon")


USER_FILE = '''
import torch

def race(probs, generator):
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype)
    return (probs / -torch.log(u)).argmax(-1)

def keepdim(probs, generator):
    return torch.multinomial(probs, 1, generator=generator)

def too_far(probs, generator):
    return torch.full(probs.shape[:-1], probs.shape[-1])

def fails(probs, generator):
    raise RuntimeError("no sampler here")

not_a_function = 3
'''


def _cli(*args, cwd, env_extra=None):
    env = {**os.environ, "MDMLIB_PROGRESS": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mdmlib.audit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_command_line_on_a_users_file(tmp_path):
    (tmp_path / "my_sampler.py").write_text(textwrap.dedent(USER_FILE))
    out = tmp_path / "out"
    small = ["--vocab", "100", "--steps", "1e-1", "--mu", "flat,zipf", "--budget", "60s"]
    env = {"MDMLIB_CACHE": str(tmp_path / "cache")}
    done = _cli("my_sampler.py:race", *small, "--out", str(out), cwd=tmp_path, env_extra=env)
    assert done.returncode == 0, done.stderr
    assert "verdict: exact within the power of the test" in done.stdout
    data = json.loads((out / "audit_race.json").read_text())
    assert data["takes"] == "probs" and len(data["probes"]) == 2 and (out / "audit_race.png").stat().st_size > 0
    for target, message in [
        ("my_sampler.py:keepdim", "returned shape (3, 1) for 3 rows of 101 classes"),
        ("my_sampler.py:too_far", "outside [0, 100]"),
        ("my_sampler.py:fails", "raised RuntimeError: no sampler here"),
        ("my_sampler.py:nothing", "has no attribute 'nothing'"),
        ("my_sampler.py:not_a_function", "is not a function"),
        ("missing.py:race", "no such file"),
        ("my_sampler.py", "package.module:function or path/to/file.py:function"),
        ("no_such_package.module:f", "importing no_such_package.module failed"),
    ]:
        done = _cli(target, *small, cwd=tmp_path, env_extra=env)
        assert done.returncode == 2 and message in done.stderr, (target, done.stderr)
        assert "Traceback" not in done.stderr


def test_command_line_on_a_module_function(tmp_path):
    done = _cli("mdmlib.audit.public_lines:torch_multinomial_float64", "--vocab", "1000", "--steps", "1e-3", "--mu", "flat",
                "--out", str(tmp_path), cwd=Path(__file__).resolve().parents[2], env_extra={"MDMLIB_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "exact law" in done.stdout and (tmp_path / "audit_torch_multinomial_float64.json").exists()

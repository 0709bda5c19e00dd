"""The GPU checks' code paths, run here on the CPU at tiny sizes (the lead runs the full
sizes on a GPU with `python -m mdmlib.tools.gpu_check --out FILE`)."""
import json

import pytest
import torch

from mdmlib.tools import gpu_check, gpu_timings
from mdmlib.models import DiTConfig

TINY = DiTConfig(vocab_size=65, model_length=16, hidden_dim=32, n_heads=2, n_blocks=2, cond_dim=16)
CPU = torch.device("cpu")


def test_dit_forward_on_the_cpu():
    found = gpu_timings.check_dit_forward(CPU, config=TINY, length=16, batches=(1, 2), repeats=1)
    assert found["passed"] and found["parameters"] == sum(p.numel() for p in gpu_timings.random_network(TINY, CPU).parameters())
    for row in found["forward"].values():
        assert row["float32"]["seconds"] > 0 and row["bfloat16"]["seconds"] > 0
        # bfloat16 keeps 8 significant bits: the gap is a rounding effect, neither zero nor large
        assert 0 < row["largest_log_prob_gap"] < 1.0
    json.dumps(found)


def test_random_network_has_no_zero_layers_and_is_seeded():
    a, b = gpu_timings.random_network(TINY, CPU, seed=1), gpu_timings.random_network(TINY, CPU, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.output_layer.linear.weight.abs().sum() > 0 and a.blocks[0].adaLN_modulation.weight.abs().sum() > 0


def test_samplers_on_the_cpu():
    found = gpu_timings.check_samplers(CPU, config=TINY, length=16, steps=4, batch=2, fhs_events=5)
    assert found["passed"]
    assert {r["masks_left"] for r in found["ancestral"].values()} == {0}
    assert set(found["literal_line"]) == {"float32", "float64", "float64+trunc"}
    assert all(r["draws"] == 4 * 2 * 16 for r in found["literal_line"].values())
    assert found["first_hitting"]["events_timed"] == 5
    json.dumps(found)


def test_judge_forward_on_the_cpu():
    pytest.importorskip("transformers")
    found = gpu_timings.check_judge_forward(CPU, n_embd=32, n_layer=2, n_head=2, vocab=97, context=16, batch=2, repeats=1)
    assert found["passed"] and found["float32"]["gen_ppl"] > 1 and found["largest_nll_gap"] < 1.0
    json.dumps(found)


def test_a_failing_check_is_recorded_and_the_others_run(monkeypatch):
    def broken(device):
        raise RuntimeError("out of memory, say")

    monkeypatch.setitem(gpu_check.CHECKS, "broken", broken)
    monkeypatch.setitem(gpu_check.CHECKS, "fine", lambda device: {"passed": True, "value": 1})
    found = gpu_check.run_checks(["broken", "fine"], CPU)
    assert found["broken"]["passed"] is False and "out of memory" in found["broken"]["error"]
    assert found["fine"]["passed"] and found["fine"]["value"] == 1


def test_without_cuda_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out and not (tmp_path / "gpu.json").exists()
    assert gpu_check.main(["no_such_check"]) == 2


def test_out_is_checked_first_and_only_its_own_file_is_replaced(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setitem(gpu_check.CHECKS, "fine", lambda device: ran.append(device) or {"passed": True})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the CUDA path, with a check that needs no GPU
    monkeypatch.setattr(gpu_check, "provenance", lambda device: {"device": "a GPU", "versions": {"torch": "t", "cuda": "c", "transformers": "x"}})
    theirs = tmp_path / "notes.json"
    theirs.write_text('{"mine": 1}')
    assert gpu_check.main(["fine", "--out", str(theirs)]) == 2 and ran == []  # refused before any check ran
    assert "was not written by mdmlib.tools.gpu_check" in capsys.readouterr().err and theirs.read_text() == '{"mine": 1}'
    out = tmp_path / "gpu.json"
    for _ in range(2):  # its own file is replaced
        assert gpu_check.main(["fine", "--out", str(out)]) == 0
    assert len(ran) == 2 and json.loads(out.read_text())["written_by"] == gpu_check.TOOL

"""The paper-scale run on the CPU with tiny checkpoints (tests/tiny_judge.py): the grid of
settings, their seeds, and a run's record with its provenance. Loading the checkpoints and
judges is tested in tests/models/test_generator_loading.py and tests/judging/test_judge_loading.py, the
command line (and two gloo processes) in tests/tools/test_paper_scale_cli.py."""
import json
import os
import subprocess

import pytest
import torch

from mdmlib.judging.judges import TransformersJudge
from mdmlib.models import build_network, save_pretrained
from mdmlib.runs.paper_scale import PAPER_TABLE, Setting, grid, paper_run, paper_settings, setting_seed, write_results
from mdmlib.stats.metrics import sentence_entropy

transformers = pytest.importorskip("transformers")
from tiny_judge import LENGTH, sha256, tiny_dit, write_folders  # noqa: E402

SETTINGS = grid(steps=(4, 2048), precisions=("float32", "float64"), trunc_steps=(2048,))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("paper"))


def test_the_grid_and_its_seeds():
    assert [s.name for s in SETTINGS] == ["float32@4", "float32@2048", "float64@4", "float64@2048", "float64+trunc@2048"]
    paper = paper_settings()
    assert len(paper) == 13 and Setting("float64+trunc", 2048) in paper
    seeds = {setting_seed(seed, s) for seed in range(3) for s in paper}
    assert len(seeds) == 3 * len(paper)  # no two settings (or runs) share a stream
    assert setting_seed(0, paper[0]) == setting_seed(0, Setting(paper[0].precision, paper[0].steps))  # a pure function
    with pytest.raises(ValueError, match="seed"):
        setting_seed(-1, paper[0])
    with pytest.raises(ValueError, match="precision"):
        Setting("float16", 10)
    with pytest.raises(ValueError, match="steps"):
        Setting("float32", 0)


def test_results_carry_their_provenance(folders, tmp_path):
    record = paper_run(folders / "tiny-mdlm", folders / "tiny-gpt2", SETTINGS, samples=3, length=LENGTH, seed=5, device="cpu",
                       shard_size=2, local_files_only=True, progress=False)
    prov = record["provenance"]
    assert prov["checkpoint"]["source"] == "tiny-mdlm" and prov["checkpoint"]["kind"] == "mdlm"
    assert prov["checkpoint"]["sha256"]["model.safetensors"] == sha256(folders / "tiny-mdlm" / "model.safetensors")
    assert prov["judge"]["source"] == "tiny-gpt2" and prov["judge"]["kind"].startswith("transformers")
    assert prov["judge"]["sha256"]["model.safetensors"] == sha256(folders / "tiny-gpt2" / "model.safetensors")
    assert prov["device"] == {"type": "cpu", "name": prov["device"]["name"], "processes": 1} and prov["device"]["name"].startswith("CPU")
    assert prov["dtypes"]["network"] == "float32" and prov["dtypes"]["judge"] == "float32"
    assert (prov["scale"], prov["seed"]) == ("quick", 5)
    assert prov["versions"]["torch"] == torch.__version__ and prov["versions"]["transformers"] == transformers.__version__
    assert prov["environment"]["torch"] == torch.__version__
    assert prov["settings"]["grid"] == [s.name for s in SETTINGS]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(__file__))
    if head.returncode == 0:
        assert prov["git"]["commit"] == head.stdout.strip()

    judge = TransformersJudge.from_pretrained(str(folders / "tiny-gpt2"), local_files_only=True, progress=False)
    for setting, r in zip(SETTINGS, record["results"]):
        assert (r["precision"], r["steps"], r["seed"]) == (setting.precision, setting.steps, setting_seed(5, setting))
        tokens = r["tokens"]
        assert tokens.shape == (3, LENGTH) and int(tokens.max()) < len(judge.tokenizer)  # no mask left
        again = judge.score(tokens)  # the scores belong to these samples
        assert torch.equal(again.nll_sum, r["per_sequence"]["nll_sum"]) and torch.equal(again.count, r["per_sequence"]["count"])
        assert torch.equal(sentence_entropy(tokens), r["per_sequence"]["entropy"])
        assert r["summary"]["gen_ppl"]["mean"] == pytest.approx(float(torch.exp(again.nll_sum.sum() / again.count.sum())), rel=1e-12)
    assert len({tuple(r["tokens"].flatten().tolist()) for r in record["results"]}) == len(SETTINGS)  # each setting its own stream
    rows = {row["precision"]: row for row in record["table"]}
    assert set(rows) == {"float32", "float64", "float64+trunc"}
    assert all(rows[p]["paper_gen_ppl"] == PAPER_TABLE[p]["gen_ppl"] for p in rows)

    path = write_results(record, str(tmp_path / "run.json"))
    text = path.read_text()
    assert str(folders) not in text and str(tmp_path) not in text  # no machine paths in the results
    back = json.loads(text)
    assert back["results"][0]["tokens"] == record["results"][0]["tokens"].tolist()


def test_a_project_causal_network_judges_a_run(folders):
    record = paper_run(folders / "tiny-mdlm", folders / "tiny-ar", [Setting("float32", 8)], samples=2, length=LENGTH, device="cpu", progress=False)
    assert record["provenance"]["judge"]["kind"] == "project causal network"
    assert record["provenance"]["judge"]["sha256"]["model.safetensors"] == sha256(folders / "tiny-ar" / "model.safetensors")
    assert torch.equal(record["results"][0]["per_sequence"]["count"], torch.full((2,), LENGTH))  # every token scored


def test_a_judge_of_another_vocabulary_is_refused(folders, tmp_path):
    save_pretrained(build_network(tiny_dit(50)), tmp_path / "small-mdlm")
    with pytest.raises(ValueError, match="tokens"):
        paper_run(tmp_path / "small-mdlm", folders / "tiny-ar", [Setting("float32", 4)], samples=2, length=LENGTH, device="cpu", progress=False)
    with pytest.raises(ValueError, match="tokenizer"):
        paper_run(tmp_path / "small-mdlm", folders / "tiny-gpt2", [Setting("float32", 4)], samples=2, length=LENGTH, device="cpu",
                  local_files_only=True, progress=False)
    with pytest.raises(ValueError, match="no settings"):
        paper_run(folders / "tiny-mdlm", folders / "tiny-ar", [], samples=2, length=LENGTH, device="cpu", progress=False)


class _Denoiser:
    def __init__(self, time_conditioned):
        self.time_conditioned = time_conditioned


def test_caching_is_valid_for_the_network():
    from mdmlib.runs.paper_scale import resolve_caching

    agnostic, conditioned = _Denoiser(False), _Denoiser(True)
    assert resolve_caching("auto", agnostic) == "per_sequence" and resolve_caching("auto", conditioned) == "none"
    assert [resolve_caching(c, agnostic) for c in ("per_sequence", "per_batch", "none")] == ["per_sequence", "per_batch", "none"]
    assert resolve_caching("none", conditioned) == "none"
    for caching in ("per_sequence", "per_batch"):
        with pytest.raises(ValueError, match=f"caching '{caching}' reuses the network's output at stale times.*--allow-stale-time"):
            resolve_caching(caching, conditioned)
        assert resolve_caching(caching, conditioned, allow_stale_time=True) == caching
    with pytest.raises(ValueError, match="unknown caching 'sometimes'"):
        resolve_caching("sometimes", agnostic)

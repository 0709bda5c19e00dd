"""Loading a judge for the paper-scale run (mdmlib.judging.loading): the project's causal
network as a judge of the generator's own ids, a `transformers` causal LM with its
provenance, the vocabulary check, and the errors that say what to do."""
import shutil

import pytest
import torch

from mdmlib.judging.judges import JudgeNotFoundError, TransformersJudge
from mdmlib.judging.loading import check_vocabularies, load_judge
from mdmlib.models import AutoregressiveModel, build_network, load_pretrained, save_pretrained
from mdmlib.models.loading import load_denoiser

transformers = pytest.importorskip("transformers")
from tiny_judge import LENGTH, sha256, tiny_dit, write_folders  # noqa: E402


from fake_hub import COMMIT, fake_hub  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("judges"))


def test_a_project_causal_network_judges_every_token(folders):
    judge, info = load_judge(folders / "tiny-ar", progress=False)
    assert info["kind"] == "project causal network" and info["source"] == "tiny-ar" and info["dtype"] == "float32" and info["hub"] is None
    assert info["sha256"]["model.safetensors"] == sha256(folders / "tiny-ar" / "model.safetensors")
    network = load_pretrained(folders / "tiny-ar")
    vocab = network.config.extra_id
    x = torch.randint(0, vocab, (4, LENGTH), generator=torch.Generator().manual_seed(3))
    model = AutoregressiveModel(network)  # -log p(x_l | x_<l) from the start token on
    scores = judge.score(x)
    assert torch.equal(scores.count, torch.full((4,), LENGTH))
    # the same float32 logits, reduced in two ways: a few float32 roundings of values near 10 per token
    torch.testing.assert_close(scores.nll_sum, model.token_nll(x).sum(1), rtol=0, atol=LENGTH * 8 * torch.finfo(torch.float32).eps * 10)


def test_a_transformers_judge_and_its_provenance(folders):
    judge, info = load_judge(folders / "tiny-gpt2", local_files_only=True, progress=False)
    assert isinstance(judge, TransformersJudge) and info["kind"] == "transformers GPT2LMHeadModel"
    assert info["source"] == "tiny-gpt2" and info["parameters"] == sum(p.numel() for p in judge.model.parameters())
    assert info["sha256"]["model.safetensors"] == sha256(folders / "tiny-gpt2" / "model.safetensors")
    assert info["hub"] is None and info["generator_tokenizer"] is None  # a local folder, the judge's own tokenizer


def test_judge_and_generator_must_share_a_vocabulary(folders, tmp_path):
    denoiser, _ = load_denoiser(folders / "tiny-mdlm")
    for name in ("tiny-ar", "tiny-gpt2"):
        check_vocabularies(denoiser, load_judge(folders / name, local_files_only=True, progress=False)[0])  # they do
    save_pretrained(build_network(tiny_dit(50)), tmp_path / "small-mdlm")
    small, _ = load_denoiser(tmp_path / "small-mdlm")
    with pytest.raises(ValueError, match="tokens"):
        check_vocabularies(small, load_judge(folders / "tiny-ar", progress=False)[0])
    with pytest.raises(ValueError, match="generator-tokenizer"):
        check_vocabularies(small, load_judge(folders / "tiny-gpt2", local_files_only=True, progress=False)[0])


def test_a_missing_judge_or_a_bad_dtype_says_what_to_do(folders, tmp_path, monkeypatch):
    calls = fake_hub(monkeypatch, error=ConnectionError("no network"))
    monkeypatch.chdir(tmp_path)  # so "gpt2-large" is no local folder
    with pytest.raises(JudgeNotFoundError, match="(?s)no folder gpt2-large.*name it 'hf://gpt2-large'"):
        load_judge("gpt2-large")
    assert calls == []  # a local path is never sent to the hub
    with pytest.raises(JudgeNotFoundError, match="(?s)no network.*hf download gpt2-large --local-dir gpt2-large"):
        load_judge()  # the default judge is the hub's GPT-2 Large
    assert calls[-1]["repo_id"] == "gpt2-large" and calls[-1]["revision"] == "main"
    with pytest.raises(ValueError, match="judge dtype"):
        load_judge(folders / "tiny-ar", dtype="float16")


def test_a_hub_judge_is_fetched_at_its_revision_and_records_the_commit(folders, tmp_path, monkeypatch):
    snapshot = tmp_path / "snapshots" / COMMIT
    shutil.copytree(folders / "tiny-gpt2", snapshot)
    calls = fake_hub(monkeypatch, snapshot)
    judge, info = load_judge("hf://openai-community/gpt2-large@v2", generator_tokenizer="hf://gpt2", progress=False)
    assert [(c["repo_id"], c["revision"]) for c in calls] == [("openai-community/gpt2-large", "v2"), ("gpt2", "main")]
    assert "*.safetensors" in calls[0]["allow_patterns"] and not any(".safetensors" in p for p in calls[1]["allow_patterns"])
    assert info["hub"] == {"repo_id": "openai-community/gpt2-large", "revision": "v2", "commit": COMMIT}
    assert info["source"] == "hf://openai-community/gpt2-large@v2" and info["sha256"]["model.safetensors"] == sha256(snapshot / "model.safetensors")
    assert info["generator_tokenizer"] == {"source": "hf://gpt2", "hub": {"repo_id": "gpt2", "revision": "main", "commit": COMMIT}}
    with pytest.raises(JudgeNotFoundError, match="no folder gpt2"):
        load_judge(folders / "tiny-gpt2", generator_tokenizer="gpt2")  # the generator's tokenizer follows the same rule
    assert len(calls) == 2
    judge, info = load_judge("hf://gpt2-large", revision=COMMIT, progress=False)
    assert calls[-1]["revision"] == COMMIT and info["hub"]["revision"] == COMMIT


def test_a_hub_repository_without_safetensors_weights_is_asked_for_its_torch_weights(folders, tmp_path, monkeypatch):
    snapshot = tmp_path / "snapshots" / COMMIT
    shutil.copytree(folders / "tiny-gpt2", snapshot, ignore=shutil.ignore_patterns("*.safetensors"))
    calls = fake_hub(monkeypatch, snapshot)
    with pytest.raises(JudgeNotFoundError):  # the stand-in hub has no weights at all
        load_judge("hf://gpt2-large", progress=False)
    assert [c["allow_patterns"][-1] for c in calls] == ["*.safetensors", "pytorch_model*.bin"]


def test_a_project_causal_network_from_the_hub_records_its_commit(folders, tmp_path, monkeypatch):
    snapshot = tmp_path / "snapshots" / COMMIT
    shutil.copytree(folders / "tiny-ar", snapshot)
    fake_hub(monkeypatch, snapshot)
    judge, info = load_judge("hf://me/tiny-ar", progress=False)
    assert info["kind"] == "project causal network" and info["hub"]["commit"] == COMMIT and info["source"] == "hf://me/tiny-ar"

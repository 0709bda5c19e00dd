"""Loading a judge for the paper-scale run (mdmlib.judging.loading): the project's causal
network as a judge of the generator's own ids, a `transformers` causal LM with its
provenance, the vocabulary check, and the errors that say what to do."""
import pytest
import torch

from mdmlib.judging.judges import JudgeNotFoundError, TransformersJudge
from mdmlib.judging.loading import check_vocabularies, load_judge
from mdmlib.models import AutoregressiveModel, build_network, load_pretrained, save_pretrained
from mdmlib.models.loading import load_denoiser

transformers = pytest.importorskip("transformers")
from tiny_judge import LENGTH, sha256, tiny_dit, write_folders  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_folders(tmp_path_factory.mktemp("judges"))


def test_a_project_causal_network_judges_every_token(folders):
    judge, info = load_judge(folders / "tiny-ar", progress=False)
    assert info["kind"] == "project causal network" and info["source"] == "tiny-ar" and info["dtype"] == "float32"
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


def test_a_missing_judge_or_a_bad_dtype_says_what_to_do(folders, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JudgeNotFoundError, match="hf download gpt2-large"):
        load_judge("gpt2-large", local_files_only=True)
    with pytest.raises(ValueError, match="judge dtype"):
        load_judge(folders / "tiny-ar", dtype="float16")

"""The paper-scale runner on the CPU with tiny checkpoints made here: a DiT saved with
save_pretrained, a tiny GPT-2 judge (tokenizer trained on a few sentences, as in
test_judges), a causal network of the project as the other kind of judge. Results carry
their provenance; two gloo processes give the one-process run; a missing checkpoint, judge
or GPU is an error that says what to do."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from mdmlib.judging.judges import JudgeNotFoundError, Scores, TransformersJudge
from mdmlib.stats.metrics import sentence_entropy
from mdmlib.models import AutoregressiveModel, CheckpointNotFoundError, DiTConfig, build_network, load_pretrained, save_pretrained
from mdmlib.judging.loading import load_judge
from mdmlib.models.loading import load_denoiser
from mdmlib.runs.paper_scale import PAPER_TABLE, Setting, grid, paper_run, setting_seed, write_results

transformers = pytest.importorskip("transformers")
from test_judges import CONTEXT, _tokenizer  # noqa: E402  (the tiny judge's tokenizer)

LENGTH = 12
SETTINGS = grid(steps=(4, 2048), precisions=("float32", "float64"), trunc_steps=(2048,))


def _perturbed(network, seed: int):
    """Random weights everywhere (the published initialisation zeroes the output layer,
    which would make every prediction uniform)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return network


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    tok = _tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    gpt2 = _perturbed(transformers.GPT2LMHeadModel(config), 0)
    gpt2.save_pretrained(root / "tiny-gpt2")
    tok.save_pretrained(root / "tiny-gpt2")
    dit = DiTConfig(vocab_size=len(tok) + 1, model_length=LENGTH, hidden_dim=32, n_heads=2, n_blocks=2, cond_dim=16)
    save_pretrained(_perturbed(build_network(dit), 1), root / "tiny-mdlm")
    save_pretrained(_perturbed(build_network(dit.replace(kind="ar")), 2), root / "tiny-ar")
    return root


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_carry_their_provenance(folders, tmp_path):
    record = paper_run(folders / "tiny-mdlm", folders / "tiny-gpt2", SETTINGS, samples=3, length=LENGTH, seed=5, device="cpu",
                       shard_size=2, local_files_only=True, progress=False)
    prov = record["provenance"]
    assert prov["checkpoint"]["source"] == "tiny-mdlm" and prov["checkpoint"]["kind"] == "mdlm"
    assert prov["checkpoint"]["sha256"]["model.safetensors"] == _sha256(folders / "tiny-mdlm" / "model.safetensors")
    assert prov["judge"]["source"] == "tiny-gpt2" and prov["judge"]["kind"].startswith("transformers")
    assert prov["judge"]["sha256"]["model.safetensors"] == _sha256(folders / "tiny-gpt2" / "model.safetensors")
    assert prov["device"] == {"type": "cpu", "name": prov["device"]["name"], "processes": 1} and prov["device"]["name"].startswith("CPU")
    assert prov["dtypes"]["network"] == "float32" and prov["dtypes"]["judge"] == "float32"
    assert (prov["scale"], prov["seed"]) == ("quick", 5)
    assert prov["versions"]["torch"] == torch.__version__ and prov["versions"]["transformers"] == transformers.__version__
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


def test_a_project_causal_network_judges_every_token(folders):
    judge, info = load_judge(folders / "tiny-ar", progress=False)
    assert info["kind"] == "project causal network"
    denoiser, _ = load_denoiser(folders / "tiny-mdlm")
    x = torch.randint(0, denoiser.vocab_size, (4, LENGTH), generator=torch.Generator().manual_seed(3))
    model = AutoregressiveModel(load_pretrained(folders / "tiny-ar"))  # -log p(x_l | x_<l) from the start token on
    scores = judge.score(x)
    assert torch.equal(scores.count, torch.full((4,), LENGTH))
    # the same float32 logits, reduced in two ways: a few float32 roundings of values near 10 per token
    torch.testing.assert_close(scores.nll_sum, model.token_nll(x).sum(1), rtol=0, atol=LENGTH * 8 * torch.finfo(torch.float32).eps * 10)
    record = paper_run(folders / "tiny-mdlm", folders / "tiny-ar", [Setting("float32", 8)], samples=2, length=LENGTH, device="cpu", progress=False)
    assert record["provenance"]["judge"]["sha256"]["model.safetensors"] == _sha256(folders / "tiny-ar" / "model.safetensors")


def _command(folders, out, samples=5):
    return ["-m", "mdmlib.tools.paper_scale", "--checkpoint", str(folders / "tiny-mdlm"), "--judge", str(folders / "tiny-gpt2"),
            "--samples", str(samples), "--length", str(LENGTH), "--steps", "6", "--precisions", "float32", "--trunc-steps", "6",
            "--shard-size", "2", "--seed", "3", "--device", "cpu", "--local-files-only", "--no-progress", "--out", str(out)]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MDMLIB_SCALE")}
    env.update(OMP_NUM_THREADS="1", MDMLIB_PROGRESS="0", HF_HUB_OFFLINE="1")
    return env


def test_two_gloo_processes_give_the_one_process_run(folders, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    runs = [
        subprocess.run([sys.executable, *_command(folders, one)], env=_env(), capture_output=True, text=True, timeout=600),
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *_command(folders, two)],
                       env=_env(), capture_output=True, text=True, timeout=600),
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-3000:] for r in runs]
    a, b = (json.loads(p.read_text()) for p in (one, two))
    assert (a["provenance"]["device"]["processes"], b["provenance"]["device"]["processes"]) == (1, 2)
    assert len(a["results"]) == 2  # float32 and float64+trunc at 6 steps, 3 shards each
    for ra, rb in zip(a["results"], b["results"]):
        assert ra["tokens"] == rb["tokens"] and ra["per_sequence"] == rb["per_sequence"] and ra["summary"] == rb["summary"]
        assert len(ra["tokens"]) == 5


def test_missing_checkpoint_judge_or_gpu_says_what_to_do(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="download kuleshov-group/mdlm-owt"):
        load_denoiser("kuleshov-group/mdlm-owt")
    with pytest.raises(CheckpointNotFoundError, match="Lightning checkpoint"):
        load_denoiser(tmp_path / "last.ckpt")
    with pytest.raises(JudgeNotFoundError, match="hf download gpt2-large"):
        load_judge("gpt2-large", local_files_only=True)
    with pytest.raises(ValueError, match="causal"):
        load_denoiser(folders / "tiny-ar")
    with pytest.raises(ValueError, match="precision"):
        Setting("float16", 10)
    with pytest.raises(ValueError, match="steps"):
        Setting("float32", 0)
    run = subprocess.run([sys.executable, "-m", "mdmlib.tools.paper_scale", "--checkpoint", "kuleshov-group/mdlm-owt", "--device", "cpu"],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "huggingface-cli download kuleshov-group/mdlm-owt" in run.stderr
    if not torch.cuda.is_available():
        run = subprocess.run([sys.executable, *_command(folders, tmp_path / "x.json")[:-6], "--device", "cuda"],
                             env=_env(), capture_output=True, text=True, timeout=300)
        assert run.returncode == 2 and "CUDA was asked for" in run.stderr and not (tmp_path / "x.json").exists()


def test_a_judge_of_another_vocabulary_is_refused(folders, tmp_path):
    other = DiTConfig(vocab_size=50, model_length=LENGTH, hidden_dim=32, n_heads=2, n_blocks=2, cond_dim=16)
    save_pretrained(build_network(other), tmp_path / "small-mdlm")
    with pytest.raises(ValueError, match="tokens"):
        paper_run(tmp_path / "small-mdlm", folders / "tiny-ar", [Setting("float32", 4)], samples=2, length=LENGTH, device="cpu", progress=False)
    with pytest.raises(ValueError, match="tokenizer"):
        paper_run(tmp_path / "small-mdlm", folders / "tiny-gpt2", [Setting("float32", 4)], samples=2, length=LENGTH, device="cpu",
                  local_files_only=True, progress=False)

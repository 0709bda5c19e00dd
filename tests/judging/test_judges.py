"""Judges, offline: a tiny GPT-2 with random (seeded) weights and a byte-level BPE tokenizer
trained here on a few sentences stand in for GPT-2 Large. Every expected value is computed
in the test itself, from raw logits with log_softmax and explicit indexing."""
import math
import shutil

import pytest
import torch

from mdmlib.judging.judges import CausalLMJudge, ExactJudge, JudgeNotFoundError, Scores, TransformersJudge
from mdmlib.stats.metrics import gen_ppl
from mdmlib.language.synthetic import LanguageSpec, MarkovLanguage

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tiny_judge import CONTEXT, EOS, SENTENCES  # noqa: E402  (the tiny judge, shared with the loading tests)
from tiny_judge import tokenizer as _tokenizer  # noqa: E402

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = _tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tok(judge_dir):
    return transformers.AutoTokenizer.from_pretrained(judge_dir)


def _stream(tok) -> list[int]:
    return [i for s in SENTENCES for i in tok(s + EOS)["input_ids"]]


def _samples(tok, length: int, rows: int, stride: int) -> torch.Tensor:
    """Windows of the sentence stream: fixed-length generator samples with EOS inside."""
    ids = _stream(tok) * 3
    return torch.tensor([ids[r * stride : r * stride + length] for r in range(rows)])


def _by_hand(model, judge_ids: list[list[int]], eos: int, max_length: int):
    """MDLM's protocol written out: close short sequences with one EOS, cut into chunks of
    CONTEXT, score positions 1.. of each chunk that are non-EOS or the chunk's first EOS."""
    sums, counts = [], []
    for ids in judge_ids:
        ids = ids + [eos] if len(ids) < max_length else ids
        total, n = 0.0, 0
        for start in range(0, len(ids), CONTEXT):
            chunk = ids[start : start + CONTEXT]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([chunk])).logits[0].double(), -1)
            seen_eos = chunk[0] == eos
            for l in range(1, len(chunk)):
                first_eos = chunk[l] == eos and not seen_eos
                seen_eos = seen_eos or chunk[l] == eos
                if chunk[l] != eos or first_eos:
                    total -= float(logp[l - 1, chunk[l]])
                    n += 1
        sums.append(total)
        counts.append(n)
    return torch.tensor(sums, dtype=torch.float64), torch.tensor(counts)


@pytest.mark.parametrize("max_length", [40, 20])  # 20: most samples are truncated and get no closing EOS
def test_gen_ppl_equals_exp_of_mean_token_nll_by_hand(judge_dir, tok, max_length):
    judge = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, max_length=max_length, batch_size=3, progress=False)
    samples = _samples(tok, length=30, rows=7, stride=9)
    judge_ids = [ids.tolist() for ids in judge.retokenize(samples)]
    assert max(map(len, judge_ids)) > CONTEXT  # several chunks per sequence
    model = transformers.GPT2LMHeadModel.from_pretrained(judge_dir).eval().requires_grad_(False)
    sums, counts = _by_hand(model, judge_ids, tok.eos_token_id, max_length)
    scores = judge.score(samples)
    assert torch.equal(scores.count, counts)
    # float32 logits and log-softmax: each token's NLL is off by a few float32 ulps of the
    # logits' scale, against the float64 log-softmax done here
    scale = float(model(torch.tensor([judge_ids[0][:CONTEXT]])).logits.abs().max()) + math.log(len(tok))
    assert torch.allclose(scores.nll_sum, sums, rtol=0, atol=float(counts.max()) * 16 * EPS32 * scale)
    ppl = judge.gen_ppl(samples)
    assert ppl.mean == pytest.approx(math.exp(float(sums.sum() / counts.sum())), rel=16 * EPS32 * scale)
    assert ppl.se > 0


def test_retokenisation_round_trip(judge_dir, tok):
    judge = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, clean_up_spaces=False, progress=False)
    samples = _samples(tok, length=25, rows=4, stride=11)
    assert [ids.tolist() for ids in judge.retokenize(samples)] == [tok(tok.decode(row.tolist()))["input_ids"] for row in samples]
    whole = [tok(s)["input_ids"] for s in SENTENCES[:2]]
    n = min(map(len, whole))  # sentences cut to one length form a batch of samples
    assert [ids.tolist() for ids in judge.retokenize(torch.tensor([w[:n] for w in whole]))] == [w[:n] for w in whole]
    eos_inside = torch.tensor([tok("the cat" + EOS + "sat")["input_ids"]])
    assert tok.eos_token_id in judge.retokenize(eos_inside)[0].tolist()  # the EOS survives decoding as text


def test_decoding_cleans_up_spaces_as_mdlm_did(judge_dir, tok):
    judge = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, progress=False)
    ids = torch.tensor([tok(SENTENCES[3])["input_ids"]])
    assert judge.decode(ids) == ["we don't know what they're doing, but it's fine."]
    assert judge.retokenize(ids)[0].tolist() == tok("we don't know what they're doing, but it's fine.")["input_ids"]


def test_a_generator_with_its_own_tokenizer(judge_dir, tok):
    words = sorted({w for s in SENTENCES for w in s.split()})
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    word_level.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    generator = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level)
    judge = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, generator_tokenizer=generator, progress=False)
    samples = torch.tensor([[words.index(w) for w in "the cat sat on the mat .".split()]])
    assert judge.retokenize(samples)[0].tolist() == tok("the cat sat on the mat.")["input_ids"]
    with pytest.raises(ValueError, match="vocabulary"):
        judge.retokenize(torch.tensor([[len(words)]]))


def _bigram(vocab: int, seed: int = 1):
    """A causal 'network' whose logits at l depend on token l only: a random table."""
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return table, lambda ids, mask: table[ids]


def test_eos_rule_scores_non_eos_tokens_and_the_first_eos_only():
    V, eos = 6, 5
    table, net = _bigram(V)
    judge = CausalLMJudge(net, context=64, eos_id=eos, progress=False)
    x = torch.tensor([[1, 2, eos, 3, 4, eos, eos, 2], [eos, 1, eos, 2, 3, 4, 0, 1]])
    logp = torch.log_softmax(table, -1)
    # row 0: positions 1, 2 (first EOS), 3, 4, 7; row 1 starts with its first EOS: positions 1, 3..7
    counted = [[1, 2, 3, 4, 7], [1, 3, 4, 5, 6, 7]]
    expected = torch.tensor([-sum(float(logp[x[r, l - 1], x[r, l]]) for l in ls) for r, ls in enumerate(counted)], dtype=torch.float64)
    scores = judge.score(x)
    assert scores.count.tolist() == [5, 6]
    assert torch.allclose(scores.nll_sum, expected, rtol=0, atol=8 * 8 * EPS64 * float(logp.abs().max()))


def test_chunks_are_scored_alone_and_a_start_token_scores_every_token():
    V, bos = 7, 6
    table, net = _bigram(V, seed=2)
    logp = torch.log_softmax(table, -1)
    x = torch.randint(0, 6, (3, 10), generator=torch.Generator().manual_seed(3))
    tol = 8 * 10 * EPS64 * float(logp.abs().max())

    def nll(prev, cur):
        return -float(logp[prev, cur])

    no_start = CausalLMJudge(net, context=4, progress=False).score(x)  # chunks [0:4] [4:8] [8:10]
    expected = [sum(nll(r[l - 1], r[l]) for l in range(10) if l % 4) for r in x.tolist()]
    assert no_start.count.tolist() == [7, 7, 7]
    assert torch.allclose(no_start.nll_sum, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=tol)
    start = CausalLMJudge(net, context=4, bos_id=bos, progress=False)  # chunks of 3 tokens after the start token
    expected = [sum(nll(bos if l % 3 == 0 else r[l - 1], r[l]) for l in range(10)) for r in x.tolist()]
    assert start.score(x).count.tolist() == [10, 10, 10]
    assert torch.allclose(start.score(x).nll_sum, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=tol)
    per_token = start.token_nll(x[:, :3])
    assert torch.allclose(per_token.sum(1), torch.tensor([sum(nll(bos if l == 0 else r[l - 1], r[l]) for l in range(3)) for r in x.tolist()], dtype=torch.float64), rtol=0, atol=tol)
    assert torch.isnan(CausalLMJudge(net, context=4, progress=False).token_nll(x[:, :3])[:, 0]).all()


def test_a_causal_network_that_is_the_language_judges_like_the_truth():
    language = MarkovLanguage(LanguageSpec(vocab_size=40, num_classes=5, seed=4))
    x = language.sample(6, 20, torch.Generator().manual_seed(5))
    bos = language.vocab_size
    log_rows = torch.log(torch.cat([language.transition_rows(torch.arange(bos)), language.pi[None]]))  # the start token's row: pi
    ar = CausalLMJudge(lambda ids, mask: log_rows[ids], context=21, bos_id=bos, progress=False)
    exact = ExactJudge(language)
    tol = 8 * 20 * EPS64 * float(log_rows.abs().max())
    assert torch.allclose(ar.score(x).nll_sum, exact.score(x).nll_sum, rtol=0, atol=tol)
    assert torch.allclose(ar.token_nll(x), exact.token_nll(x), rtol=0, atol=8 * EPS64 * float(log_rows.abs().max()))


def test_exact_judge_is_the_languages_likelihood():
    language = MarkovLanguage(LanguageSpec(vocab_size=50, num_classes=6, seed=6))
    x = language.sample(40, 12, torch.Generator().manual_seed(7))
    judge = ExactJudge(language)
    ll = language.log_likelihood(x)
    assert torch.allclose(judge.token_nll(x).sum(1), -ll, rtol=8 * 12 * EPS64, atol=0)
    assert torch.equal(judge.token_nll(x[:, :1]), -language.log_likelihood(x[:, :1])[:, None])
    assert torch.equal(judge.score(x).nll_sum, -ll) and (judge.score(x).count == 12).all()
    # equal lengths: the pooled Gen PPL and its SE are the per-sequence ones of mdmlib.stats.metrics
    pooled, per_sequence = judge.gen_ppl(x), gen_ppl(language.nll_per_token(x))
    assert (pooled.mean, pooled.se) == pytest.approx((per_sequence.mean, per_sequence.se), rel=1e-12)


def test_pooled_scores():
    s = Scores(torch.tensor([10.0, 3.0, 8.0], dtype=torch.float64), torch.tensor([5, 1, 4]))
    assert s.nll().mean == pytest.approx(21 / 10, rel=1e-15)
    assert Scores.cat([s, s]).nll().mean == pytest.approx(21 / 10, rel=1e-15)
    assert s.nll_per_token().tolist() == [2.0, 3.0, 2.0]
    with pytest.raises(ValueError, match="1-D"):
        Scores(torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="no token"):
        Scores(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.int64)).nll()


def test_missing_judge_or_tokenizer_says_how_to_fetch_it(tmp_path, judge_dir):
    with pytest.raises(JudgeNotFoundError, match=r"(?s)tokenizer.*huggingface-cli download .* --local-dir"):
        TransformersJudge.from_pretrained(str(tmp_path / "no-such-folder"), local_files_only=True)
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(judge_dir / f, weights_only / f)
    with pytest.raises(JudgeNotFoundError, match=r"(?s)judge's tokenizer.*hf download"):
        TransformersJudge.from_pretrained(str(weights_only), local_files_only=True)
    tokenizer_only = tmp_path / "tokenizer-only"
    shutil.copytree(judge_dir, tokenizer_only, ignore=shutil.ignore_patterns("model.safetensors"))
    with pytest.raises(JudgeNotFoundError, match=r"(?s)judge model.*from_pretrained"):
        TransformersJudge.from_pretrained(str(tokenizer_only), local_files_only=True)


def test_bad_input_is_refused(judge_dir):
    _, net = _bigram(4)
    with pytest.raises(ValueError, match="dtype"):
        CausalLMJudge(net, context=8, dtype="float16")
    with pytest.raises(ValueError, match="integer token ids"):
        CausalLMJudge(net, context=8).score(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="context"):
        CausalLMJudge(net, context=8).token_nll(torch.zeros(2, 9, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits"):
        CausalLMJudge(lambda ids, mask: torch.zeros(*ids.shape, 2), context=8).score(torch.full((1, 4), 3))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_float32_and_bfloat16(judge_dir, tok):
    samples = _samples(tok, length=30, rows=7, stride=9)
    cpu = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, progress=False).score(samples)
    gpu = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, device="cuda", progress=False).score(samples)
    bf16 = TransformersJudge.from_pretrained(str(judge_dir), local_files_only=True, device="cuda", dtype="bfloat16", progress=False).score(samples)
    model = transformers.GPT2LMHeadModel.from_pretrained(judge_dir).eval().requires_grad_(False)
    scale = float(model(samples[:, :CONTEXT]).logits.abs().max()) + math.log(len(tok))
    assert torch.equal(gpu.count, cpu.count) and torch.equal(bf16.count, cpu.count)
    assert torch.allclose(gpu.nll_sum, cpu.nll_sum, rtol=0, atol=float(cpu.count.max()) * 16 * EPS32 * scale)
    # bf16 matmuls: logits off by some bf16 ulps (2^-8) of their scale, per token
    eps_bf16 = torch.finfo(torch.bfloat16).eps
    assert abs(bf16.nll().mean - cpu.nll().mean) < 16 * eps_bf16 * scale

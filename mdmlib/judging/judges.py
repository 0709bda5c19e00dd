"""Judges: the Gen PPL of generated token sequences under a reference model.

A judge scores a batch of samples (B, L), token ids of the generator's vocabulary, and
returns per-sequence NLL sums and token counts (`Scores`). Gen PPL is then
exp(total NLL / total scored tokens), pooled over all sequences as MDLM computes it, with
a ratio-estimator standard error from the spread across sequences.

Every judge offers
    token_nll(ids) -> (B, L) float64   -log p(ids[:, l] | ids[:, :l]) in the judge's own
                                       vocabulary; NaN where it makes no prediction (the
                                       first token of a causal LM without a start token)
    score(samples) -> Scores           its evaluation protocol on generator samples
    gen_ppl(samples) -> Estimate

ExactJudge         the synthetic language's exact likelihood: every token scored.
CausalLMJudge      any causal network `logits_fn(ids, attention_mask) -> (B, L, V)` whose
                   logits at l predict token l + 1, on the generator's own vocabulary
                   (the plug for a trained AR model): chunks of its context, an optional
                   start token, MDLM's EOS rule when it has an EOS.
TransformersJudge  a causal LM of the `transformers` library (GPT-2 Large by default)
                   with MDLM's protocol (kuleshov-group/mdlm, diffusion.py:
                   `compute_generative_perplexity` and `eval_retokenize`):
  1. decode the samples with the generator's tokenizer, special tokens kept, then clean
     up spaces before punctuation (" ." -> "."): MDLM ran transformers 4.38, whose
     decode did that by default; transformers 5 no longer does;
  2. re-tokenise with the judge's tokenizer, truncated to max_length (1024);
  3. MDLM pads with EOS (the judge's pad token) and scores the first EOS, so a sequence
     shorter than max_length ends with one scored EOS. MDLM pads to the longest sequence
     of its batch; we close every sequence shorter than max_length, so a score does not
     depend on the batch it was computed in (the same whenever some sequence of MDLM's
     batch reached max_length, as 1,024-token samples do);
  4. split into chunks of the judge's context (1,024 for GPT-2); each chunk is scored
     alone, without context from the chunk before and without its first token;
  5. a position counts if its token is not EOS or is the chunk's first EOS. Non-EOS text
     after the first EOS is still scored (a comment in MDLM's main.py says it is
     discarded; the code's mask keeps it); later EOS tokens are not.
The attention mask covers real tokens; padding sits on the right, where causal
attention keeps it from changing any scored position.

`transformers` is imported only when a TransformersJudge is built, so `import mdmlib`
never needs it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from mdmlib.stats.metrics import Estimate
from mdmlib.infra.progress import progress as progress_bar
from mdmlib.stats.significance import mean_and_se
from mdmlib.language.synthetic import MarkovLanguage

DEFAULT_JUDGE = "gpt2-large"
MAX_LENGTH = 1024  # MDLM re-tokenises to the generator's length, 1,024 tokens
DTYPES = {"float32": None, "bfloat16": torch.bfloat16}  # the forward's autocast dtype


@dataclass(frozen=True)
class Scores:
    """Per-sequence NLL sums (float64, nats) and the number of tokens each covers."""

    nll_sum: torch.Tensor  # (B,)
    count: torch.Tensor  # (B,) int64

    def __post_init__(self):
        if self.nll_sum.dim() != 1 or self.nll_sum.shape != self.count.shape:
            raise ValueError(f"nll_sum and count must be 1-D of one length, got {tuple(self.nll_sum.shape)} and {tuple(self.count.shape)}")
        if (self.count < 0).any() or not torch.isfinite(self.nll_sum).all():
            raise ValueError("counts must be >= 0 and NLL sums finite")

    @staticmethod
    def cat(parts: list["Scores"]) -> "Scores":
        return Scores(torch.cat([p.nll_sum for p in parts]), torch.cat([p.count for p in parts]))

    def nll_per_token(self) -> torch.Tensor:
        """(B,) each sequence's own mean NLL per token."""
        return self.nll_sum / self.count

    def nll(self) -> Estimate:
        """Total NLL over total tokens (MDLM's pooled mean), with the standard error of a
        ratio of means: the spread of s_i - R n_i across sequences, over mean(n)."""
        s, n = self.nll_sum.to(torch.float64), self.count.to(torch.float64)
        if n.sum() == 0:
            raise ValueError("no token was scored")
        ratio = float(s.sum() / n.sum())
        _, se = mean_and_se((s - ratio * n) / n.mean())
        return Estimate(ratio, se)

    def gen_ppl(self) -> Estimate:
        """exp(pooled NLL per token), delta-method standard error."""
        m = self.nll()
        return Estimate(math.exp(m.mean), math.exp(m.mean) * m.se)


class Judge(Protocol):
    def token_nll(self, token_ids: torch.Tensor) -> torch.Tensor: ...

    def score(self, samples: torch.Tensor) -> Scores: ...

    def gen_ppl(self, samples: torch.Tensor) -> Estimate: ...


def _token_batch(x: torch.Tensor, name: str = "samples") -> torch.Tensor:
    if x.dim() != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"{name} must be integer token ids of shape (batch, length), got {x.dtype} {tuple(x.shape)}")
    return x.to(torch.int64).cpu()


class ExactJudge:
    """The truth: a MarkovLanguage's exact NLL. Every token is scored (the first one
    under the stationary law), so Gen PPL is exp of the exact NLL per token."""

    def __init__(self, language: MarkovLanguage):
        self.language = language

    def token_nll(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = _token_batch(token_ids, "token_ids")
        first = -self.language.log_likelihood(x[:, :1])[:, None]
        if x.shape[1] == 1:
            return first
        # the chain is stationary, so p(x_l | x_{l-1}) = p(x_{l-1}, x_l) / p(x_{l-1})
        pairs = x.unfold(1, 2, 1).reshape(-1, 2)
        step = self.language.log_likelihood(pairs) - self.language.log_likelihood(pairs[:, :1])
        return torch.cat([first, -step.reshape(x.shape[0], -1)], 1)

    def score(self, samples: torch.Tensor) -> Scores:
        x = _token_batch(samples)
        return Scores(-self.language.log_likelihood(x), torch.full((x.shape[0],), x.shape[1], dtype=torch.int64))

    def gen_ppl(self, samples: torch.Tensor) -> Estimate:
        return self.score(samples).gen_ppl()


def _device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for, but torch sees no CUDA GPU")
    return device


class CausalLMJudge:
    """Scores with a causal network `logits_fn(ids, attention_mask) -> (b, c, V)` whose
    logits at position l predict token l + 1. Sequences are cut into chunks of `context`
    tokens, each scored alone. With `bos_id`, every chunk starts with that token so every
    real token is scored; without it the first token of each chunk is not. With `eos_id`,
    MDLM's rule applies: a position counts if it is not EOS or is the chunk's first EOS.
    dtype "bfloat16" runs the network under bf16 autocast (the log-softmax is float32)."""

    def __init__(self, logits_fn: Callable, *, context: int, eos_id: int | None = None, bos_id: int | None = None,
                 device="cpu", dtype: str = "float32", batch_size: int = 8, progress: bool = True):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
        if context < 2 or batch_size < 1:
            raise ValueError(f"need context >= 2 and batch_size >= 1, got {context} and {batch_size}")
        self.logits_fn, self.context, self.eos_id, self.bos_id = logits_fn, context, eos_id, bos_id
        self.device, self.dtype, self.batch_size, self.progress = _device(device), dtype, batch_size, progress

    @torch.no_grad()
    def _nll(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, c) ids -> (b, c) float64 NLL of each token given those before it in its row;
        NaN at position 0 and where the mask is 0."""
        ids_d, mask_d = ids.to(self.device), mask.to(self.device)
        autocast = DTYPES[self.dtype]
        with torch.autocast(self.device.type, dtype=autocast) if autocast else contextlib.nullcontext():
            logits = self.logits_fn(ids_d, mask_d)
        targets = ids[:, 1:]  # a start token needs no logit of its own
        if logits.shape[:2] != ids.shape or (targets.numel() and logits.shape[-1] <= int(targets.max())):
            raise ValueError(f"the network returned logits {tuple(logits.shape)} for ids {tuple(ids.shape)} with largest id {int(targets.max())}")
        logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids_d[:, 1:], reduction="none")
        out = torch.full(ids.shape, math.nan, dtype=torch.float64)
        out[:, 1:] = nll.to(torch.float64).cpu()
        return out.masked_fill_(mask == 0, math.nan)

    def token_nll(self, token_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) ids -> (B, L) NLL, NaN at masked positions and, without a start token,
        at position 0; L (plus the start token) may not exceed the context."""
        x = _token_batch(token_ids, "token_ids")
        mask = torch.ones_like(x) if attention_mask is None else attention_mask.to(torch.int64).cpu()
        if mask.shape != x.shape:
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)}, ids {tuple(x.shape)}")
        if self.bos_id is not None:  # the start token makes the first token scorable
            x = torch.cat([torch.full((x.shape[0], 1), self.bos_id), x], 1)
            mask = torch.cat([torch.ones((x.shape[0], 1), dtype=torch.int64), mask], 1)
        if x.shape[1] > self.context:
            raise ValueError(f"{x.shape[1]} tokens exceed the judge's context of {self.context}; score() cuts sequences into chunks")
        nll = torch.cat([self._nll(x[i : i + self.batch_size], mask[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)])
        return nll if self.bos_id is None else nll[:, 1:]

    def _chunks(self, seq: torch.Tensor):
        """The chunks of one sequence: (ids, which positions count)."""
        step = self.context - (self.bos_id is not None)
        for start in range(0, seq.numel(), step):
            piece = seq[start : start + step]
            counted = torch.ones_like(piece, dtype=torch.bool)
            if self.eos_id is not None:
                eos = piece == self.eos_id
                counted = ~eos | (torch.cumsum(eos, 0) == 1)
            if self.bos_id is None:
                counted[0] = False  # nothing predicts a chunk's first token
            else:
                piece = torch.cat([piece.new_tensor([self.bos_id]), piece])
                counted = torch.cat([counted.new_tensor([False]), counted])
            yield piece, counted

    def _score_sequences(self, seqs: list[torch.Tensor]) -> Scores:
        chunks = [(i, ids, counted) for i, seq in enumerate(seqs) for ids, counted in self._chunks(seq)]
        nll_sum = torch.zeros(len(seqs), dtype=torch.float64)
        count = torch.zeros(len(seqs), dtype=torch.int64)
        pad = 0 if self.eos_id is None else self.eos_id
        for b in progress_bar(range(0, len(chunks), self.batch_size), desc="judge", leave=False, show=self.progress):
            batch = chunks[b : b + self.batch_size]
            width = max(ids.numel() for _, ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.int64)
            mask = torch.zeros_like(ids)
            counted = torch.zeros(ids.shape, dtype=torch.bool)
            for r, (_, chunk_ids, chunk_counted) in enumerate(batch):
                ids[r, : chunk_ids.numel()], mask[r, : chunk_ids.numel()] = chunk_ids, 1
                counted[r, : chunk_ids.numel()] = chunk_counted
            nll = self._nll(ids, mask)
            rows = torch.tensor([i for i, _, _ in batch])
            nll_sum.index_add_(0, rows, torch.where(counted, nll, 0.0).sum(1))
            count.index_add_(0, rows, counted.sum(1))
        return Scores(nll_sum, count)

    def score(self, samples: torch.Tensor) -> Scores:
        return self._score_sequences(list(_token_batch(samples)))

    def gen_ppl(self, samples: torch.Tensor) -> Estimate:
        return self.score(samples).gen_ppl()


class JudgeNotFoundError(FileNotFoundError):
    """The judge's weights or tokenizer are neither in the given folder nor in the local
    Hugging Face cache (and could not be downloaded)."""


def _how_to_fetch(name: str) -> str:
    return (
        f"To fetch {name!r} by hand, on a machine with internet access run\n"
        f"    hf download {name} --local-dir ./{name}\n"
        f"(older huggingface_hub: huggingface-cli download {name} --local-dir ./{name}),\n"
        f"copy that folder here and point the judge at it:\n"
        f"    TransformersJudge.from_pretrained('./{name}', local_files_only=True)\n"
        f"Only config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer files "
        f"(tokenizer.json and/or vocab.json + merges.txt, tokenizer_config.json) are needed."
    )


class TransformersJudge(CausalLMJudge):
    """A `transformers` causal LM with MDLM's decode / re-tokenise / chunk protocol (see the
    module docstring). Build it with `from_pretrained`."""

    def __init__(self, model, tokenizer, *, generator_tokenizer=None, max_length: int = MAX_LENGTH,
                 clean_up_spaces: bool = True, device="cpu", dtype: str = "float32", batch_size: int = 8, progress: bool = True):
        if tokenizer.eos_token_id is None:
            raise ValueError("the judge's tokenizer has no EOS token, which MDLM's protocol pads and scores with")
        config = model.config
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"the judge's tokenizer has {len(tokenizer)} tokens, its model only {config.vocab_size}: they do not belong together")
        context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        if context is None:
            raise ValueError("the judge's config names no context length (n_positions or max_position_embeddings)")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.model = model.eval().to(_device(device))
        super().__init__(lambda ids, mask: self.model(input_ids=ids, attention_mask=mask).logits, context=int(context),
                         eos_id=tokenizer.eos_token_id, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        self.tokenizer = tokenizer
        self.generator_tokenizer = tokenizer if generator_tokenizer is None else generator_tokenizer
        self.max_length, self.clean_up_spaces = max_length, clean_up_spaces

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_JUDGE, *, generator_tokenizer=None, local_files_only: bool = False, **kwargs) -> "TransformersJudge":
        """Load a judge (model and tokenizer) from a hub name or a local folder.
        `generator_tokenizer` (a tokenizer, or a name or folder) decodes the samples;
        by default the judge's own tokenizer, right for MDLM and SEDD samples judged by
        GPT-2 (they share GPT-2's vocabulary)."""
        try:
            import transformers
        except ImportError as e:
            raise ImportError("judging with a transformers model needs the transformers package: pip install transformers") from e

        def load(loader, what: str, name: str):
            try:
                return loader.from_pretrained(name, local_files_only=local_files_only)
            except OSError as e:
                raise JudgeNotFoundError(f"could not load the {what} {name!r}: {e}\n\n{_how_to_fetch(name)}") from e

        tokenizer = load(transformers.AutoTokenizer, "judge's tokenizer", name_or_path)
        if not tokenizer("the")["input_ids"]:  # transformers builds an empty tokenizer when only the model's files are there
            raise JudgeNotFoundError(f"the judge's tokenizer files are missing from {name_or_path!r}\n\n{_how_to_fetch(name_or_path)}")
        model = load(transformers.AutoModelForCausalLM, "judge model", name_or_path)
        if isinstance(generator_tokenizer, str):
            generator_tokenizer = load(transformers.AutoTokenizer, "generator's tokenizer", generator_tokenizer)
        return cls(model, tokenizer, generator_tokenizer=generator_tokenizer, **kwargs)

    def decode(self, samples: torch.Tensor) -> list[str]:
        """Generator token ids -> text, as MDLM decodes them (special tokens kept)."""
        x = _token_batch(samples)
        vocab = len(self.generator_tokenizer)
        if ((x < 0) | (x >= vocab)).any():
            raise ValueError(f"sample ids must lie in [0, {vocab}), the generator tokenizer's vocabulary (a mask token left in?)")
        texts = self.generator_tokenizer.batch_decode(x.tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return [self.generator_tokenizer.clean_up_tokenization(t) for t in texts] if self.clean_up_spaces else texts

    def retokenize(self, samples: torch.Tensor) -> list[torch.Tensor]:
        """Generator ids -> the judge's ids of the same text, each truncated to max_length."""
        encoded = self.tokenizer(self.decode(samples), truncation=True, max_length=self.max_length)["input_ids"]
        return [torch.tensor(ids, dtype=torch.int64) for ids in encoded]

    def score(self, samples: torch.Tensor) -> Scores:
        eos = torch.tensor([self.eos_id])
        closed = [torch.cat([ids, eos]) if ids.numel() < self.max_length else ids for ids in self.retokenize(samples)]
        return self._score_sequences(closed)

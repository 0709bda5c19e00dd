"""A tiny judge and tiny checkpoints shared by the judge, loading and paper-scale tests: a
byte-level BPE tokenizer trained on a few sentences, a tiny GPT-2 with random weights, and
folders written by save_pretrained (an MDLM network, the causal twin) of the same vocabulary."""
import hashlib

import torch

from mdmlib.models import DiTConfig, build_network, save_pretrained

EOS = "<eos>"
SENTENCES = [
    "the cat sat on the mat .",
    "a dog ran in the park , then it slept .",
    "is it raining ? yes it is !",
    "we do n't know what they 're doing , but it 's fine .",
    "the bird sang a song in the tree and the cat listened .",
]
CONTEXT = 16  # the tiny judge's context: long samples are cut into several chunks
LENGTH = 12  # the tiny checkpoints' sequence length


def tokenizer():
    """A byte-level BPE tokenizer trained on SENTENCES (needs transformers and tokenizers)."""
    import tokenizers
    import transformers

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=[EOS], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(SENTENCES, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS)


def perturbed(network, seed: int):
    """Random weights everywhere (the published initialisation zeroes the output layer,
    which would make every prediction uniform)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return network


def tiny_dit(vocab_size: int) -> DiTConfig:
    return DiTConfig(vocab_size=vocab_size, model_length=LENGTH, hidden_dim=32, n_heads=2, n_blocks=2, cond_dim=16)


def write_folders(root):
    """root/tiny-gpt2 (a transformers judge), root/tiny-mdlm (a denoiser) and root/tiny-ar
    (the project's causal network), sharing the tokenizer's vocabulary. Returns root."""
    import transformers

    tok = tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=CONTEXT, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    gpt2 = perturbed(transformers.GPT2LMHeadModel(config), 0)
    gpt2.save_pretrained(root / "tiny-gpt2")
    tok.save_pretrained(root / "tiny-gpt2")
    dit = tiny_dit(len(tok) + 1)
    save_pretrained(perturbed(build_network(dit), 1), root / "tiny-mdlm")
    save_pretrained(perturbed(build_network(dit.replace(kind="ar")), 2), root / "tiny-ar")
    return root


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

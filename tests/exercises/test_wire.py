"""Answers cross from the kernel to the grader as data: values survive the trip, and what could
run code in the grader (text, made-up SymPy functions, odd names, objects) is refused."""
import math
import os
import tempfile

import pytest
import sympy as sp
import torch

from mdmlib.exercises import WrongAnswer, wire


def _trip(header: dict, tensors: dict) -> tuple[dict, dict]:
    """A frame written and read back through a file descriptor."""
    with tempfile.TemporaryFile() as f:
        wire.send(f.fileno(), wire.frame(header, tensors))
        f.seek(0)
        return wire.receive(f.fileno())


def _from_kernel(value, function=None):
    """`value` as the grader receives it from a kernel."""
    encoder = wire.Encoder(functions={})
    header, tensors = _trip({"value": encoder(value)}, encoder.tensors)
    return wire.Decoder(tensors, trusted=False, function=function)(header["value"])


def _from_grader(value):
    """`value` as a kernel receives it from the grader, and the generators it rebuilt."""
    encoder = wire.Encoder()
    header, tensors = _trip({"value": encoder(value)}, encoder.tensors)
    decoder = wire.Decoder(tensors, trusted=True)
    return decoder(header["value"]), decoder.generators


eps = sp.Symbol("epsilon", positive=True)
n = sp.Symbol("n", positive=True, integer=True)


@pytest.mark.parametrize("value", [
    None, True, 3, -2**80, 0.1, math.inf, 1 + 2j, [1, [2.5, None]], (1, (2,), []),
    (sp.log(1 - eps) + eps**2 / 2, sp.series(-sp.log(1 - eps), eps, 0, 3)),
    sp.factorial(n) / (sp.factorial(n - 2) * n**2), sp.Rational(3, 7) * sp.pi + sp.sqrt(2) * sp.E + sp.Float("0.1", 30),
    sp.Piecewise((n, n > 2), (0, True)), sp.oo, -sp.oo, sp.nan, sp.I,
], ids=repr)
def test_values_survive_the_trip(value):
    got = _from_kernel(value)
    assert type(got) is type(value)
    if isinstance(value, sp.Basic) or (isinstance(value, tuple) and value and isinstance(value[0], sp.Basic)):
        assert got == value or (value != value and got != got)  # the same tree; nan is not equal to itself
        assert sp.srepr(got) == sp.srepr(value)  # assumptions included: a positive symbol stays positive
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(got)
    else:
        assert got == value


def test_tensors_and_arrays_keep_dtype_shape_and_values():
    import numpy as np

    t = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)[:, 1:]  # not contiguous
    got = _from_kernel((t, np.float64(2.5), np.arange(3, dtype=np.int32)))
    assert got[0].dtype == torch.bfloat16 and torch.equal(got[0], t)
    assert got[1] == 2.5 and type(got[1]) is float
    assert torch.equal(got[2], torch.arange(3, dtype=torch.int32))


def test_a_generator_arrives_in_the_same_state_and_a_dtype_as_itself():
    g = torch.Generator().manual_seed(5)
    (got, dtype), rebuilt = _from_grader((g, torch.float16))
    assert rebuilt == [got] and dtype is torch.float16
    assert torch.equal(torch.rand(4, generator=got), torch.rand(4, generator=g))


def test_the_checkers_objects_are_rebuilt_in_the_kernel():
    from mdmlib.language.synthetic import ExactDenoiser, LanguageSpec, MarkovLanguage
    from mdmlib.mdm.objectives import Tempered
    from mdmlib.models import DiTConfig, build_network

    denoiser = Tempered(ExactDenoiser(MarkovLanguage(LanguageSpec(vocab_size=3, num_classes=2, seed=2)), torch.float64), 0.7)
    network = build_network(DiTConfig(vocab_size=13, model_length=10, hidden_dim=16, n_heads=2, n_blocks=1, cond_dim=8, kind="ar")).eval()
    (d, net), _ = _from_grader((denoiser, network))
    x = torch.tensor([[3, 0, 3, 1]])
    assert torch.equal(d(x), denoiser(x)) and d.mask_id == denoiser.mask_id
    x = torch.randint(0, 12, (2, 10), generator=torch.Generator().manual_seed(1))
    assert not net.training and net.config == network.config and torch.equal(net(x), network(x))


def test_a_function_travels_as_a_handle_with_its_signature():
    def line(probs, generator, *, scale=2.0):
        return probs

    made = []
    _from_kernel([line], function=lambda *spec: made.append(spec))
    handle, name, signature = made[0]
    assert (handle, name) == (0, "line") and str(signature) == "(probs, generator, *, scale=Ellipsis)"


@pytest.mark.parametrize("value, words", [
    ("__import__('os').system('id')", "text"),
    ((1, ["sp.exp(x)"]), "text"),
    (sp.Function("system")(sp.Symbol("x")), "not one of SymPy's own"),
    (sp.Lambda(sp.Symbol("x"), sp.Symbol("x") ** 2), "not one of SymPy's own"),
    (object(), "cannot take"),
], ids=["text", "text inside a tuple", "made-up function", "lambda", "an object"])
def test_what_could_run_code_in_the_grader_is_a_wrong_answer(value, words):
    with pytest.raises(WrongAnswer, match=words):
        _from_kernel(value)


@pytest.mark.parametrize("tree, words", [
    ({"type": "symbol", "name": "x); __import__('os').system('id'); (", "assumptions": {}}, "not a name"),
    ({"type": "symbol", "name": "x", "assumptions": {"__class__": True}}, "not SymPy's"),
    ({"type": "node", "module": "sympy", "name": "__import__('os')", "args": []}, "not a name"),
    ({"type": "node", "module": "sympy", "name": "sympify", "args": []}, "not one of SymPy's own"),
    ({"type": "node", "module": "os", "name": "system", "args": []}, "not one of SymPy's own"),
    ({"type": "node", "module": "sympy.core.function", "name": "AppliedUndef", "args": []}, "not one of SymPy's own"),
    ({"type": "singleton", "name": "init_printing"}, "constants"),
    ({"type": "rational", "p": 1, "q": 0}, "denominator 0"),
], ids=["symbol named with code", "odd assumption", "class named with code", "sympify", "a module not SymPy's",
                       "undefined function class", "not a constant", "1/0"])
def test_a_forged_sympy_tree_is_refused(tree, words):
    with pytest.raises((WrongAnswer, wire.WireError), match=words):
        wire.Decoder({}, trusted=False)({"type": "sympy", "tree": tree})


def test_an_expression_bomb_stops_at_the_size_limit():
    one = {"type": "integer", "value": 1}
    bomb = {"type": "node", "module": "sympy.core.containers", "name": "Tuple", "args": [one] * wire.MAX_SYMPY_NODES}
    with pytest.raises(WrongAnswer, match="parts"):
        wire.Decoder({}, trusted=False)({"type": "sympy", "tree": bomb})


@pytest.mark.parametrize("value, words", [
    ({"type": "pickle", "data": "gASV"}, "unknown value type"),
    ({"type": "object", "kind": "network"}, "object from the kernel"),
    ({"type": "tensor", "name": "7"}, "malformed tensor"),
    ({"type": "function", "handle": 0, "name": "f", "signature": None}, "none may be"),
    ("bare text", "not a value"),
], ids=["unknown type", "object", "missing tensor", "function without a kernel", "bare string"])
def test_malformed_values_are_wire_errors(value, words):
    with pytest.raises(wire.WireError, match=words):
        wire.Decoder({}, trusted=False)(value)


def test_frames_over_the_limits_cut_short_or_late_are_refused():
    def pipe_holding(data: bytes, close: bool = False) -> int:
        r, w = os.pipe()
        os.write(w, data)
        if close:
            os.close(w)
        return r

    with pytest.raises(wire.WireError, match="over the limit"):
        wire.receive(pipe_holding((2**31).to_bytes(4, "big")))
    with pytest.raises(wire.WireError, match="tensors of"):
        wire.receive(pipe_holding(wire.frame({"a": 1}, {"t": torch.zeros(1000)})), limit=100)
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.receive(pipe_holding((3).to_bytes(4, "big") + b"{{{"))
    with pytest.raises(EOFError):
        wire.receive(pipe_holding(wire.frame({"a": 1})[:7], close=True))
    with pytest.raises(TimeoutError):
        wire.receive(pipe_holding(b""), deadline=0.0)

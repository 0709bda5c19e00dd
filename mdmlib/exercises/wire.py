"""Values across the grading boundary: what an answer's kernel and the grader send each other.

A value travels as JSON (numbers, lists, tagged tuples, SymPy trees, handles of functions that
stay in the kernel) with its tensors in one safetensors blob. Nothing is pickled, so reading a
value runs none of the sender's code.
On the grader's side (`trusted=False`) text and objects are refused, and a SymPy tree may hold
only SymPy's own classes and symbols named like identifiers: checkers hand answers to `sympify`
and `lambdify`, which would run code hidden in text or in the name of a made-up function.
The grader may send the library's objects a checker passes to an answer's function (exact
denoisers, tempered ones, networks, generators); the kernel rebuilds them.
A frame: the JSON's length (4 bytes), the JSON, the blob's length (8 bytes), the blob.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import select
import struct
import sys
import time

from mdmlib.exercises import WrongAnswer

MAX_JSON = 16 * 2**20  # bytes of JSON in one frame
MAX_BLOB = 256 * 2**20  # bytes of tensors in one frame
MAX_SYMPY_NODES = 10_000
MAX_NAME = 64
_KINDS = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD")


class WireError(ValueError):
    """A message that does not follow the format."""


def _name(value, what: str) -> str:
    if not (isinstance(value, str) and value.isidentifier() and len(value) <= MAX_NAME):
        raise WireError(f"{what} {str(value)[:MAX_NAME]!r} is not a name")
    return value


class Encoder:
    """Turns a value into JSON; its tensors collect in `tensors`, the generators it met in
    `generators`. With `functions` (a dict), callables are kept there and sent as handles."""

    def __init__(self, functions: dict | None = None):
        self.functions, self.tensors, self.generators = functions, {}, []

    def tensor(self, t) -> str:
        name = str(len(self.tensors))
        self.tensors[name] = t.detach().to("cpu").contiguous().clone()
        return name

    def __call__(self, v):
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return float(v)
        if isinstance(v, complex):
            return {"type": "complex", "re": v.real, "im": v.imag}
        if isinstance(v, str):
            return {"type": "str", "value": str(v)}
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, tuple):
            return {"type": "tuple", "items": [self(x) for x in v]}
        torch, numpy, sympy = (sys.modules.get(m) for m in ("torch", "numpy", "sympy"))
        if numpy is not None and isinstance(v, numpy.generic):
            return self(v.item())
        if numpy is not None and isinstance(v, numpy.ndarray) and v.dtype.kind in "biuf":
            import torch

            return {"type": "tensor", "name": self.tensor(torch.from_numpy(numpy.ascontiguousarray(v)))}
        if torch is not None:
            if isinstance(v, torch.Tensor):
                return {"type": "tensor", "name": self.tensor(v)}
            if isinstance(v, torch.Generator):
                self.generators.append(v)
                return {"type": "generator", "state": self.tensor(v.get_state()), "device": str(v.device)}
            if isinstance(v, torch.dtype):
                return {"type": "dtype", "name": str(v).removeprefix("torch.")}
        if sympy is not None and isinstance(v, sympy.Basic):
            return {"type": "sympy", "tree": _sympy_tree(v)}
        if self.functions is None and type(v).__module__.startswith("mdmlib."):
            known = self._library_object(v)
            if known is not None:
                return known
        if callable(v) and self.functions is not None:
            handle = len(self.functions)
            self.functions[handle] = v
            return {"type": "function", "handle": handle, "name": str(getattr(v, "__name__", type(v).__name__))[:MAX_NAME],
                    "signature": _signature(v)}
        if self.functions is not None:
            return {"type": "unsupported", "name": type(v).__name__[:MAX_NAME]}
        raise TypeError(f"the grader cannot send a {type(v).__name__} to the answer's kernel")

    def _library_object(self, v):
        """The library's objects a checker hands to an answer's function, as recipes."""
        import torch

        from mdmlib.language.synthetic import ExactDenoiser
        from mdmlib.mdm.objectives import Tempered
        from mdmlib.models import DiTConfig

        if isinstance(v, ExactDenoiser):
            return {"type": "object", "kind": "exact_denoiser", "spec": dataclasses.asdict(v.language.spec), "dtype": self(v.dtype)}
        if isinstance(v, Tempered):
            return {"type": "object", "kind": "tempered", "denoiser": self(v.denoiser), "temperature": v.temperature}
        if isinstance(v, torch.nn.Module) and isinstance(getattr(v, "config", None), DiTConfig):
            return {"type": "object", "kind": "network", "config": dataclasses.asdict(v.config), "training": v.training,
                    "state": {k: self.tensor(t) for k, t in v.state_dict().items()}}
        return None


def _signature(f):
    try:
        parameters = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        return None
    return [[p.name, p.kind.name, p.default is not p.empty] for p in parameters]


def signature(described) -> inspect.Signature | None:
    """The signature a function's description gives (defaults shown as ...), or None."""
    if described is None:
        return None
    try:
        parameters = [inspect.Parameter(_name(name, "a parameter"), getattr(inspect.Parameter, kind) if kind in _KINDS else None,
                                        default=... if has_default is True else inspect.Parameter.empty)
                      for name, kind, has_default in described]
        return inspect.Signature(parameters)
    except (TypeError, ValueError) as error:
        raise WireError(f"a function's signature {str(described)[:200]} is malformed: {error}") from None


def _sympy_tree(e) -> dict:
    import sympy
    from sympy.core.singleton import Singleton

    if type(e) is sympy.Symbol:
        return {"type": "symbol", "name": e.name, "assumptions": dict(getattr(e, "_assumptions_orig", e.assumptions0))}
    if isinstance(type(e), Singleton):
        return {"type": "singleton", "name": type(e).__name__}
    if isinstance(e, sympy.Integer):
        return {"type": "integer", "value": int(e)}
    if isinstance(e, sympy.Rational):
        return {"type": "rational", "p": int(e.p), "q": int(e.q)}
    if isinstance(e, sympy.Float):
        if not e.is_finite:
            return {"type": "singleton", "name": "NaN" if e.is_nan else "Infinity" if e > 0 else "NegativeInfinity"}
        sign, man, exp, _ = e._mpf_
        return {"type": "float", "man": -man if sign else man, "exp": exp, "prec": e._prec}
    return {"type": "node", "module": type(e).__module__, "name": type(e).__name__, "args": [_sympy_tree(a) for a in e.args]}


class Decoder:
    """Turns JSON and tensors back into a value. `trusted=False` (the grader reading the kernel)
    refuses text, objects and SymPy classes that are not SymPy's; `function(handle, name,
    signature)` makes the callable a function handle stands for."""

    def __init__(self, tensors: dict, trusted: bool, function=None):
        self.tensors, self.trusted, self.function = tensors, trusted, function
        self.generators, self.nodes = [], 0

    def __call__(self, v):
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict) or not isinstance(v.get("type"), str):
            raise WireError(f"not a value: {str(v)[:100]}")
        kind = v["type"]
        try:
            return getattr(self, f"_{kind}")(v) if kind in _DECODED else self._unknown(v)
        except (KeyError, TypeError, AttributeError) as error:
            raise WireError(f"a malformed {kind}: {type(error).__name__}: {error}") from None

    def _unknown(self, v):
        raise WireError(f"unknown value type {str(v['type'])[:MAX_NAME]!r}")

    def _tuple(self, v):
        return tuple(self(x) for x in _list(v["items"]))

    def _complex(self, v):
        return complex(float(v["re"]), float(v["im"]))

    def _str(self, v):
        if not self.trusted:
            raise WrongAnswer(f"the answer holds the text {str(v['value'])[:60]!r}: the grader takes numbers, tensors, SymPy "
                              "expressions and functions, not text (text would be read as code)")
        return str(v["value"])

    def _tensor(self, v):
        return self.tensors[v["name"]]

    def _generator(self, v):
        import torch

        device = str(v["device"])
        if not (device == "cpu" or device.startswith("cuda")):
            raise WireError(f"a generator on device {device[:MAX_NAME]!r}")
        generator = torch.Generator(device=device)
        generator.set_state(self.tensors[v["state"]])
        self.generators.append(generator)
        return generator

    def _dtype(self, v):
        import torch

        dtype = getattr(torch, _name(v["name"], "a dtype"), None)
        if not isinstance(dtype, torch.dtype):
            raise WireError(f"{v['name']!r} is not a torch dtype")
        return dtype

    def _function(self, v):
        if self.function is None:
            raise WireError("a function where none may be")
        if not isinstance(v["handle"], int) or isinstance(v["handle"], bool):
            raise WireError("a function handle that is not a number")
        return self.function(v["handle"], str(v["name"])[:MAX_NAME], signature(v["signature"]))

    def _unsupported(self, v):
        raise WrongAnswer(f"the answer holds a {str(v['name'])[:200]}, which the grader cannot take: give numbers, tensors, "
                          "SymPy expressions, or functions that return those")

    def _object(self, v):
        if not self.trusted:
            raise WireError("an object from the kernel")
        import torch

        from mdmlib.language.synthetic import (
            ExactDenoiser,
            LanguageSpec,
            MarkovLanguage,
        )
        from mdmlib.mdm.objectives import Tempered
        from mdmlib.models import DiTConfig, build_network

        if v["kind"] == "exact_denoiser":
            return ExactDenoiser(MarkovLanguage(LanguageSpec(**v["spec"])), self(v["dtype"]))
        if v["kind"] == "tempered":
            return Tempered(self(v["denoiser"]), v["temperature"])
        if v["kind"] == "network":
            network = build_network(DiTConfig(**v["config"]))
            network.load_state_dict({k: self.tensors[name] for k, name in v["state"].items()})
            return network.train(bool(v["training"])) if isinstance(network, torch.nn.Module) else network
        raise WireError(f"unknown object {v['kind']!r}")

    def _sympy(self, v):
        return self._expression(v["tree"])

    def _expression(self, tree):
        import sympy

        self.nodes += 1
        if self.nodes > MAX_SYMPY_NODES:
            raise WrongAnswer(f"the answer's expressions have more than {MAX_SYMPY_NODES:,} parts")
        kind = tree["type"]
        if kind == "symbol":
            assumptions = tree["assumptions"]
            if not all(isinstance(k, str) and k in _assumption_names() and isinstance(b, bool) for k, b in assumptions.items()):
                raise WireError(f"a symbol's assumptions {str(assumptions)[:200]} are not SymPy's")
            return sympy.Symbol(_name(tree["name"], "a symbol"), **assumptions)
        if kind == "integer":
            return sympy.Integer(_integer(tree["value"]))
        if kind == "rational":
            if _integer(tree["q"]) == 0:
                raise WireError("a rational with denominator 0")
            return sympy.Rational(_integer(tree["p"]), tree["q"])
        if kind == "float":
            import mpmath

            prec = _integer(tree["prec"])
            if not 1 <= prec <= 10_000:
                raise WireError(f"a float of {prec} bits")
            with mpmath.workprec(prec):  # mpf rounds to the context's precision
                return sympy.Float(mpmath.mpf((_integer(tree["man"]), _integer(tree["exp"]))), precision=prec)
        name = _name(tree["name"], "a SymPy class")
        if kind == "singleton":
            value = getattr(sympy.S, name, None)
            if not isinstance(value, sympy.Basic):
                raise WireError(f"{name!r} is not one of SymPy's constants")
            return value
        if kind != "node":
            raise WireError(f"unknown expression part {str(kind)[:MAX_NAME]!r}")
        module = tree["module"]
        ours = isinstance(module, str) and (module == "sympy" or module.startswith("sympy.")) and module in sys.modules
        cls = getattr(sys.modules[module], name, None) if ours else None  # modules already loaded: nothing is imported
        if not (isinstance(cls, type) and issubclass(cls, sympy.Basic)) or cls is sympy.Function or issubclass(cls, _refused_classes()):
            raise WrongAnswer(f"the answer uses {name}, which is not one of SymPy's own operations (made-up functions, lambdas "
                              "and symbols that are not plain names are refused)")
        args = [self._expression(a) for a in _list(tree["args"])]
        if name in _BUILT_EVALUATED:
            return cls(*args)
        with sympy.evaluate(False):  # as sent: nothing (10**10**100, say) is computed before the checker asks
            return cls(*args)


def _list(v) -> list:
    if not isinstance(v, list):
        raise WireError("a list expected")
    return v


def _integer(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise WireError(f"an integer expected, got {str(v)[:40]}")
    return v


_BUILT_EVALUATED = {"Order"}  # classes that cannot build themselves unevaluated
_DECODED = {"tuple", "complex", "str", "tensor", "generator", "dtype", "function", "unsupported", "object", "sympy"}


@functools.cache
def _refused_classes() -> tuple:
    """Classes that carry a name of the sender's into the expression (made-up functions,
    lambdas): a checker's lambdify would print that name into the code it runs."""
    import sympy
    from sympy.core.function import AppliedUndef

    return (sympy.Symbol, AppliedUndef, sympy.Lambda, sympy.Subs)


@functools.cache
def _assumption_names() -> frozenset:
    from sympy.core.assumptions import _assume_defined

    return frozenset(_assume_defined)


def frame(header: dict, tensors: dict | None = None) -> bytes:
    """One message as bytes (raises if a tensor cannot be stored: sparse, complex...)."""
    blob = b""
    if tensors:
        from safetensors.torch import save

        blob = save(tensors)
    data = json.dumps(header).encode()
    return struct.pack(">I", len(data)) + data + struct.pack(">Q", len(blob)) + blob


def send(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write a frame to `fd`, by `deadline` (a time.monotonic() value) if one is given."""
    view = memoryview(data)
    while view:
        _wait(fd, deadline, write=True)
        try:
            view = view[os.write(fd, view[: 1 << 20]):]
        except BlockingIOError:
            continue


def receive(fd: int, deadline: float | None = None, limit: int = MAX_BLOB) -> tuple[dict, dict]:
    """Read one frame: (header, tensors). EOFError if the other side is gone, TimeoutError
    past `deadline`, WireError for anything malformed or over the limits."""
    (size,) = struct.unpack(">I", _read_exactly(fd, 4, deadline))
    if size > MAX_JSON:
        raise WireError(f"a message of {size:,} bytes, over the limit of {MAX_JSON:,}")
    try:
        header = json.loads(_read_exactly(fd, size, deadline))
    except (ValueError, RecursionError) as error:
        raise WireError(f"a message that is not JSON: {error}") from None
    (size,) = struct.unpack(">Q", _read_exactly(fd, 8, deadline))
    if size > limit:
        raise WireError(f"tensors of {size:,} bytes, over the limit of {limit:,}")
    tensors = {}
    if size:
        blob = _read_exactly(fd, size, deadline)
        try:
            from safetensors.torch import load

            tensors = load(blob)
        except Exception as error:  # whatever the blob holds, it is the sender's fault
            raise WireError(f"tensors that safetensors cannot read: {error}") from None
    if not isinstance(header, dict):
        raise WireError("a message that is not a JSON object")
    return header, tensors


def _wait(fd: int, deadline: float | None, write: bool) -> None:
    if deadline is None:
        return
    left = max(0.0, deadline - time.monotonic())
    readable, writable, _ = select.select([] if write else [fd], [fd] if write else [], [], left)
    if not (writable if write else readable):
        raise TimeoutError("no answer in time")


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    data = bytearray()
    while len(data) < n:
        _wait(fd, deadline, write=False)
        try:
            chunk = os.read(fd, min(n - len(data), 1 << 20))
        except BlockingIOError:
            continue
        if not chunk:
            raise EOFError("the other side closed the pipe")
        data += chunk
    return bytes(data)

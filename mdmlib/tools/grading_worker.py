"""The grading kernel: runs an answered notebook's cells and its answers' functions, and nothing else.

mdmlib.tools.grading starts it with two pipe descriptors and its limits. Before any cell runs
it confines itself (mdmlib.tools.sandbox) and sends which limits hold. `check(key, answer)`
here only records the answer: the grader asks for it as data (mdmlib.exercises.wire) and runs
the checker in its own process. Requests, each answered by one reply:
  run   a cell, in IPython as a notebook kernel runs it: its error if any, and the answers it checked
  call  a recorded function on arguments the grader chose: its value or error, and the new
        states of the generators it was given (so the grader's draws go on where it left them)
Nothing the answers do here can change a grade: they can only change the data they hand over.
"""
from __future__ import annotations

import base64
import json
import sys


def _error(error: BaseException) -> dict:
    try:
        message = str(error)
    except Exception:  # an answer's own exception whose str fails
        message = "(its message could not be shown)"
    return {"ename": type(error).__name__, "evalue": message[:2000]}


def _frame(wire, reply: dict, encoder) -> bytes:
    try:
        return wire.frame(reply, encoder.tensors)
    except Exception as error:  # a tensor safetensors cannot store: say so instead of dying
        unsupported = {"type": "unsupported", "name": f"tensor that cannot be sent ({type(error).__name__})"}
        if "answers" in reply:
            return wire.frame({**reply, "answers": {k: unsupported for k in reply["answers"]}})
        return wire.frame({**reply, "value": unsupported, "generators": []})


def _encoded(encoder, value):
    try:
        return encoder(value)
    except Exception as error:  # whatever the answer holds, the grader gets a description instead
        return {"type": "unsupported", "name": f"{type(value).__name__} ({type(error).__name__}: {str(error)[:200]})"}


def _run(shell, request: dict, recorded: list, functions: dict, wire):
    recorded.clear()
    result = shell.run_cell(str(request["source"]), store_history=False)
    error = result.error_before_exec or result.error_in_exec
    encoder = wire.Encoder(functions)
    answers = {}
    for key, value in recorded:
        if key not in answers:  # the first check of an exercise in the cell is its answer
            answers[key] = _encoded(encoder, value)
    return {"error": _error(error) if error is not None else None, "answers": answers}, encoder


def _call(request: dict, tensors: dict, functions: dict, wire):
    decoder = wire.Decoder(tensors, trusted=True)
    f = functions[request["function"]]
    args, kwargs = decoder(request["args"]), {str(k): decoder(v) for k, v in request["kwargs"]}
    torch = sys.modules.get("torch")
    if torch is not None and "torch_rng" in request:  # the draws the answer would make in the grader's process
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(request["torch_rng"])), dtype=torch.uint8))
    encoder = wire.Encoder(functions)
    try:
        value = f(*args, **kwargs)
    except BaseException as error:  # the answer's failure is reported, not ours
        return {"error": _error(error)}, encoder
    reply = {"error": None, "value": _encoded(encoder, value)}
    reply["generators"] = [encoder.tensor(g.get_state()) for g in decoder.generators]
    return reply, encoder


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    from mdmlib.tools.sandbox import confine

    held = confine(int(config["memory"]), bool(config["network"]), config["user"], config["why_not"])
    read, write = int(config["read"]), int(config["write"])
    from mdmlib import exercises
    from mdmlib.exercises import wire

    recorded: list = []

    def check(key, answer) -> None:
        """Hand the answer to the grader (grading runs the checker, not this kernel)."""
        recorded.append((str(key), answer))
        print(f"exercise {key}: answer handed to the grader")

    exercises.check = check
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    settings = Config()
    settings.HistoryManager.enabled = False  # no history file, no thread to save it
    shell = InteractiveShell.instance(config=settings)
    functions: dict = {}
    wire.send(write, wire.frame({"confinement": held, "id": 1}))
    while True:
        try:
            request, tensors = wire.receive(read)
        except EOFError:
            return 0
        if request.get("op") == "run":
            reply, encoder = _run(shell, request, recorded, functions, wire)
        else:
            reply, encoder = _call(request, tensors, functions, wire)
        wire.send(write, _frame(wire, {**reply, "id": request.get("id")}, encoder))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

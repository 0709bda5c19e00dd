"""The grader's side of a grading kernel: start it confined, ask it, and stop waiting in time.

`Kernel` starts mdmlib.tools.grading_worker in a process of its own (its own session, a
scratch folder as its home and working folder, a short environment with none of the grader's
secrets) and talks to it over two pipes. Every request waits at most what is left of an
exercise's `Allowance`; past it the kernel is killed and `TimedOut` raised. A kernel that dies
or breaks the format raises `KernelLost`. Both are BaseExceptions, so a checker's `except
Exception` around a call of the answer cannot turn them into a wrong answer.
`AnswerFunction` stands for a function the answer defined: calling it sends the arguments to
the kernel and returns what the function returned there, as data.
"""
from __future__ import annotations

import base64
import builtins
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from mdmlib.exercises import wire
from mdmlib.infra.paths import PACKAGE

START_SECONDS = 120  # to start Python and IPython, before any answer runs


@dataclass(frozen=True)
class Limits:
    timeout: float = 300.0  # seconds an exercise's code may run: its cell and the calls its check makes
    memory: int = 8 * 2**30  # bytes of address space the kernel may take
    network: bool = True  # cut the kernel's network (Linux)
    user: str | None = "nobody"  # the user the kernel runs as, when the grader is root

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout < float("inf")):
            raise ValueError(f"the timeout must be a positive number of seconds, got {self.timeout!r}")
        if not (isinstance(self.memory, int) and self.memory >= 2**28):
            raise ValueError(f"the memory limit must be at least 256 MiB (Python and IPython need that), got {self.memory!r} bytes")


class TimedOut(BaseException):
    """The answer's code ran past its exercise's time."""


class KernelLost(BaseException):
    """The kernel died, or broke the format it must answer in; `outcome` says which."""

    def __init__(self, outcome: str, message: str):
        super().__init__(message)
        self.outcome = outcome


class Allowance:
    """The seconds an exercise's code has left, spent only while the grader waits on the kernel."""

    def __init__(self, seconds: float):
        self.left = float(seconds)


class Kernel:
    def __init__(self, limits: Limits, scratch: str):
        self.limits = limits
        to_kernel, self._to = os.pipe()
        self._from, from_kernel = os.pipe()
        user, why_not = usable_user(limits.user) if os.geteuid() == 0 and limits.user else (limits.user, "")
        config = {"read": to_kernel, "write": from_kernel, "memory": limits.memory, "network": limits.network, "user": user, "why_not": why_not}
        self._stderr, self._asked = tempfile.TemporaryFile(), 0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mdmlib.tools.grading_worker", json.dumps(config)], pass_fds=(to_kernel, from_kernel),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=scratch, env=_environment(scratch),
            start_new_session=True)
        os.close(to_kernel)
        os.close(from_kernel)
        os.set_blocking(self._to, False)
        os.set_blocking(self._from, False)
        try:
            hello, _ = self.ask(None, {}, Allowance(START_SECONDS))
        except TimedOut:
            raise KernelLost("error", f"the kernel did not start within {START_SECONDS} s") from None
        try:
            self.confinement = {name: (bool(applied), str(how)) for name, (applied, how) in hello["confinement"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self.close()
            raise KernelLost("error", "the kernel did not say which limits hold") from None

    @property
    def alive(self) -> bool:
        return self._to >= 0 and not self._exited()

    def _exited(self) -> bool:
        # WNOWAIT: the process stays unreaped, so its id (and group id) cannot be reused before close() kills the group
        return self.process.returncode is not None or os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def ask(self, request: dict | None, tensors: dict, allowance: Allowance) -> tuple[dict, dict]:
        """Send a request (None: only wait for the kernel's first message) and read its reply."""
        if not self.alive:
            raise KernelLost("kernel died", self._death())
        start = time.monotonic()
        deadline = start + max(0.0, allowance.left)
        self._asked += 1
        try:
            if request is not None:
                wire.send(self._to, wire.frame({**request, "id": self._asked}, tensors), deadline)
            reply, tensors = wire.receive(self._from, deadline)
            if reply.get("id") != self._asked:  # a reply the answer's code wrote itself, or one left over from it
                raise wire.WireError("a reply that does not answer the grader's request")
            return reply, tensors
        except TimeoutError:
            self.close()
            raise TimedOut(f"ran past the limit of {self.limits.timeout:g} s (--timeout)") from None
        except (EOFError, BrokenPipeError):
            raise KernelLost("kernel died", self._death()) from None
        except wire.WireError as error:
            self.close()
            raise KernelLost("error", f"the kernel broke the grading format: {error}") from None
        finally:
            allowance.left -= time.monotonic() - start

    def _death(self) -> str:
        deadline = time.monotonic() + 10  # a kernel that closed its pipe but lives on is killed after this
        while time.monotonic() < deadline and not self._exited():
            time.sleep(0.05)
        self.close()
        status = self.process.returncode
        self._stderr.seek(max(0, self._stderr.seek(0, os.SEEK_END) - 4000))
        last = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()][-1:]
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.valid_signals() else f"signal {-status}"
            how = f"killed by {name}" + (" (the memory limit, --memory?)" if name in ("SIGKILL", "SIGSEGV") else "")
        else:
            how = f"exited with status {status}"
        return f"the kernel {how}" + (f"; its last words: {last[0][:300]}" if last else "")

    def close(self) -> None:
        """Kill the kernel and whatever it started in its session (it is not reaped before)."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        for fd in (self._to, self._from):
            if fd >= 0:
                os.close(fd)
        self._to = self._from = -1


@functools.cache
def usable_user(user: str) -> tuple[str | None, str]:
    """(user, "") if `user` exists and can run this Python and mdmlib (its files may sit in a
    folder only root can read); else (None, why not)."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None, f"there is no user {user!r} here"
    probe = [sys.executable, "-c", "import pkgutil, IPython, mdmlib.exercises.wire"]
    try:
        subprocess.run(probe, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/", env=_environment("/"),
                       capture_output=True, timeout=START_SECONDS, check=True)
    except subprocess.CalledProcessError as error:
        last = (error.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return None, f"{user} cannot run this Python and mdmlib ({last[:200]}); make them readable to it, or run in a container"
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"{user} cannot run this Python ({error})"
    return user, ""


def _environment(scratch: str) -> dict[str, str]:
    """The kernel's environment: the grader's path, locale and mdmlib settings, nothing else
    (no tokens), with the scratch folder as home and as the place for figures."""
    kept = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV") or k.startswith("MDMLIB_")}
    pythonpath = os.pathsep.join([str(PACKAGE.parent)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    return {**kept, "HOME": scratch, "MDMLIB_FIGURES": os.path.join(scratch, "figures"), "MDMLIB_PROGRESS": "0", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": scratch, "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1"}


def rebuilt_error(error) -> Exception:
    """The exception the answer's function raised, rebuilt by name: a built-in one as itself
    (NotImplementedError stays 'not answered'), any other as an Exception of that name."""
    if not (isinstance(error, dict) and isinstance(error.get("ename"), str) and isinstance(error.get("evalue"), str)):
        raise KernelLost("error", "the kernel reported an error in a form the grader does not know")
    name = error["ename"] if error["ename"].isidentifier() else "Error"
    known = getattr(builtins, name, None)
    if isinstance(known, type) and issubclass(known, Exception):
        return known(error["evalue"])
    return type(name, (Exception,), {})(error["evalue"])


class AnswerFunction:
    """A function the answer defined, left in its kernel."""

    def __init__(self, kernel: Kernel, handle: int, name: str, signature, allowance: Allowance):
        self._kernel, self._handle, self._allowance = kernel, handle, allowance
        self.__name__ = self.__qualname__ = name
        if signature is not None:
            self.__signature__ = signature  # the audit asks how many arguments a line takes

    def __repr__(self) -> str:
        return f"<the answer's function {self.__name__}>"

    def __call__(self, *args, **kwargs):
        encoder = wire.Encoder()
        request = {"op": "call", "function": self._handle, "args": encoder(list(args)), "kwargs": [[k, encoder(v)] for k, v in kwargs.items()]}
        torch = sys.modules.get("torch")
        if torch is not None:  # its global draws start where the grader's would (and are not taken back)
            request["torch_rng"] = base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()
        reply, tensors = self._kernel.ask(request, encoder.tensors, self._allowance)
        if reply.get("error") is not None:
            raise rebuilt_error(reply["error"])
        value = decode(reply.get("value"), tensors, self._kernel, self._allowance)
        states = reply.get("generators")
        if not (isinstance(states, list) and len(states) == len(encoder.generators) and all(isinstance(s, str) and s in tensors for s in states)):
            raise KernelLost("error", "the kernel did not send back the generators' states")
        for generator, state in zip(encoder.generators, states):
            generator.set_state(tensors[state])
        return value


def decode(value, tensors: dict, kernel: Kernel, allowance: Allowance):
    """A value the kernel sent, as the grader may use it (functions stay in the kernel)."""
    try:
        return wire.Decoder(tensors, trusted=False, function=lambda *spec: AnswerFunction(kernel, *spec, allowance))(value)
    except wire.WireError as error:
        kernel.close()
        raise KernelLost("error", f"the kernel broke the grading format: {error}") from None

"""What the grading kernel gives up before it runs any answer: network, memory, privileges.

`confine` is called first thing by the kernel's own process, while it is still one thread (a
new namespace needs that), and says for each limit whether it holds, and how:
  network     a network namespace of its own with no interface up (Linux: as root, or in a user
              namespace where the system allows unprivileged ones)
  memory      RLIMIT_AS, soft and hard, so the kernel cannot raise it again
  files       RLIMIT_FSIZE: no file it writes (its scratch folder, its stderr) grows past 1 GiB
  user        when started as root, the named user (nobody by default), no supplementary
              groups and at most 512 processes; otherwise the grader's own user
  privileges  no_new_privs: no set-uid program (sudo, su) can give them back
The grader never trusts what the kernel says after its first message: this report is that
first message, sent before any cell runs.
"""
from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_NO_NEW_PRIVS = 38
MAX_PROCESSES = 512
MAX_FILE = 2**30


def _libc_call(name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _cut_network(flags: int) -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, "network namespaces exist only on Linux"
    try:
        _libc_call("unshare", flags)
    except (OSError, AttributeError) as error:
        return False, f"unshare failed ({error}): run the grader in a container with --network none"
    return True, "a network namespace of its own, no interface up" + (" (in a user namespace)" if flags & CLONE_NEWUSER else "")


def _limit_memory(memory: int) -> tuple[bool, str]:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError) as error:
        return False, f"setrlimit failed ({error})"
    return True, f"at most {memory / 2**30:.3g} GiB of address space (RLIMIT_AS)"


def _limit_files() -> tuple[bool, str]:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE, MAX_FILE))
    except (ImportError, ValueError, OSError) as error:
        return False, f"setrlimit failed ({error})"
    return True, f"no file it writes grows past {MAX_FILE / 2**30:g} GiB (RLIMIT_FSIZE)"


def _drop_user(user: str | None, why_not: str) -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, f"runs as the grader's own user (uid {os.geteuid()}): only root can switch to another"
    if not user:
        return False, f"runs as root: {why_not or 'no user to switch to was given'}"
    import pwd
    import resource

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False, f"runs as root: there is no user {user!r} here"
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    return True, f"runs as {user} (uid {entry.pw_uid}), no supplementary groups, at most {MAX_PROCESSES} processes"


def _no_new_privileges() -> tuple[bool, str]:
    try:
        _libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError) as error:
        return False, f"prctl failed ({error})"
    return True, "no_new_privs: set-uid programs gain nothing"


def confine(memory: int, network: bool = True, user: str | None = "nobody", why_not: str = "") -> dict[str, tuple[bool, str]]:
    """Apply the limits to this process; for each, (applied, how or why not). `why_not`: why
    there is no `user` to switch to, when the grader found the one asked for unusable."""
    # as root, a plain network namespace; if that is not allowed (a container without
    # CAP_SYS_ADMIN), a user namespace too, made after the user drop: inside one, setuid fails
    cut = _cut_network(CLONE_NEWNET) if network and os.geteuid() == 0 else None
    held = {"memory": _limit_memory(memory), "files": _limit_files()}  # before the user drop: root may set hard limits for good
    held["user"] = _drop_user(user, why_not)
    if network and not (cut and cut[0]):
        cut = _cut_network(CLONE_NEWUSER | CLONE_NEWNET)
    held["network"] = cut or (False, "left on (asked for)")
    held["privileges"] = _no_new_privileges()
    return held

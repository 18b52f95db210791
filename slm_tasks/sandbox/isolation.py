"""What containment this machine gives the sandbox's children, found by trying it once per
host process: a user+network namespace, a drop to ``nobody`` when the host runs as root;
and the clean environment every child starts with. ``SandboxError``: the sandbox cannot
run programs here as asked."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache

from slm_tasks.sandbox.child import _CLONE_NEWNET, _CLONE_NEWUSER

try:  # the project's error family, where present (the CLI prints these in one line)
    from slm_tasks.errors import SLMError as _ErrorBase
except ImportError:  # pragma: no cover
    _ErrorBase = RuntimeError

NOBODY = 65534


class SandboxError(_ErrorBase):
    """The sandbox cannot run programs here (bad limits, no usable Python...)."""


@dataclass(frozen=True)
class Isolation:
    """What containment this machine gives (probed once per parameters)."""

    netns: bool
    drop_to_uid: int | None
    notes: tuple[str, ...] = field(default_factory=tuple)


def clean_env(home: str) -> dict:
    # Nothing inherited: no tokens, no proxies, no PYTHON* variables.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
    }


_probe_lock = threading.Lock()


@lru_cache(maxsize=8)
def _probe(python: str, want_netns: bool | None, want_nobody: bool | None) -> Isolation:
    notes = []
    uid = None
    if want_nobody is not False and os.geteuid() == 0:
        # Only if the interpreter still imports its standard library as nobody (it cannot
        # when it lives in a private home such as /root/.pyenv).
        code = (
            f"import os; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); "
            "import json, math, decimal, _ctypes"
        )
        try:
            ok = (
                subprocess.run(
                    [python, "-I", "-S", "-B", "-c", code],
                    env=clean_env("/"),
                    cwd="/",
                    capture_output=True,
                    timeout=20,
                ).returncode
                == 0
            )
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            uid = NOBODY
        else:
            notes.append(
                f"the interpreter {python} is not usable as nobody (private directory?): "
                "the child keeps uid 0 without host capabilities; files are guarded by the audit hook"
            )
            if want_nobody:
                raise SandboxError(
                    f"Sandbox(run_as_nobody=True) but {python} cannot import its standard library as "
                    f"uid {NOBODY}; install Python in a world-readable place or leave run_as_nobody unset"
                )
    elif want_nobody:
        raise SandboxError("Sandbox(run_as_nobody=True) needs a root host; leave it unset")
    else:
        notes.append("not root: the child keeps the host's uid; files are guarded by the audit hook")
    netns = False
    if want_netns is not False:
        # Try it for real: a child that unshares and reports.
        code = (
            "import ctypes,os,sys\n"
            f"u={uid!r}\n"
            "if u is not None:\n os.setgroups([]); os.setgid(u); os.setuid(u)\n"
            "libc=ctypes.CDLL(None,use_errno=True)\n"
            f"sys.exit(0 if libc.unshare({_CLONE_NEWUSER | _CLONE_NEWNET})==0 else 1)\n"
        )
        try:
            r = subprocess.run(
                [python, "-I", "-S", "-B", "-c", code], env=clean_env("/"), cwd="/", capture_output=True, timeout=20
            )
            netns = r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            netns = False
        if not netns:
            notes.append("no user+network namespace here: network is blocked by the audit hook only")
            if want_netns:
                raise SandboxError(
                    "Sandbox(network_namespace=True) but unshare(CLONE_NEWUSER|CLONE_NEWNET) fails "
                    "here (containers often forbid it); allow user namespaces or leave network_namespace unset"
                )
    return Isolation(netns=netns, drop_to_uid=uid, notes=tuple(notes))


def probe_isolation(
    python: str | None = None, network_namespace: bool | None = None, run_as_nobody: bool | None = None
) -> Isolation:
    """Which containment works on this machine (cached). ``None`` means "if available"."""
    with _probe_lock:
        return _probe(python or sys.executable, network_namespace, run_as_nobody)

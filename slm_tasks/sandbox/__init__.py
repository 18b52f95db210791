"""Run untrusted Python programs (generated code and its tests) in a contained child process.

One fresh ``python -I -S -B`` process per program, in a fresh temporary directory, with a
clean environment (``HOME`` is that directory; nothing inherited), ``setrlimit`` limits
(CPU seconds, address space, processes, file size, open files, no core dumps), a
wall-clock timeout that kills the whole process group, bounded output capture, and no
network: a new user+network namespace where the kernel allows it (only a downed loopback
exists inside), plus an audit hook that ends the program at the first socket, process,
signal, ctypes or introspection event. When the host runs as root the child also drops
to ``nobody`` before running anything untrusted. See docs/sandbox.md.

Verdicts cannot be forged from inside: the parent counts a program as passed only when
the child exits 0 *and* its report pipe carries ``PASS <nonce> <pid>``, where the nonce is
a per-run secret that lives only in the audit hook's closure (read from a pipe that is
closed before untrusted code runs) and the hook writes it only when the call comes from
the genuine harness frame after every test ran. ``sys.exit(0)``, ``os._exit(0)``, closing
stdout, printing a fake marker or patching the harness therefore all score as failures.

Layout: :mod:`slm_tasks.sandbox.runner` is the parent side (``Sandbox``, ``Limits``...,
re-exported here), :mod:`slm_tasks.sandbox.isolation` what containment the host gives
(``probe_isolation``); ``child.py`` is the child program, run by path as ``python -I -S -B
child.py --child`` and using the standard library only.
"""

from slm_tasks.sandbox.isolation import Isolation, SandboxError, probe_isolation
from slm_tasks.sandbox.runner import ExecResult, Limits, Sandbox, default_sandbox

__all__ = ["Sandbox", "Limits", "ExecResult", "Isolation", "SandboxError", "probe_isolation", "default_sandbox"]

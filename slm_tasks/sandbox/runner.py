"""Parent side of the code sandbox: starts one contained child per program and reads its verdict.

The child is ``child.py`` beside this file, run by path (``python -I -S -B child.py --child
JOB_FD REPORT_FD``); this module sends it the job over a pipe, enforces the wall-clock
timeout on its process group, and counts a program as passed only on exit 0 plus the
``PASS <nonce> <pid>`` line. See the package docstring and docs/sandbox.md.
"""

from __future__ import annotations

import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from slm_tasks.sandbox.child import RC_BLOCKED, RC_FAILED, RC_HARNESS, RC_PASSED
from slm_tasks.sandbox.isolation import SandboxError, clean_env, probe_isolation

CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")
_REPORT_KEEP = 8 << 10


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Defaults suit benchmark-style functions (HumanEval, MBPP)."""

    timeout_s: float = 10.0  # wall clock, whole process group killed after it
    cpu_s: int | None = None  # RLIMIT_CPU; default: ceil(timeout_s) + 1
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    max_processes: int = 64  # RLIMIT_NPROC (applied when the child runs as its own uid)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE, also bounds captured output files
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output_bytes: int = 16 << 10  # stdout/stderr kept per stream in results

    def __post_init__(self):
        if not self.timeout_s > 0:
            raise SandboxError(f"Limits.timeout_s must be > 0 (got {self.timeout_s})")
        for name in ("memory_bytes", "max_processes", "max_file_bytes", "max_open_files"):
            if int(getattr(self, name)) <= 0:
                raise SandboxError(f"Limits.{name} must be a positive integer (got {getattr(self, name)})")

    def child_view(self) -> dict:
        d = asdict(self)
        d["cpu_s"] = int(self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1)
        return d


@dataclass
class ExecResult:
    """What happened to one program. ``reason`` is short and stable enough to count:
    ``passed``, ``failed: AssertionError: ...``, ``timeout``, ``memory``,
    ``killed: SIGKILL``, ``blocked: socket.__new__``, ``failed: exited 0 without finishing the tests``."""

    passed: bool
    status: str  # passed | failed | timeout | memory | killed | blocked | error
    reason: str
    returncode: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Job:
    program: str
    tests: str = ""
    expose: tuple[str, ...] = ()


class Sandbox:
    """Runs programs, one contained child process each, ``workers`` at a time.

    >>> Sandbox().run("def f(x): return x + 1", "assert f(1) == 2").reason
    'passed'
    """

    def __init__(
        self,
        limits: Limits | None = None,
        workers: int | None = None,
        python: str | None = None,
        network_namespace: bool | None = None,
        run_as_nobody: bool | None = None,
        tmp_root: str | None = None,
        deny_read: Sequence[str] | None = None,
        audit_hook: bool = True,
    ):
        self.limits = limits or Limits()
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.python = python or sys.executable
        if not self.python or not os.path.exists(self.python):
            raise SandboxError(f"no Python interpreter at {self.python!r}; pass Sandbox(python=...)")
        self.tmp_root = tmp_root or tempfile.gettempdir()
        self.isolation = probe_isolation(self.python, network_namespace, run_as_nobody)
        home = os.path.realpath(os.path.expanduser("~"))
        # The host's home (keys, tokens) stays unreadable even where the child shares its uid.
        self.deny_read = tuple(deny_read) if deny_read is not None else ((home,) if home != "/" else ())
        # Off only to test the OS layers alone: without the hook nothing can pass.
        self.audit_hook = bool(audit_hook)

    # -- public API ---------------------------------------------------------------------
    def run(self, program: str, tests: str = "", expose: Sequence[str] = ()) -> ExecResult:
        """Run ``program`` then ``tests`` (both Python source) in one fresh child.

        The tests see the program's top-level names except those that shadow a builtin;
        ``expose`` lists such names that the tests legitimately call (the function under
        test may be called ``sum``)."""
        return self._run_one(_Job(program, tests, tuple(expose)))

    def run_many(self, jobs: Iterable[tuple]) -> list[ExecResult]:
        """Run ``(program, tests[, expose])`` tuples, ``workers`` at a time; results in
        input order."""
        jobs = [_Job(*j) if not isinstance(j, _Job) else j for j in jobs]
        if not jobs:
            return []
        if self.workers == 1 or len(jobs) == 1:
            return [self._run_one(j) for j in jobs]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)), thread_name_prefix="sandbox") as pool:
            return list(pool.map(self._run_one, jobs))

    # -- one child ----------------------------------------------------------------------
    def _run_one(self, job: _Job) -> ExecResult:
        lim = self.limits
        iso = self.isolation
        workdir = tempfile.mkdtemp(prefix="slm-sbx-", dir=self.tmp_root)
        started = time.monotonic()
        proc = None
        job_r = job_w = rep_r = rep_w = -1
        try:
            root = os.path.realpath(workdir)
            if iso.drop_to_uid is not None:
                os.chown(workdir, iso.drop_to_uid, iso.drop_to_uid)
            nonce = secrets.token_hex(16)
            payload = marshal.dumps(
                {
                    "program": job.program,
                    "tests": job.tests,
                    "expose": list(job.expose),
                    "nonce": nonce,
                    "limits": lim.child_view(),
                    "uid": iso.drop_to_uid,
                    "gid": iso.drop_to_uid,
                    "netns": iso.netns,
                    "root": root,
                    "deny_read": list(self.deny_read),
                    "audit_hook": self.audit_hook,
                }
            )
            job_r, job_w = os.pipe()
            rep_r, rep_w = os.pipe()
            out_path, err_path = os.path.join(workdir, ".stdout"), os.path.join(workdir, ".stderr")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    [self.python, "-I", "-S", "-B", _child_entry(self.python), "--child", str(job_r), str(rep_w)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=root,
                    env=clean_env(root),
                    pass_fds=(job_r, rep_w),
                    start_new_session=True,  # own process group: killed as a whole
                    close_fds=True,
                )
            os.close(job_r)
            os.close(rep_w)
            job_r = rep_w = -1
            _write_all(job_w, payload)  # the child reads it before untrusted code runs
            os.close(job_w)
            job_w = -1
            expected = f"PASS {nonce} {proc.pid}\n".encode()
            report, saw_pass, timed_out = _collect(rep_r, proc, expected, started + lim.timeout_s)
            os.close(rep_r)
            rep_r = -1
            if timed_out:
                _kill_group(proc)
            rc = proc.wait()
            _kill_group(proc)  # stragglers, should any have slipped past the hook
            duration = time.monotonic() - started
            stdout = _read_head(out_path, lim.max_output_bytes)
            stderr = _read_head(err_path, lim.max_output_bytes)
            return _verdict(rc, timed_out, saw_pass, report, duration, stdout, stderr)
        except OSError as exc:
            if proc is not None:
                _kill_group(proc)
            return ExecResult(
                False,
                "error",
                f"error: sandbox could not run the program: {exc}",
                duration_s=time.monotonic() - started,
            )
        finally:
            for fd in (job_r, job_w, rep_r, rep_w):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            shutil.rmtree(workdir, onerror=_force_remove)


def _verdict(rc, timed_out, saw_pass, report: bytes, duration, stdout, stderr) -> ExecResult:
    text = report.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if ln]

    def last(prefix):  # the harness writes its line just before exiting
        return next((ln[len(prefix) :] for ln in reversed(lines) if ln.startswith(prefix)), None)

    def res(passed, status, reason):
        return ExecResult(passed, status, reason, rc, round(duration, 4), stdout, stderr)

    if timed_out:
        return res(False, "timeout", "timeout")
    if saw_pass and rc == RC_PASSED:
        return res(True, "passed", "passed")
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            return res(False, "timeout", "timeout: cpu limit")
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return res(False, "killed", f"killed: {name}")
    blocked = last("BLOCKED ")
    if rc == RC_BLOCKED and blocked is not None:
        return res(False, "blocked", f"blocked: {blocked}")
    harness = last("HARNESS ")
    if rc == RC_HARNESS and harness is not None:
        return res(False, "error", f"error: {harness}")
    fail = last("FAIL ")
    if rc == RC_FAILED and fail is not None:
        phase, _, msg = fail.partition(" ")
        if msg.startswith("MemoryError"):
            return res(False, "memory", "memory")
        if msg.startswith("RecursionError"):
            return res(False, "failed", "failed: RecursionError")
        where = "" if phase == "tests" else " (in the program)"
        return res(False, "failed", f"failed{where}: {msg}")
    if rc == 0:
        return res(False, "failed", "failed: exited 0 without finishing the tests")
    return res(False, "failed", f"failed: exit code {rc}")


def _collect(fd: int, proc: subprocess.Popen, expected: bytes, deadline: float):
    """Drain the report pipe until EOF or the deadline. Keep its first and last few KiB
    (for reasons) and look for the exact pass line anywhere in the stream."""
    head, tail = bytearray(), bytearray()
    saw = False
    carry = b""
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(head + b"\n" + tail), saw, True
            if not sel.select(timeout=min(left, 0.5)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            window = carry + chunk
            # the pass line must start a line: it is written by the harness as one line
            if (b"\n" + window).find(b"\n" + expected) >= 0:
                saw = True
            carry = window[-len(expected) :]
            if len(head) < _REPORT_KEEP:
                head += chunk[: _REPORT_KEEP - len(head)]
            else:
                tail = (tail + chunk)[-_REPORT_KEEP:]
    finally:
        sel.close()
    # EOF: every holder of the write end is gone; the child may still be exiting.
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(head + b"\n" + tail), saw, True
    return bytes(head + b"\n" + tail), saw, False


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return  # the child died first; its exit status tells the story
        view = view[n:]


def _read_head(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[... output truncated]" if len(data) > limit else "")


def _force_remove(func, path, exc_info):
    # The program may have made files read-only; the sandbox directory goes regardless.
    try:
        os.chmod(os.path.dirname(path) or ".", 0o700)
        os.chmod(path, 0o700)
        func(path)
    except OSError:
        pass


_entry_lock = threading.Lock()
_entry: list[str] = []


def _child_entry(python: str) -> str:
    """The child's script, compiled once per host process: running the bytecode file
    saves compiling this module in every child (about a quarter of the per-program cost).
    Another interpreter than this one gets the source (bytecode is version-specific)."""
    import atexit
    import py_compile

    if os.path.realpath(python) != os.path.realpath(sys.executable):
        return CHILD_SCRIPT
    with _entry_lock:
        if _entry and os.path.exists(_entry[0]):
            return _entry[0]
        folder = tempfile.mkdtemp(prefix="slm-sbx-code-")
        os.chmod(folder, 0o755)  # readable, not writable, by a child that runs as nobody
        target = os.path.join(folder, "sandbox_child.pyc")
        try:
            py_compile.compile(CHILD_SCRIPT, cfile=target, doraise=True)
            os.chmod(target, 0o644)
        except (py_compile.PyCompileError, OSError):
            shutil.rmtree(folder, ignore_errors=True)
            return CHILD_SCRIPT  # the source works too, a little slower
        atexit.register(shutil.rmtree, folder, True)
        _entry[:] = [target]
        return target


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """A shared Sandbox with default limits (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default


__all__ = ["Sandbox", "Limits", "ExecResult", "default_sandbox"]

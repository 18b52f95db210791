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

This file is also the child's entry point (``python -I -S -B sandbox.py --child``): the
child part comes first and uses the standard library only; the parent part follows the
``__main__`` guard in the middle of the module and is never executed in the child.
"""

from __future__ import annotations

import os
import sys

# ---------------------------------------------------------------------------------------
# Child side (stdlib only; runs before and around the untrusted program)
# ---------------------------------------------------------------------------------------

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
RC_PASSED, RC_FAILED, RC_BLOCKED, RC_HARNESS = 0, 1, 3, 4

# Audit events that end the program at once (exact names, then prefixes).
_BLOCKED = frozenset({
    # processes: no forks means no fork bombs, no escaping the process group, and no
    # "one fork per guess" search that lets some branch pass the tests
    "os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "os.exec",
    "os.startfile", "subprocess.Popen", "pty.spawn",
    # other processes, the host included
    "os.kill", "os.killpg", "signal.pthread_kill", "os.pidfd_open",
    # reaching the harness's internals or changing control flow behind its back
    "sys._current_frames", "sys._current_exceptions", "gc.get_objects",
    "gc.get_referrers", "gc.get_referents", "sys.settrace", "sys.setprofile",
    "sys.addaudithook", "sys.monitoring.register_callback", "cpython.run_command",
    "cpython.remote_debugger_script", "sys.remote_exec",
    # raising our limits, leaving our namespaces
    "resource.setrlimit", "resource.prlimit", "os.unshare", "os.setns",
    # links could point outside the sandbox directory
    "os.symlink", "os.link",
    # hand-made code objects are the usual first step of interpreter-memory exploits
    "code.__new__",
    "urllib.Request", "ftplib.connect", "http.client.connect", "smtplib.connect",
    "webbrowser.open", "nntplib.connect", "poplib.connect", "imaplib.open", "telnetlib.Telnet.open",
})
_BLOCKED_PREFIXES = ("socket.", "ctypes.", "_ctypes.", "ssl.", "os.exec", "os.spawn", "os.posix_spawn", "winreg.", "_winapi.")
# Events that change the file system: event -> (indices of path arguments that must be
# inside the sandbox directory, indices of dir_fd arguments that must be unset).
_WRITE_EVENTS = {
    "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.rename": ((0, 1), (2, 3)),
    "os.mkdir": ((0,), (2,)), "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)),
    "os.truncate": ((0,), ()), "os.utime": ((0,), (3,)), "os.mkfifo": ((0,), (2,)),
    "os.mknod": ((0,), (3,)), "os.chflags": ((0,), ()), "os.lchflags": ((0,), ()),
    "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()), "shutil.rmtree": ((0,), (1,)),
    "shutil.copyfile": ((1,), ()), "shutil.copymode": ((1,), ()), "shutil.copystat": ((1,), ()),
    "shutil.move": ((0, 1), ()), "shutil.chown": ((0,), ()), "os.chdir": ((0,), ()),
}
_READ_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "glob.glob/2", "os.getxattr", "os.listxattr"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _child_main() -> None:
    """Entry of the child: read the job, contain ourselves, run program then tests, report."""
    job_fd, report_fd = int(sys.argv[2]), int(sys.argv[3])
    import marshal

    chunks = []
    while True:
        b = os.read(job_fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(job_fd)  # the nonce came through here; nothing untrusted ever sees this fd
    job = marshal.loads(b"".join(chunks))
    del chunks, b  # no copy of the nonce may stay reachable from this frame
    try:
        _contain(job)
    except Exception as exc:  # a containment step failed: never run the program then
        os.write(report_fd, f"HARNESS containment failed: {type(exc).__name__}: {exc}\n".encode())
        os._exit(RC_HARNESS)
    if job["audit_hook"]:
        _disarm_signals()
    # The Python installation stays readable (imports) even inside a denied home.
    allow = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix)}
    if job["audit_hook"]:
        _install_hook(job.pop("nonce").encode(), report_fd, job["root"], tuple(job["deny_read"]), tuple(allow))
    _run(job["program"], job["tests"], report_fd, frozenset(job["expose"]))
    os._exit(RC_FAILED)  # _run ends the process itself; getting here means it was subverted


def _contain(job: dict) -> None:
    import resource

    lim = job["limits"]
    for name, value in (
        ("RLIMIT_CPU", lim["cpu_s"]),
        ("RLIMIT_AS", lim["memory_bytes"]),
        ("RLIMIT_FSIZE", lim["max_file_bytes"]),
        ("RLIMIT_NOFILE", lim["max_open_files"]),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NPROC", lim["max_processes"] if job["uid"] is not None else None),
    ):
        if value is None or not hasattr(resource, name):
            continue
        res = getattr(resource, name)
        if name == "RLIMIT_CPU":  # SIGXCPU at the soft limit, SIGKILL one second later
            resource.setrlimit(res, (value, value + 1))
        else:
            resource.setrlimit(res, (value, value))
    if job["uid"] is not None:  # root host: become nobody (no access to root's files, no signals to the host)
        os.setgroups([])
        os.setgid(job["gid"])
        os.setuid(job["uid"])
    if job["netns"]:
        # A new user namespace lets an unprivileged process own a new network namespace,
        # whose only interface is a downed loopback: no connection leaves the child.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed")
        del libc
        for name in [n for n in sys.modules if n == "ctypes" or n.startswith("ctypes.")]:
            del sys.modules[name]  # re-importing it now needs dlopen, which the hook blocks


def _disarm_signals() -> None:
    """No Python-level signal handlers from here on: they would run at any bytecode
    boundary, inside the audit hook too. SIGINT goes back to the OS default (which also
    makes ``_thread.interrupt_main`` a no-op) and the installers are removed from
    ``_signal``; re-importing it is blocked by the hook."""
    import _signal

    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    for name in ("signal", "setitimer", "alarm", "set_wakeup_fd", "raise_signal", "pthread_kill",
                 "siginterrupt", "pthread_sigmask", "sigwait", "sigwaitinfo", "sigtimedwait"):
        _signal.__dict__.pop(name, None)


def _install_hook(nonce: bytes, report_fd: int, root: str, deny_read: tuple, allow_read: tuple) -> None:
    """Register the audit hook that guards the run. Nothing outside this closure keeps a
    reference to the hook or the nonce, and every primitive it uses is bound here, so the
    untrusted program can neither read nor patch them (gc, frame and tracing access is
    blocked; the hook only calls C functions on exact ``str``/``bytes``/``int`` values, so
    no untrusted code ever runs while its frame is on the stack)."""
    _write, _exit, _getpid, _getcwd = os.write, os._exit, os.getpid, os.getcwd
    _lstat, _stat, _readlink, _getframe = os.lstat, os.stat, os.readlink, sys._getframe
    import gc

    _gc_disable, _gc_enable, _gc_isenabled = gc.disable, gc.enable, gc.isenabled
    blocked, prefixes = _BLOCKED, _BLOCKED_PREFIXES
    write_events, read_events, write_flags = _WRITE_EVENTS, _READ_EVENTS, _WRITE_FLAGS
    root_prefix = root.rstrip("/") + "/"
    proc_dev = _stat("/proc").st_dev if os.path.isdir("/proc") else None
    deny = tuple(d.rstrip("/") for d in deny_read if d and d != "/")
    allow = tuple(a.rstrip("/") + "/" for a in allow_read)
    state = {"frame": None, "reported": False, "own": False}
    # From Python 3.13 on, frame.f_locals writes through (PEP 667): a program holding the
    # harness's frame could rewrite its tests or its exit path. There, frames are off
    # limits (the standard library uses sys._getframemodulename instead).
    frames_locked = sys.version_info >= (3, 13)
    frame_attrs = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})

    def stop(what: str):
        _write(report_fd, b"BLOCKED " + what.encode("utf-8", "replace")[:300] + b"\n")
        _exit(RC_BLOCKED)

    def resolve(path):
        """Absolute, symlink-free form of ``path`` (str), from C calls only."""
        if type(path) is bytes:
            path = path.decode("utf-8", "surrogateescape")
        if type(path) is not str:
            return None
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        todo = path.split("/")
        todo.reverse()
        done, hops = [], 0
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/" + "/".join(done + [part])
            try:
                mode = _lstat(cur).st_mode
            except OSError:
                done.append(part)  # does not exist (yet): the rest is literal
                continue
            if mode & 0o170000 == 0o120000:
                hops += 1
                if hops > 40:
                    return None
                target = _readlink(cur)
                if target.startswith("/"):
                    done = []
                rest = target.split("/")
                rest.reverse()
                todo.extend(rest)
                continue
            done.append(part)
        return "/" + "/".join(done)

    def inside(p):
        return p is not None and (p == root or p.startswith(root_prefix) or p == "/dev/null")

    def readable(p):
        if p is None:
            return False
        if p.startswith(allow):
            return True
        for d in deny:
            if p == d or p.startswith(d + "/"):
                return False
        if p == "/proc" or p.startswith("/proc/"):
            return False
        if proc_dev is not None:  # procfs reached through another mount point
            try:
                if _stat(p).st_dev == proc_dev:
                    return False
            except OSError:
                pass
        return True

    def check(event, args):
        if type(event) is not str:  # a str subclass could run code in __eq__/__hash__
            stop("audit event of type " + type(event).__name__)
        if event == "sys._getframe":
            if frames_locked and not state["own"]:
                stop("sys._getframe (frames are writable from Python 3.13 on)")
            return
        if event == "object.__getattr__":
            if frames_locked and len(args) > 1 and type(args[1]) is str and args[1] in frame_attrs:
                stop("frame access (" + args[1] + ")")
            return
        if event == "compile":
            return
        if event == "import":
            if args and type(args[0]) is str and (args[0] == "signal" or args[0] == "_signal"):
                # Python-level signal handlers run at arbitrary points, the hook's own
                # frame included; the program gets no way to install them.
                stop("import of " + args[0])
            # Native extensions only from the Python installation: a shared object the
            # program wrote itself would run native code outside every guard.
            if len(args) > 1 and type(args[1]) is str and not args[1].endswith(".py"):
                p = resolve(args[1])
                if p is None or not p.startswith(allow):
                    stop("import of native code from " + str(p))
            return
        was = _gc_isenabled()
        _gc_disable()  # no finalizer or gc callback may run while this frame is live
        try:
            if event in blocked or event.startswith(prefixes):
                stop(event)
            if event == "open":
                path, flags = args[0], args[2] if len(args) > 2 else 0
                if type(path) is int:
                    return
                if type(flags) is not int:
                    flags = write_flags
                p = resolve(path)
                if flags & write_flags:
                    if not inside(p):
                        stop("open for writing outside the sandbox: " + str(p))
                elif not readable(p):
                    stop("open of a protected path: " + str(p))
                elif not inside(p):
                    try:  # a directory fd outside would let dir_fd-relative calls escape
                        if _stat(p).st_mode & 0o170000 == 0o040000:
                            stop("open of a directory outside the sandbox: " + p)
                    except OSError:
                        pass
            elif event in write_events:
                paths, dir_fds = write_events[event]
                for i in paths:
                    if i < len(args) and (type(args[i]) is str or type(args[i]) is bytes):
                        p = resolve(args[i])
                        if not inside(p):
                            stop(event + " outside the sandbox: " + str(p))
                for i in dir_fds:
                    if i < len(args) and type(args[i]) is int and args[i] != -1:
                        stop(event + " with dir_fd")
            elif event in read_events:
                a = args[0] if args else None
                if type(a) is str or type(a) is bytes:
                    if not readable(resolve(a)):
                        stop(event + " of a protected path")
            elif event == "slm.sandbox.start":
                if state["frame"] is not None:
                    stop("harness restarted")
                state["own"] = True
                state["frame"] = _getframe(2)  # 0: check, 1: hook, 2: caller
                state["own"] = False
            elif event == "slm.sandbox.pass":
                # Only the genuine harness frame, once, after all tests ran.
                state["own"] = True
                caller = _getframe(2)
                state["own"] = False
                if state["reported"] or state["frame"] is None or caller is not state["frame"]:
                    stop("forged pass report")
                state["reported"] = True
                _write(report_fd, b"PASS " + nonce + b" " + str(_getpid()).encode() + b"\n")
        finally:
            if was:
                _gc_enable()

    def hook(event, args):
        # Any exception inside the checks (RecursionError near the recursion limit,
        # MemoryError near the memory limit...) would carry this closure's frame to the
        # program in its traceback: end the process instead.
        try:
            check(event, args)
        except BaseException:
            try:
                _write(report_fd, b"BLOCKED error inside the audit hook\n")
            except BaseException:
                pass
            _exit(RC_BLOCKED)

    sys.addaudithook(hook)


def _run(program: str, tests: str, report_fd: int, expose: frozenset = frozenset()) -> None:
    # Bind everything this function needs before untrusted code can patch modules.
    import builtins

    _write, _exit, _audit, _compile, _exec, _flush_ = os.write, os._exit, sys.audit, compile, exec, _flush
    _BaseException, _type, _str, _dict = BaseException, type, str, dict
    _modules = sys.modules
    _audit("slm.sandbox.start")
    builtins_snapshot = _dict(builtins.__dict__)
    modules_snapshot = _dict(_modules)
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    phase = "program"
    try:
        # Program and tests are compiled separately (optimize=0 keeps asserts), so the
        # program cannot swallow the tests into a string or a block of its own.
        code = _compile(program, "<program>", "exec", dont_inherit=True, optimize=0)
        _exec(code, namespace)
        phase = "tests"
        # The tests see pristine builtins and freshly imported modules, whatever the
        # program replaced (builtins.abs, math.isclose...).
        builtins.__dict__.clear()
        builtins.__dict__.update(builtins_snapshot)
        for name in [n for n in _modules if n not in modules_snapshot]:
            del _modules[name]
        _modules.update(modules_snapshot)
        # The tests get their own copy of the program's names, minus any that shadow a
        # builtin (a module-level `abs = ...` must not fool them) unless the task names
        # it as what is tested (MBPP has a `def sum(a, b)`); the program's functions
        # keep their own globals.
        test_ns = {k: v for k, v in namespace.items() if k not in builtins_snapshot or k in expose}
        test_ns["__name__"] = "__sandbox__"
        test_ns["__builtins__"] = builtins
        code = _compile(tests, "<tests>", "exec", dont_inherit=True, optimize=0)
        _exec(code, test_ns)
    except _BaseException as exc:  # SystemExit and KeyboardInterrupt included
        try:
            text = _str(exc)
            msg = _type(exc).__name__ + (": " + text if text else "")
        except _BaseException:
            msg = "unprintable exception"
        _flush_()
        _write(report_fd, ("FAIL " + phase + " " + msg.replace("\n", " ")[:500] + "\n").encode("utf-8", "replace"))
        _exit(RC_FAILED)
        return  # never on to the pass report below, whatever became of _exit
    _flush_()
    _audit("slm.sandbox.pass")
    _exit(RC_PASSED)


def _flush() -> None:
    # os._exit skips buffered output; whatever the program did to sys.stdout, try once.
    for stream in ("stdout", "stderr"):
        try:
            getattr(sys, stream).flush()
        except BaseException:
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child_main()
    sys.exit("usage: run through slm_tasks.sandbox.Sandbox, not directly")

# ---------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------

import marshal  # noqa: E402
import math  # noqa: E402
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from functools import lru_cache  # noqa: E402
from typing import Iterable, Sequence  # noqa: E402

CHILD_SCRIPT = os.path.abspath(__file__)
NOBODY = 65534
_REPORT_KEEP = 8 << 10


try:  # the project's error family, where present (the CLI prints these in one line)
    from slm_tasks.errors import SLMError as _ErrorBase  # noqa: E402
except ImportError:  # pragma: no cover
    _ErrorBase = RuntimeError


class SandboxError(_ErrorBase):
    """The sandbox cannot run programs here (bad limits, no usable Python...)."""


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


@dataclass(frozen=True)
class Isolation:
    """What containment this machine gives (probed once per parameters)."""

    netns: bool
    drop_to_uid: int | None
    notes: tuple[str, ...] = field(default_factory=tuple)


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
            payload = marshal.dumps({
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
            })
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
                    env=_clean_env(root),
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
            return ExecResult(False, "error", f"error: sandbox could not run the program: {exc}",
                              duration_s=time.monotonic() - started)
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
        return next((ln[len(prefix):] for ln in reversed(lines) if ln.startswith(prefix)), None)

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
            carry = window[-len(expected):]
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


def _clean_env(home: str) -> dict:
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


_probe_lock = threading.Lock()


@lru_cache(maxsize=8)
def _probe(python: str, want_netns: bool | None, want_nobody: bool | None) -> Isolation:
    notes = []
    uid = None
    if want_nobody is not False and os.geteuid() == 0:
        # Only if the interpreter still imports its standard library as nobody (it cannot
        # when it lives in a private home such as /root/.pyenv).
        code = (f"import os; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); "
                "import json, math, decimal, _ctypes")
        try:
            ok = subprocess.run([python, "-I", "-S", "-B", "-c", code], env=_clean_env("/"), cwd="/",
                                capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            uid = NOBODY
        else:
            notes.append(f"the interpreter {python} is not usable as nobody (private directory?): "
                         "the child keeps uid 0 without host capabilities; files are guarded by the audit hook")
            if want_nobody:
                raise SandboxError(
                    f"Sandbox(run_as_nobody=True) but {python} cannot import its standard library as "
                    f"uid {NOBODY}; install Python in a world-readable place or leave run_as_nobody unset")
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
            r = subprocess.run([python, "-I", "-S", "-B", "-c", code], env=_clean_env("/"), cwd="/",
                               capture_output=True, timeout=20)
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


def probe_isolation(python: str | None = None, network_namespace: bool | None = None,
                    run_as_nobody: bool | None = None) -> Isolation:
    """Which containment works on this machine (cached). ``None`` means "if available"."""
    with _probe_lock:
        return _probe(python or sys.executable, network_namespace, run_as_nobody)


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """A shared Sandbox with default limits (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sandbox()
        return _default


__all__ = ["Sandbox", "Limits", "ExecResult", "Isolation", "SandboxError", "probe_isolation",
           "default_sandbox"]

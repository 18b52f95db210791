"""The sandbox's child program: contains itself, then runs one untrusted program and its tests.

Run by path, never imported into the child: ``python -I -S -B child.py --child JOB_FD
REPORT_FD`` (or the bytecode compiled from this file; see ``runner._child_entry``). It
uses the standard library only and imports nothing from slm_tasks. The parent
(:mod:`slm_tasks.sandbox.runner`) imports it only for the exit codes and clone flags.

Order of a run: read the job (program, tests, limits, nonce) from ``JOB_FD``; apply the
rlimits, drop to ``nobody``, enter a user+network namespace (``_contain``); remove the
Python-level signal installers; start the thread that will run the program; register the
audit hooks (``_install_hook``) and refuse further threads; then that thread runs the
program, then the tests, and ends the process with a report line on ``REPORT_FD``, while
the main thread only waits.
"""

from __future__ import annotations

import os
import sys

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
RC_PASSED, RC_FAILED, RC_BLOCKED, RC_HARNESS = 0, 1, 3, 4

# Audit events that end the program at once (exact names, then prefixes).
_BLOCKED = frozenset(
    {
        # processes: no forks means no fork bombs, no escaping the process group, and no
        # "one fork per guess" search that lets some branch pass the tests
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
        # other processes, the host included
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "os.pidfd_open",
        # reaching the harness's internals or changing control flow behind its back
        "sys._current_frames",
        "sys._current_exceptions",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys.settrace",
        "sys.setprofile",
        "sys.addaudithook",
        "sys.monitoring.register_callback",
        "cpython.run_command",
        "cpython.remote_debugger_script",
        "sys.remote_exec",
        # raising our limits, leaving our namespaces
        "resource.setrlimit",
        "resource.prlimit",
        "os.unshare",
        "os.setns",
        # links could point outside the sandbox directory
        "os.symlink",
        "os.link",
        # hand-made code objects are the usual first step of interpreter-memory exploits
        "code.__new__",
        "urllib.Request",
        "ftplib.connect",
        "http.client.connect",
        "smtplib.connect",
        "webbrowser.open",
        "nntplib.connect",
        "poplib.connect",
        "imaplib.open",
        "telnetlib.Telnet.open",
        # a second thread could turn the garbage collector back on while the hook runs (see
        # _install_hook); a subinterpreter has none of this interpreter's audit hooks
        "_thread.start_new_thread",
        "_thread.start_joinable_thread",
        "cpython.PyInterpreterState_New",
    }
)
_BLOCKED_PREFIXES = (
    "socket.",
    "ctypes.",
    "_ctypes.",
    "ssl.",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "winreg.",
    "_winapi.",
)
# Events that change the file system: event -> (indices of path arguments that must be
# inside the sandbox directory, indices of dir_fd arguments that must be unset).
_WRITE_EVENTS = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.mkdir": ((0,), (2,)),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.truncate": ((0,), ()),
    "os.utime": ((0,), (3,)),
    "os.mkfifo": ((0,), (2,)),
    "os.mknod": ((0,), (3,)),
    "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "shutil.rmtree": ((0,), (1,)),
    "shutil.copyfile": ((1,), ()),
    "shutil.copymode": ((1,), ()),
    "shutil.copystat": ((1,), ()),
    "shutil.move": ((0, 1), ()),
    "shutil.chown": ((0,), ()),
    "os.chdir": ((0,), ()),
}
# Modules refused at import, by exact name or by the last part of a dotted one (a native
# module's init function is found by that part): signal handlers would run inside the hook;
# _posixsubprocess starts processes without an audit event; the interpreter modules run code
# where no hook is; CPython's test helpers (_testcapi...) reach into the interpreter.
_REFUSED_IMPORTS = frozenset(
    {
        "signal",
        "_signal",
        "_posixsubprocess",
        "_xxsubinterpreters",
        "_xxinterpchannels",
        "_interpreters",
        "_interpchannels",
        "_interpqueues",
    }
)
_REFUSED_IMPORT_PREFIXES = ("_test",)
_READ_EVENTS = frozenset({"os.listdir", "os.scandir", "glob.glob", "glob.glob/2", "os.getxattr", "os.listxattr"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _child_main() -> None:
    """Entry of the child: read the job, contain ourselves, run program then tests, report."""
    job_fd, report_fd = int(sys.argv[2]), int(sys.argv[3])
    import _thread
    import marshal

    _exit, rc_failed = os._exit, RC_FAILED
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
    guarded, nonce = job["audit_hook"], job.pop("nonce").encode()
    if guarded:
        _disarm_signals()
    # The Python installation stays readable (imports) even inside a denied home.
    allow = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix)}
    # The program runs in a second thread: CPython installs and runs Python-level signal
    # handlers only in the main thread, which from here on only waits (in C), so no copy of
    # the _signal module lets the program put a handler inside the hook. Started before the
    # hook, which refuses new threads; it waits for the hook before running anything.
    go, done = _thread.allocate_lock(), _thread.allocate_lock()
    go.acquire()
    done.acquire()
    try:
        _thread.start_new_thread(
            _program_thread, (go, done, job["program"], job["tests"], report_fd, frozenset(job["expose"]))
        )
    except Exception as exc:  # RLIMIT_NPROC counts threads too
        os.write(report_fd, f"HARNESS no thread for the program: {type(exc).__name__}: {exc}\n".encode())
        os._exit(RC_HARNESS)
    if guarded:
        _install_hook(nonce, report_fd, job["root"], tuple(job["deny_read"]), tuple(allow))
        _no_threads()
    del job, nonce
    go.release()
    done.acquire()
    _exit(rc_failed)  # _run ends the process itself; getting here means it was subverted


def _program_thread(go, done, program: str, tests: str, report_fd: int, expose: frozenset) -> None:
    go.acquire()
    try:
        _run(program, tests, report_fd, expose)
    finally:
        done.release()


def _no_threads() -> None:
    """Why: no second thread may run while the hook does (it could turn the garbage collector
    back on there); Python 3.11 raises no audit event for a new thread, so its starters are
    replaced by one that raises the event the hook refuses."""
    import _thread

    _audit = sys.audit

    def start_new_thread(*args, **kwargs):
        _audit("_thread.start_new_thread")  # refused by the hook, the same on every version
        raise RuntimeError("can't start new thread")

    for name in ("start_new_thread", "start_new", "start_joinable_thread"):
        if name in _thread.__dict__:
            setattr(_thread, name, start_new_thread)


# ---------------------------------------------------------------------------------------
# Containment by the OS (before anything untrusted runs)
# ---------------------------------------------------------------------------------------


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
    ``_signal``; re-importing it is blocked by the hook, and a copy made another way
    installs nothing outside the main thread, where the program never runs."""
    import _signal

    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    for name in (
        "signal",
        "setitimer",
        "alarm",
        "set_wakeup_fd",
        "raise_signal",
        "pthread_kill",
        "siginterrupt",
        "pthread_sigmask",
        "sigwait",
        "sigwaitinfo",
        "sigtimedwait",
    ):
        _signal.__dict__.pop(name, None)


# ---------------------------------------------------------------------------------------
# The audit hooks: one factory per kind of guard, composed by _install_hook
#
# Every factory runs at install time, before untrusted code, and binds everything its
# closures use: the os and sys functions, the builtins (len, type, str, OSError...), the
# exit codes and private copies of the module's tables. Nothing reachable from the program
# (this module is ``__main__`` in the child, the builtins module, os...) changes what the
# guards do or makes them run a Python function of the program. The guard hook calls each
# guard directly: frame 0 is the guard, 1 the hook, 2 the code that raised the event.
# ---------------------------------------------------------------------------------------


def _make_stop(report_fd: int):
    """Why: one way out for every guard, telling the parent which call was blocked."""
    _write, _exit, rc_blocked = os.write, os._exit, RC_BLOCKED

    def stop(what: str):
        _write(report_fd, b"BLOCKED " + what.encode("utf-8", "replace")[:300] + b"\n")
        _exit(rc_blocked)

    return stop


def _make_resolve():
    """Why: checks must see through ``..`` and symlinks without os.path (Python code the program can patch)."""
    _getcwd, _lstat, _readlink = os.getcwd, os.lstat, os.readlink
    _type, _str, _bytes, _OSError = type, str, bytes, OSError

    def resolve(path):
        """Absolute, symlink-free form of ``path`` (str), from C calls only."""
        if _type(path) is _bytes:
            path = path.decode("utf-8", "surrogateescape")
        if _type(path) is not _str:
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
            except _OSError:
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

    return resolve


def _make_path_rules(root: str, deny_read: tuple, allow_read: tuple):
    """Why: writes stay in the sandbox directory; the host's home and procfs stay unreadable."""
    _stat, _OSError = os.stat, OSError
    root_prefix = root.rstrip("/") + "/"
    proc_dev = _stat("/proc").st_dev if os.path.isdir("/proc") else None
    deny = tuple(d.rstrip("/") for d in deny_read if d and d != "/")
    allow = tuple(a.rstrip("/") + "/" for a in allow_read)

    def inside(p):
        return p is not None and (p == root or p.startswith(root_prefix))

    def writable(p):  # what open() may write to; removing or chmod-ing /dev/null is another matter
        return p == "/dev/null" or inside(p)

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
            except _OSError:
                pass
        return True

    return inside, writable, readable


def _frame_guards(stop, state: dict):
    """Why: from 3.13 on frame.f_locals writes through (PEP 667): the harness's frame could rewrite its tests."""
    # There, frames are off limits (the standard library uses sys._getframemodulename
    # instead); the harness guards set state["own"] while they read a frame themselves.
    _len, _type, _str = len, type, str
    frames_locked = sys.version_info >= (3, 13)
    frame_attrs = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})

    def on_getframe():
        if frames_locked and not state["own"]:
            stop("sys._getframe (frames are writable from Python 3.13 on)")

    def on_getattr(args):
        if frames_locked and _len(args) > 1 and _type(args[1]) is _str and args[1] in frame_attrs:
            stop("frame access (" + args[1] + ")")

    return on_getframe, on_getattr


def _import_guard(stop, resolve, allow_read: tuple):
    """Why: some modules undo the other guards; a program's own shared object would run native code unguarded."""
    _len, _type, _str = len, type, str
    allow = tuple(a.rstrip("/") + "/" for a in allow_read)
    refused, refused_prefixes = frozenset(_REFUSED_IMPORTS), tuple(_REFUSED_IMPORT_PREFIXES)

    def on_import(args):
        name = args[0] if args else None
        path = args[1] if _len(args) > 1 else None
        # _imp.create_dynamic passes the spec's name and origin as they are: a str subclass
        # could show one path here and load another
        if _type(name) is not _str or (path is not None and _type(path) is not _str):
            stop("import with a name or path that is not a str")
        last = name.rpartition(".")[2]
        if name in refused or last in refused or last.startswith(refused_prefixes):
            # Python-level signal handlers run at arbitrary points, the hook's own frame
            # included; the program gets no way to install them. The others: see _REFUSED_IMPORTS.
            stop("import of " + name)
        # Native extensions only from the Python installation: a shared object the
        # program wrote itself would run native code outside every guard.
        if path is not None and not path.endswith(".py"):
            p = resolve(path)
            if p is None or not p.startswith(allow):
                stop("import of native code from " + _str(p))

    return on_import


def _open_guard(stop, resolve, writable, readable, inside):
    """Why: open() could write outside the directory, read the host's secrets, or give a directory fd to escape by."""
    _stat, _len, _type, _int, _str, _OSError = os.stat, len, type, int, str, OSError
    write_flags = _WRITE_FLAGS

    def on_open(args):
        path, flags = args[0], args[2] if _len(args) > 2 else 0
        if _type(path) is _int:
            return
        if _type(flags) is not _int:
            flags = write_flags
        p = resolve(path)
        if flags & write_flags:
            if not writable(p):
                stop("open for writing outside the sandbox: " + _str(p))
        elif not readable(p):
            stop("open of a protected path: " + _str(p))
        elif not inside(p):
            try:  # a directory fd outside would let dir_fd-relative calls escape
                if _stat(p).st_mode & 0o170000 == 0o040000:
                    stop("open of a directory outside the sandbox: " + p)
            except _OSError:
                pass

    return on_open


def _write_guard(stop, resolve, inside):
    """Why: removes, renames, chmod and chdir must not reach past the sandbox directory, by path, fd or dir_fd."""
    _readlink, _len, _type, _int, _str, _bytes, _OSError = os.readlink, len, type, int, str, bytes, OSError
    write_events = dict(_WRITE_EVENTS)  # a private copy: the module's dict is the program's to change

    def fd_path(fd):
        # fchmod, fchown, futimes, fsetxattr, fchdir... name no path: the fd's own does
        try:
            return _readlink("/proc/self/fd/" + _str(fd))
        except _OSError:
            return None

    def on_write(event, args):
        paths, dir_fds = write_events[event]
        for i in paths:
            if i < _len(args):
                a = args[i]
                if _type(a) is _str or _type(a) is _bytes:
                    p = resolve(a)
                elif _type(a) is _int:
                    p = fd_path(a)
                else:
                    continue
                if not inside(p):
                    stop(event + " outside the sandbox: " + _str(p))
        for i in dir_fds:
            if i < _len(args) and _type(args[i]) is _int and args[i] != -1:
                stop(event + " with dir_fd")

    return on_write, frozenset(write_events)


def _read_guard(stop, resolve, readable):
    """Why: listing a directory must not reveal what the host keeps in protected places."""
    _type, _str, _bytes = type, str, bytes

    def on_read(event, args):
        a = args[0] if args else None
        if _type(a) is _str or _type(a) is _bytes:
            if not readable(resolve(a)):
                stop(event + " of a protected path")

    return on_read


def _builtin_guard(stop):
    """Why: _imp.create_builtin makes a second copy of a built-in module, with what was taken
    out of the first (_thread's starters, on Python 3.11 the only barrier to a new thread)."""
    import _imp

    _create, _namespace, _audit = _imp.create_builtin, type(sys.implementation), sys.audit
    _len, _type, _str, _list = len, type, str, list
    shared = {name: sys.modules[name] for name in ("_thread", "_imp") if name in sys.modules}

    def create_builtin(spec):  # what the import system (and the program) calls from now on
        made = []
        _audit("slm.sandbox.create_builtin", spec.name, made)
        return made[0]

    def on_create_builtin(args):
        if _len(args) != 2 or _type(args[0]) is not _str or _type(args[1]) is not _list:
            stop("create_builtin with a name that is not a str")
        name = args[0]
        # only the hook holds the original: a spec of its own (a C type) names the module
        args[1].append(shared[name] if name in shared else _create(_namespace(name=name)))

    _imp.create_builtin = create_builtin
    return on_create_builtin


def _harness_guards(stop, state: dict, nonce: bytes, report_fd: int):
    """Why: only the genuine harness frame, once, after every test ran, writes the pass line (the nonce lives here)."""
    _write, _getframe = os.write, sys._getframe
    line = b"PASS " + nonce + b" " + str(os.getpid()).encode() + b"\n"  # no forks: the pid stays

    def on_start():
        if state["frame"] is not None:
            stop("harness restarted")
        state["own"] = True
        state["frame"] = _getframe(2)  # 0: on_start, 1: hook, 2: caller
        state["own"] = False

    def on_pass():
        state["own"] = True
        caller = _getframe(2)
        state["own"] = False
        if state["reported"] or state["frame"] is None or caller is not state["frame"]:
            stop("forged pass report")
        state["reported"] = True
        _write(report_fd, line)

    return on_start, on_pass


def _install_hook(nonce: bytes, report_fd: int, root: str, deny_read: tuple, allow_read: tuple) -> None:
    """Register the audit hooks that guard the run. Nothing outside the guards' closures keeps
    a reference to them or to the nonce, and every primitive they use is bound at install time,
    so the untrusted program can neither read nor patch them (gc, frame and tracing access is
    blocked). The guards only call C functions on exact ``str``/``bytes``/``int`` values, and
    the garbage collector is off while they run, so no Python code of the program runs while
    their frames are on the stack: no builtin it replaced, no finalizer, no gc callback, no
    signal handler (those run in the main thread only, which does not run the program)."""
    _write, _exit, _type, _str, _BaseException = os.write, os._exit, type, str, BaseException
    rc_blocked = RC_BLOCKED
    import gc

    _gc_disable, _gc_enable, _gc_isenabled = gc.disable, gc.enable, gc.isenabled
    # private copies: the module's tables are the program's to change
    blocked, prefixes, read_events = frozenset(_BLOCKED), tuple(_BLOCKED_PREFIXES), frozenset(_READ_EVENTS)
    state = {"frame": None, "reported": False, "own": False}
    stop = _make_stop(report_fd)
    resolve = _make_resolve()
    inside, writable, readable = _make_path_rules(root, deny_read, allow_read)
    on_getframe, on_getattr = _frame_guards(stop, state)
    on_import = _import_guard(stop, resolve, allow_read)
    on_open = _open_guard(stop, resolve, writable, readable, inside)
    on_write, write_events = _write_guard(stop, resolve, inside)
    on_read = _read_guard(stop, resolve, readable)
    on_start, on_pass = _harness_guards(stop, state, nonce, report_fd)
    on_create_builtin = _builtin_guard(stop)
    gc_was_on = [False]  # set by the gate, cleared by the outermost guard call
    depth = 0

    def gate(event, args):
        # Registered first, holding nothing worth reaching. From 3.12 on the interpreter
        # runs due work, a collection among it, at every function's first instruction (and
        # 3.12 even after gc.disable()): a collection that is due runs here, not in the
        # guard hook. Once the collector is off, none is scheduled until the guard hook
        # turns it back on.
        try:
            if _gc_isenabled():
                _gc_disable()
                gc_was_on[0] = True
        except _BaseException:  # as in the guard hook below, without a call more
            try:
                _write(report_fd, b"BLOCKED error inside the audit hook\n")
            except _BaseException:
                pass
            _exit(rc_blocked)

    def hook(event, args):
        # Any exception inside the checks (RecursionError near the recursion limit,
        # MemoryError near the memory limit...) would carry this closure's frame to the
        # program in its traceback: end the process instead.
        nonlocal depth
        try:
            depth += 1
            if _type(event) is not _str:  # a str subclass could run code in __eq__/__hash__
                stop("audit event of type " + _type(event).__name__)
            elif event == "sys._getframe":
                on_getframe()
            elif event == "object.__getattr__":
                on_getattr(args)
            elif event == "compile":
                pass
            elif event == "import":
                on_import(args)
            elif event in blocked or event.startswith(prefixes):
                stop(event)
            elif event == "open":
                on_open(args)
            elif event in write_events:
                on_write(event, args)
            elif event in read_events:
                on_read(event, args)
            elif event == "slm.sandbox.start":
                on_start()
            elif event == "slm.sandbox.pass":
                on_pass()
            elif event == "slm.sandbox.create_builtin":
                on_create_builtin(args)
            depth -= 1
            if not depth and gc_was_on[0]:  # nested events (the harness's own _getframe) leave it off
                gc_was_on[0] = False
                _gc_enable()
        except _BaseException:
            try:
                _write(report_fd, b"BLOCKED error inside the audit hook\n")
            except _BaseException:
                pass
            _exit(rc_blocked)

    sys.addaudithook(gate)
    sys.addaudithook(hook)  # the gate saw this registration: turn the collector back on
    if gc_was_on[0]:
        gc_was_on[0] = False
        _gc_enable()


# ---------------------------------------------------------------------------------------
# The run: program, then tests, then the report
# ---------------------------------------------------------------------------------------


def _run(program: str, tests: str, report_fd: int, expose: frozenset = frozenset()) -> None:
    # Bind everything this function needs before untrusted code can patch modules.
    import builtins

    _write, _exit, _audit, _compile, _exec, _flush_ = os.write, os._exit, sys.audit, compile, exec, _make_flush()
    _BaseException, _type, _str, _dict = BaseException, type, str, dict
    rc_passed, rc_failed = RC_PASSED, RC_FAILED
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
        _exit(rc_failed)
        return  # never on to the pass report below, whatever became of _exit
    _flush_()
    _audit("slm.sandbox.pass")
    _exit(rc_passed)


def _make_flush():
    """Why: os._exit skips buffered output; whatever the program did to sys.stdout, try once."""
    _getattr, _BaseException, _sys = getattr, BaseException, sys

    def flush() -> None:
        for stream in ("stdout", "stderr"):
            try:
                _getattr(_sys, stream).flush()
            except _BaseException:
                pass

    return flush


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child_main()
    sys.exit("usage: run through slm_tasks.sandbox.Sandbox, not directly")

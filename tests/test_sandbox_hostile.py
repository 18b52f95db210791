"""Hostile programs (tests/hostile/*.py) are contained, and none of them can pass.

Each file holds a program, then a ``# ---- tests ----`` line, then the tests run after it.
``$name`` placeholders are filled in per run (canary paths, a port, the host's pid). After
every program the host is checked: the canary files outside the sandbox are intact, the
secret never reached the program, the sandbox directory is gone.
"""

import os
import signal
import socket
import string
import threading
import time
from pathlib import Path

import pytest

from slm_tasks.sandbox import Limits, Sandbox, probe_isolation

CORPUS = Path(__file__).parent / "hostile"
MARK = "# ---- tests ----\n"
SECRET = "canary-secret-7f3a9c"

# file -> the statuses it may end with, and a fragment its reason must contain.
EXPECTED = {
    "infinite_loop": ({"timeout"}, "timeout"),
    "infinite_loop_catching_everything": ({"timeout"}, "timeout"),
    "signal_handlers": ({"blocked"}, "import of signal"),
    "shadow_builtins_in_globals": ({"failed"}, "AssertionError"),
    "exception_from_hook": ({"blocked"}, "error inside the audit hook"),
    "signal_handlers_raw": ({"failed"}, "AttributeError"),
    "signal_module_reimport": ({"blocked"}, "import of _signal"),
    "fork_bomb": ({"blocked"}, "os.fork"),
    # both import `signal` first, which is refused before any process is created
    "fork_bomb_subprocess": ({"blocked"}, "import of signal"),
    "fork_bomb_multiprocessing": ({"blocked"}, "import of signal"),
    "memory_bomb": ({"memory"}, "memory"),
    "deep_recursion": ({"killed", "failed", "memory", "timeout"}, ""),
    "write_outside": ({"blocked"}, "outside the sandbox"),
    "delete_outside": ({"blocked"}, "outside the sandbox"),
    "delete_outside_relative": ({"blocked"}, "os.chdir outside the sandbox"),
    "read_secrets": ({"blocked"}, "protected path"),
    "network_connect": ({"blocked"}, "socket."),
    "kill_parent": ({"blocked"}, "os.kill"),
    "close_stdout_wrong": ({"failed"}, "AssertionError"),
    "flood_output": ({"failed"}, "File too large"),
    "sys_exit_zero": ({"failed"}, "SystemExit: 0"),
    "os_exit_zero": ({"failed"}, "exited 0 without finishing the tests"),
    "os_exit_zero_during_tests": ({"failed"}, "exited 0 without finishing the tests"),
    "redefine_builtins": ({"failed"}, "AssertionError"),
    "patch_modules": ({"failed"}, "AssertionError"),
    "patch_checker": ({"failed"}, "AssertionError"),
    "fake_pass_marker": ({"failed"}, "exited 0 without finishing the tests"),
    "steal_nonce_frames": ({"failed"}, "exited 0 without finishing the tests"),
    "forge_pass_event": ({"blocked"}, "forged pass report"),
    "forge_harness_copy": ({"blocked"}, "harness restarted"),
    "gc_introspection": ({"blocked"}, "gc.get_objects"),
    "ctypes_escape": ({"blocked"}, "ctypes."),
    "raise_limits": ({"blocked"}, "resource.setrlimit"),
    "proc_self_mem": ({"blocked"}, "protected path"),
    "settrace_skip_asserts": ({"blocked"}, "sys.settrace"),
    "swallow_tests": ({"failed"}, "SyntaxError"),
    "raise_base_exception": ({"failed"}, "KeyboardInterrupt"),
    # 3.11/3.12: the writes do not reach the running frame; 3.13+: frame access is refused
    "rewrite_harness_locals": ({"failed", "blocked"}, ""),
    # the hooks keep their own copies of the harness module's tables and exit codes
    "clear_write_events": ({"blocked"}, "os.remove outside the sandbox"),
    "rebind_exit_codes": ({"blocked"}, "os.remove outside the sandbox"),
    # no Python code of the program runs while a hook's frame is on the stack
    "builtins_called_by_the_hook": ({"blocked"}, "os.remove outside the sandbox"),
    "shadow_exception_classes": ({"failed"}, "AssertionError"),
    "gc_during_hook": ({"failed"}, "AssertionError"),
    "signal_handler_second_module": ({"failed"}, "signal only works in main thread"),
    "thread_reenables_gc": ({"blocked"}, "_thread.start_new_thread"),
    "thread_second_module": ({"blocked"}, "_thread.start_new_thread"),
    "recursion_limit_at_every_depth": ({"blocked"}, "error inside the audit hook"),
    # ways around the audit events and the path rules
    "subinterpreter": ({"blocked"}, "import of _interpreters"),
    "subinterpreter_testcapi": ({"blocked"}, "import of _testcapi"),
    "spawn_posixsubprocess": ({"blocked"}, "import of _posixsubprocess"),
    "native_code_str_subclass": ({"blocked"}, "import with a name or path that is not a str"),
    "fd_metadata_outside": ({"blocked"}, "os.utime outside the sandbox"),
    "dev_null_metadata": ({"blocked"}, "os.utime outside the sandbox: /dev/null"),
}


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.stem for p in CORPUS.glob("*.py")) == sorted(EXPECTED)


class Listener:
    """A TCP server on the host's loopback that records every connection it gets."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                self.accepted.append(conn.recv(100))
            except OSError:
                self.accepted.append(b"")
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    base = tmp_path_factory.mktemp("host")
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRET)
    outside = base / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("canary")
    roots = base / "sandboxes"
    roots.mkdir()
    listener = Listener()
    old = {k: os.environ.get(k) for k in ("HOME", "SLM_TEST_SECRET")}
    os.environ["HOME"] = str(home)  # the host's home holds the secret key
    os.environ["SLM_TEST_SECRET"] = SECRET
    try:
        sandbox = Sandbox(limits=Limits(timeout_s=2, memory_bytes=512 << 20), tmp_root=str(roots))
        yield {"sandbox": sandbox, "home": home, "outside": outside, "roots": roots, "listener": listener}
    finally:
        listener.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load(name, host):
    text = (CORPUS / f"{name}.py").read_text()
    program, _, tests = text.partition(MARK)
    values = {
        "canary": host["outside"] / "canary.txt",
        "outside_dir": host["outside"],
        "secret_path": host["home"] / ".ssh" / "id_rsa",
        "secret_dir": host["home"] / ".ssh",
        "port": host["listener"].port,
        "host_pid": os.getpid(),
    }
    fill = lambda s: string.Template(s).substitute({k: str(v) for k, v in values.items()})  # noqa: E731
    return fill(program), fill(tests)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_program_is_contained(host, name):
    statuses, fragment = EXPECTED[name]
    program, tests = load(name, host)
    started = time.monotonic()
    result = host["sandbox"].run(program, tests)

    assert not result.passed, f"{name} passed: {result}"
    assert result.status in statuses, result
    assert fragment in result.reason, result
    # bounded: the timeout plus process start and teardown; the margin is for a machine busy
    # with other jobs (where starting Python alone can take seconds), not for a hang
    assert time.monotonic() - started < 2 + 20
    # the host is unharmed
    assert (host["outside"] / "canary.txt").read_text() == "canary"
    assert (host["home"] / ".ssh" / "id_rsa").read_text() == SECRET
    assert os.listdir(host["roots"]) == []
    for text in (result.stdout, result.stderr, result.reason):
        assert SECRET not in text
    assert host["listener"].accepted == []
    assert len(result.stdout) <= host["sandbox"].limits.max_output_bytes + 100


def test_the_secret_search_saw_a_clean_environment_and_a_fake_home(host):
    program, tests = load("read_secrets", host)
    result = host["sandbox"].run(program, tests)
    env_line = next(ln for ln in result.stdout.splitlines() if ln.startswith("ENV"))
    assert "SLM_TEST_SECRET" not in env_line and str(host["home"]) not in env_line
    assert "'HOME'" in env_line  # HOME is there, and it is the sandbox directory


def test_a_correct_program_that_closes_its_streams_still_passes(host):
    program, tests = load("close_stdout_wrong", host)
    result = host["sandbox"].run(program.replace("return a - b", "return a + b"), tests)
    assert result.passed, result


def test_the_same_tampering_with_a_correct_solution_is_judged_on_the_tests_alone(host):
    # Tampering does not make a pass impossible by itself: only the tests decide.
    program, tests = load("redefine_builtins", host)
    result = host["sandbox"].run(program.replace("return 42.0", "return abs(b - a)"), tests)
    assert result.passed, result


@pytest.mark.skipif(not probe_isolation().netns, reason="no user+network namespace on this machine")
def test_the_network_namespace_alone_stops_connections(host):
    # OS layer only (no audit hook): the loopback inside the namespace is down.
    sb = Sandbox(limits=Limits(timeout_s=5), tmp_root=str(host["roots"]), audit_hook=False)
    program = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {host['listener'].port}), timeout=2).sendall(b'x')\n"
        "    print('CONNECTED')\n"
        "except OSError as exc:\n"
        "    print('REFUSED', exc.errno)\n"
    )
    result = sb.run(program, "")
    assert "REFUSED" in result.stdout, result
    assert host["listener"].accepted == []
    assert not result.passed  # without the hook nothing can ever pass


def test_a_timeout_kills_the_whole_process_group(host):
    # OS layer only: a grandchild that outlives its parent is killed with the group.
    sb = Sandbox(limits=Limits(timeout_s=1.5), tmp_root=str(host["roots"]), audit_hook=False)
    program = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    while True: time.sleep(0.01)\n"
        "print(pid, flush=True)\n"
        "while True: pass\n"
    )
    result = sb.run(program, "")
    assert result.status == "timeout"
    grandchild = int(result.stdout.split()[0])
    deadline = time.monotonic() + 30  # a bound only: a killed process ends at once
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{grandchild}/stat").read_text().split(")")[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail(f"grandchild {grandchild} survived the timeout")


SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.path.exists(p)), None)


@pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None, reason="needs a root host and a system Python")
def test_on_a_root_host_a_world_readable_python_runs_the_child_as_nobody(tmp_path):
    if probe_isolation(SYSTEM_PYTHON).drop_to_uid is None:
        pytest.skip(f"{SYSTEM_PYTHON} cannot import its standard library as nobody")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "canary").write_text("canary")
    # OS layer only (no audit hook): the kernel itself refuses the host's files and pid.
    sb = Sandbox(python=SYSTEM_PYTHON, limits=Limits(timeout_s=5), tmp_root=str(tmp_path), audit_hook=False)
    program = (
        "import os, resource\n"
        "print(os.getuid(), resource.getrlimit(resource.RLIMIT_NPROC)[0])\n"
        f"for attempt in (lambda: open({str(private / 'canary')!r}, 'a'), lambda: os.kill(os.getppid(), 0)):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('ALLOWED')\n"
        "    except OSError as exc:\n"
        "        print('denied', exc.errno)\n"
    )
    result = sb.run(program, "")
    assert result.stdout.split("\n")[:3] == ["65534 64", "denied 13", "denied 1"], result
    assert (private / "canary").read_text() == "canary"
    with_hook = Sandbox(python=SYSTEM_PYTHON, limits=Limits(timeout_s=5), tmp_root=str(tmp_path))
    assert with_hook.run("def f():\n    return 1\n", "assert f() == 1").passed


def _other_interpreters():
    """Other CPython 3.11+ interpreters on this machine (the frame rules differ by version)."""
    import glob
    import shutil
    import subprocess
    import sys

    found = {"%d.%d" % sys.version_info[:2]: os.path.realpath(sys.executable)}  # noqa: UP031
    names = [shutil.which(f"python3.{m}") for m in range(11, 16)]
    names += glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3.1?"))
    for path in filter(None, names):
        real = os.path.realpath(path)
        if "/shims/" in real or real in found.values():  # version-manager shims: slow, redundant
            continue
        try:
            out = subprocess.run(
                [real, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except OSError:
            continue
        if out and tuple(map(int, out.split("."))) >= (3, 11):
            found.setdefault(out, real)
    found.pop("%d.%d" % sys.version_info[:2])  # noqa: UP031
    return sorted(found.items())


TAMPERING = [n for n, (statuses, _) in EXPECTED.items() if statuses <= {"failed", "blocked"}]


@pytest.mark.parametrize(
    "version, python",
    _other_interpreters()
    or [pytest.param(None, None, marks=pytest.mark.skip(reason="no other CPython 3.11+ on this machine"))],
)
def test_no_hostile_program_passes_under_other_python_versions(host, version, python):
    sb = Sandbox(python=python, limits=Limits(timeout_s=2, memory_bytes=512 << 20), tmp_root=str(host["roots"]))
    jobs = [load(name, host) for name in TAMPERING]
    results = sb.run_many(jobs)
    passed = [n for n, r in zip(TAMPERING, results) if r.passed]
    assert passed == [], f"Python {version}: {passed}"
    assert all(r.status in {"failed", "blocked"} for r in results)
    assert (host["outside"] / "canary.txt").read_text() == "canary"
    assert host["listener"].accepted == []
    assert sb.run("def f():\n    return 1\n", "assert f() == 1").passed

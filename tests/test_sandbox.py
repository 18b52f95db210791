"""The sandboxed executor: verdicts, limits, captured output, parallel runs.

Hostile programs are in test_sandbox_hostile.py; the benchmark reference solutions in
test_sandbox_references.py.
"""

import os

import pytest

from slm_tasks.sandbox import Limits, Sandbox, SandboxError, probe_isolation


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    return Sandbox(limits=Limits(timeout_s=5), tmp_root=str(tmp_path_factory.mktemp("sbx")))


def test_a_correct_program_passes_and_a_wrong_one_fails(sandbox):
    ok = sandbox.run("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n")
    assert ok.passed and ok.status == "passed" and ok.reason == "passed" and ok.returncode == 0
    bad = sandbox.run("def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5, 'add is wrong'\n")
    assert not bad.passed
    assert bad.status == "failed"
    assert bad.reason == "failed: AssertionError: add is wrong"


def test_failure_reasons_name_the_exception_and_the_phase(sandbox):
    r = sandbox.run("def f(:\n", "assert f() == 1")
    assert not r.passed and r.reason.startswith("failed (in the program): SyntaxError")
    r = sandbox.run("def f():\n    return 1\n", "assert g() == 1")
    assert r.reason == "failed: NameError: name 'g' is not defined"
    r = sandbox.run("raise ValueError('boom')", "")
    assert r.reason == "failed (in the program): ValueError: boom"


def test_tests_run_in_the_programs_namespace_and_can_import(sandbox):
    program = "import math\nfrom typing import List\n\ndef norm(v: List[float]) -> float:\n    return math.sqrt(sum(x * x for x in v))\n"  # noqa: E501
    tests = "import math\nassert math.isclose(norm([3.0, 4.0]), 5.0)\n"
    assert sandbox.run(program, tests).passed


def test_output_is_captured_and_bounded(tmp_path):
    sb = Sandbox(limits=Limits(timeout_s=5, max_output_bytes=100), tmp_root=str(tmp_path))
    r = sb.run("import sys\nprint('hello')\nprint('x' * 1000)\nsys.stderr.write('warn')\n", "")
    assert r.passed
    assert r.stdout.startswith("hello\nxxx")
    assert r.stdout.endswith("[... output truncated]")
    assert len(r.stdout) < 200
    assert r.stderr == "warn"


def test_main_blocks_do_not_run(sandbox):
    # as in lm-eval's code_eval: the program is not run as __main__
    r = sandbox.run("if __name__ == '__main__':\n    raise SystemExit(3)\n", "")
    assert r.passed


def test_the_environment_is_clean_and_home_is_the_sandbox(sandbox, monkeypatch):
    monkeypatch.setenv("SLM_TEST_TOKEN", "hunter2")
    r = sandbox.run("import os\nprint(sorted(os.environ))\nprint(os.environ['HOME'] == os.getcwd())\n", "")
    assert r.passed, r.reason
    assert "SLM_TEST_TOKEN" not in r.stdout and "hunter2" not in r.stdout
    assert r.stdout.splitlines()[1] == "True"


def test_each_program_gets_a_fresh_directory_that_is_removed_afterwards(tmp_path):
    sb = Sandbox(limits=Limits(timeout_s=5), tmp_root=str(tmp_path))
    r1 = sb.run("import os\nopen('left.txt', 'w').write('x')\nprint(os.listdir('.'))\n", "")
    r2 = sb.run("import os\nprint(os.listdir('.'))\n", "")
    assert r1.passed and r2.passed
    assert "left.txt" in r1.stdout and "left.txt" not in r2.stdout
    assert os.listdir(tmp_path) == []


def test_limits_are_applied_in_the_child(tmp_path):
    limits = Limits(timeout_s=3, memory_bytes=512 << 20, max_file_bytes=1 << 20, max_open_files=32)
    sb = Sandbox(limits=limits, tmp_root=str(tmp_path))
    r = sb.run(
        "import resource as r\n"
        "print(r.getrlimit(r.RLIMIT_AS)[0], r.getrlimit(r.RLIMIT_FSIZE)[0], "
        "r.getrlimit(r.RLIMIT_NOFILE)[0], r.getrlimit(r.RLIMIT_CPU)[0], r.getrlimit(r.RLIMIT_CORE)[0])\n",
        "",
    )
    assert r.passed, r.reason
    assert r.stdout.split() == [str(512 << 20), str(1 << 20), "32", "4", "0"]


def test_file_size_limit_stops_a_big_write(tmp_path):
    sb = Sandbox(limits=Limits(timeout_s=5, max_file_bytes=1 << 20), tmp_root=str(tmp_path))
    r = sb.run("open('big', 'wb').write(b'x' * (2 << 20))\n", "")
    assert not r.passed and "File too large" in r.reason


def test_run_many_keeps_input_order(sandbox):
    jobs = [(f"def f():\n    return {i}\n", f"assert f() == {i if i % 3 else -1}") for i in range(12)]
    results = sandbox.run_many(jobs)
    assert [r.passed for r in results] == [bool(i % 3) for i in range(12)]


def test_bad_limits_are_refused_with_the_field_name():
    with pytest.raises(SandboxError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(SandboxError, match="memory_bytes"):
        Limits(memory_bytes=0)


def test_isolation_probe_reports_what_this_machine_gives():
    iso = probe_isolation()
    assert isinstance(iso.netns, bool)
    if not iso.netns:
        assert any("namespace" in n for n in iso.notes)
    if os.geteuid() != 0:
        assert iso.drop_to_uid is None

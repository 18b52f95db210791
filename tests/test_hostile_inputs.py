"""Hostile inputs: odd files among the results, hostile GGUF headers, unknown model arguments.

Each case asserts the exit code (2 for bad input, or 0 where the input is skipped with a
note), the one line that names the thing, and the user's files unchanged afterwards. Cases
that would hang or exhaust memory if a reader were naive (a FIFO, a link to an endless
device) run the CLI in a subprocess with a timeout.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slm_tasks.adapters.model_args import ModelArgsError
from slm_tasks.adapters.models import ModelFileError, check_gguf
from slm_tasks.leaderboards.ingest import load_runs

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "schema": "slm-suite.board-spec/1",
    "name": "t",
    "domains": [
        {"name": "commonsense", "tasks": [{"task": "t_a"}, {"task": "t_b"}]},
    ],
}
GiB = 1 << 30
STAMP = "2026-01-01T00-00-00.000000"


def _synthetic():
    path = Path(__file__).with_name("test_leaderboard_synthetic.py")
    spec = importlib.util.spec_from_file_location("lb_synthetic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


synth = _synthetic()


@pytest.fixture()
def runs(tmp_path) -> Path:
    """A folder of two models' runs (results, samples) and a board spec beside it."""
    root = tmp_path / "runs"
    for model, correct in (("model-a", 14), ("model-b", 9)):
        outcomes = {"t_a": synth.outcomes(20, correct), "t_b": synth.outcomes(20, correct - 2)}
        synth.make_run(root, model, outcomes, stamp=STAMP)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    return root


def board_args(tmp_path, *inputs) -> list[str]:
    return [
        "leaderboard",
        *map(str, inputs),
        "--spec",
        str(tmp_path / "spec.yaml"),
        "--out",
        str(tmp_path / "board"),
        "--no-html",
    ]


def cli_subprocess(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``slm-suite ARGS`` in its own process: a reader that blocks fails the test, not the run."""
    code = "import sys; from slm_tasks.cli import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"slm-suite {' '.join(args[:2])} did not return within {timeout:.0f} s (blocked on an input?)")


def one_line(err: str) -> str:
    """The one error line."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    return lines[0]


# ---- results files and cost sidecars that are not regular files: refused, exit 2 --------------

HANGING = {
    "fifo": lambda p: os.mkfifo(p),
    "link to /dev/zero": lambda p: os.symlink("/dev/zero", p),
    "link to /dev/urandom": lambda p: os.symlink("/dev/urandom", p),
}
EXPECT_KIND = {
    "fifo": "a FIFO",
    "link to /dev/zero": "a link to a character device",
    "link to /dev/urandom": "a link to a character device",
}


@pytest.mark.parametrize("kind", sorted(HANGING))
@pytest.mark.parametrize("where", ["results", "cost sidecar"])
def test_results_that_would_block_or_never_end_are_refused_promptly(tmp_path, runs, user_files, kind, where):
    name = "results_2026-02-02T00-00-00.000000.json" if where == "results" else f"results_{STAMP}.cost.json"
    odd = runs / "model-a" / name
    HANGING[kind](odd)
    kept = user_files(tmp_path)
    t0 = time.monotonic()
    proc = cli_subprocess(board_args(tmp_path, runs))
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert str(odd) in line and EXPECT_KIND[kind] in line and "not a regular file" in line
    kept.assert_kept()
    assert not (tmp_path / "board").exists()


@pytest.mark.parametrize("where", ["results", "cost sidecar"])
@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: os.symlink(p.parent / "gone.json", p), "a link to a missing file"),
        (lambda p: p.mkdir(), "a directory"),
    ],
)
def test_results_entries_that_are_not_files_are_named(tmp_path, runs, user_files, slm_cli, where, make, expect):
    name = "results_2026-02-02T00-00-00.000000.json" if where == "results" else f"results_{STAMP}.cost.json"
    odd = runs / "model-a" / name
    make(odd)
    kept = user_files(tmp_path)
    res = slm_cli(*board_args(tmp_path, runs))
    if where == "results" and expect == "a directory":
        # a folder named like a results file is a folder: searched, and empty here
        assert res.code == 0, res.err
        kept.assert_kept(written={"board", *(f"board/{f}" for f in os.listdir(tmp_path / "board"))})
        return
    assert res.code == 2
    line = one_line(res.err)
    assert str(odd) in line and expect in line
    kept.assert_kept()


@pytest.mark.parametrize("where", ["results", "cost sidecar"])
def test_a_huge_sparse_file_is_refused_by_size_not_read(tmp_path, runs, user_files, slm_cli, where):
    name = "results_2026-02-02T00-00-00.000000.json" if where == "results" else f"results_{STAMP}.cost.json"
    big = runs / "model-b" / name
    big.unlink(missing_ok=True)
    kept = user_files(tmp_path)  # taken before the 1 GiB file exists: a snapshot would read it
    with open(big, "wb") as f:
        f.truncate(GiB)  # sparse: no disk used
    t0 = time.monotonic()
    res = slm_cli(*board_args(tmp_path, runs))
    assert time.monotonic() - t0 < 30
    assert res.code == 2
    line = one_line(res.err)
    assert str(big) in line and "1024 MiB" in line and "256 MiB" in line and str(GiB) in line
    assert big.stat().st_size == GiB and big.stat().st_blocks < 1024  # unchanged, still sparse
    big.unlink()
    kept.assert_kept(written={str(big.relative_to(tmp_path))})


@pytest.mark.parametrize(
    "content, expect",
    [
        (b'{"results": {"t_a": "\xff\xfe"}}', "not UTF-8 text"),
        (b'{"results": {"t_a": {"acc,none": 0.5', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "JSON nested too deeply"),
    ],
)
def test_results_that_are_not_json_text_are_one_line(tmp_path, runs, user_files, slm_cli, content, expect):
    bad = runs / "model-b" / "results_2026-02-02T00-00-00.000000.json"
    bad.write_bytes(content)
    kept = user_files(tmp_path)
    res = slm_cli(*board_args(tmp_path, runs))
    assert res.code == 2
    line = one_line(res.err)
    assert str(bad) in line and expect in line
    kept.assert_kept()


def test_a_fifo_swapped_in_after_the_check_does_not_block_the_open(tmp_path):
    """The race the check cannot close: the entry was a file when looked at, a FIFO when opened."""
    fifo = tmp_path / "results_x.json"
    os.mkfifo(fifo)
    code = (
        "import sys; from slm_tasks.results import inputs; from slm_tasks.errors import SLMError\n"
        "inputs.problem = lambda path: None  # the check saw a regular file\n"
        "try: inputs.read_json(sys.argv[1], 'lm-eval results file')\n"
        "except SLMError as e: print(e); sys.exit(2)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert str(fifo) in proc.stdout and "a FIFO, not a regular file" in proc.stdout


# ---- folders: link loops and links to folders ----------------------------------------------------


@pytest.mark.parametrize("pattern", [None, "{runs}/**/results_*.json", "{runs}/**"])
def test_link_loops_between_folders_end(tmp_path, runs, user_files, pattern):
    os.symlink(runs, runs / "model-a" / "loop")  # a link back to the top
    os.symlink(runs / "model-b", runs / "model-a" / "b-again")  # a second way into one folder
    kept = user_files(runs)
    target = str(runs) if pattern is None else pattern.format(runs=runs)
    proc = cli_subprocess(board_args(tmp_path, target))
    assert proc.returncode == 0, proc.stderr
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert sorted(r["model"] for r in board["rows"]) == ["model-a", "model-b"]  # each run once
    kept.assert_kept()


def test_a_linked_run_folder_is_read(tmp_path, runs, slm_cli, user_files):
    elsewhere = tmp_path / "elsewhere"
    (runs / "model-b").rename(elsewhere)
    os.symlink(elsewhere, runs / "model-b")
    kept = user_files(runs)
    res = slm_cli(*board_args(tmp_path, runs))
    assert res.code == 0, res.err
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    assert sorted(r["model"] for r in board["rows"]) == ["model-a", "model-b"]
    kept.assert_kept()


# ---- samples files: present but unreadable -> skipped with a note; broken -> refused ---------------

SAMPLES_ODD = {
    "fifo": (lambda p: os.mkfifo(p), "a FIFO"),
    "directory": (lambda p: p.mkdir(), "a directory"),
    "dangling link": (lambda p: os.symlink(p.parent / "gone.jsonl", p), "a link to a missing file"),
    "link to /dev/zero": (lambda p: os.symlink("/dev/zero", p), "a link to a character device"),
}


def _replace_samples(runs: Path, make) -> Path:
    p = runs / "model-a" / f"samples_t_a_{STAMP}.jsonl"
    p.unlink()
    make(p)
    return p


@pytest.mark.parametrize("kind", sorted(SAMPLES_ODD))
def test_an_unreadable_samples_file_is_skipped_with_a_note_naming_it(tmp_path, runs, user_files, kind):
    make, expect = SAMPLES_ODD[kind]
    odd = _replace_samples(runs, make)
    (run,) = [r for r in load_runs([runs]) if r.model == "model-a"]
    assert run.tasks["t_a"].samples_path is None and run.tasks["t_a"].samples() is None
    (note,) = run.notes
    assert f"model-a/{odd.name}:" in note and expect in note and "skipped" in note
    assert str(tmp_path) not in note  # notes are published: no local paths
    assert expect in run.tasks["t_a"].samples_problem
    kept = user_files(tmp_path)
    proc = cli_subprocess(board_args(tmp_path, runs))  # the board is built, promptly
    assert proc.returncode == 0, proc.stderr
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    row = next(r for r in board["rows"] if r["model"] == "model-a")
    assert row["tasks"]["t_a"]["value"] == pytest.approx(0.7)  # the task is still on the board
    assert any(f"model-a/{odd.name}:" in n and expect in n for n in board["notes"])  # and the skip is named
    kept.assert_kept(written={"board", *(f"board/{f}" for f in os.listdir(tmp_path / "board"))})


@pytest.mark.parametrize("kind", sorted(SAMPLES_ODD))
def test_the_gate_refuses_a_run_whose_samples_cannot_be_read(tmp_path, runs, user_files, kind):
    make, expect = SAMPLES_ODD[kind]
    odd = _replace_samples(runs, make)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "schema": "slm-suite.gate-policy/1",
                "spec": str(tmp_path / "spec.yaml"),
                "margins": {"default": 0.5},
                "tasks": ["t_a"],
            }
        )
    )
    kept = user_files(tmp_path)
    proc = cli_subprocess(
        ["gate", "--baseline", str(runs / "model-b"), "--candidate", str(runs / "model-a"), "--policy", str(policy)]
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = one_line(proc.stderr)
    assert "t_a" in line and "candidate" in line and odd.name in line and expect in line  # says why
    kept.assert_kept()


@pytest.mark.parametrize(
    "content, expect",
    [
        (b'{"doc_id": 0, "acc": 1.0, "x": "\xff"}\n', "line 1 is not UTF-8 text"),
        (b'{"doc_id": 0, "acc": 1.0}\n\xc3\x28\n', "line 2 is not UTF-8 text"),
        (b'{"doc_id": 0, "acc": 1.0}\nnot json\n', "line 2 is not an lm-eval sample"),
        (b"[" * 100000 + b"\n", "line 1 is not an lm-eval sample"),
    ],
)
def test_broken_samples_content_is_refused_naming_the_line(tmp_path, runs, user_files, slm_cli, content, expect):
    bad = runs / "model-a" / f"samples_t_a_{STAMP}.jsonl"
    bad.write_bytes(content)
    kept = user_files(tmp_path)
    res = slm_cli(*board_args(tmp_path, runs))
    assert res.code == 2
    line = one_line(res.err)
    assert str(bad) in line and expect in line
    kept.assert_kept()


def test_an_endless_samples_line_is_refused_by_length(tmp_path, runs, slm_cli):
    bad = runs / "model-a" / f"samples_t_a_{STAMP}.jsonl"
    with open(bad, "wb") as f:
        f.truncate(GiB)  # one sparse line of NUL bytes, no newline
    res = slm_cli(*board_args(tmp_path, runs))
    assert res.code == 2
    line = one_line(res.err)
    assert str(bad) in line and "line 1 is longer than 64 MiB" in line
    assert bad.stat().st_size == GiB


# ---- hostile GGUF headers: one line, ModelFileError, no traceback ---------------------------------


def _kv_string(key: bytes, value: bytes) -> bytes:
    return struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value


def _header(n_tensors: int, n_kv: int, body: bytes = b"", version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + body


def _key(vtype: int, *more: int) -> bytes:
    """One metadata key ``k`` of ``vtype``, followed by the uint32/uint64 fields ``more``
    (for an array: the element type, then the count)."""
    return (
        struct.pack("<Q", 1)
        + b"k"
        + struct.pack("<I", vtype)
        + b"".join(struct.pack("<I" if i == 0 else "<Q", m) for i, m in enumerate(more))
    )


def _nested_arrays(depth: int) -> bytes:
    """One key whose value is an array of an array of ... (``depth`` levels) of one uint8."""
    key = b"evil.nested"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)
    body += struct.pack("<IQ", 9, 1) * (depth - 1) + struct.pack("<IQ", 0, 1) + b"\x01"
    return _header(0, 1, body)


def _tensor(n_dims: int) -> bytes:
    name = b"w"
    return (
        struct.pack("<Q", len(name))
        + name
        + struct.pack("<I", n_dims)
        + struct.pack("<Q", 4) * n_dims
        + struct.pack("<IQ", 0, 0)
    )


HOSTILE_GGUF = {
    "arrays nested 100000 deep": (_nested_arrays(100_000), "nested deeper than 8 levels"),
    "arrays nested 9 deep": (_nested_arrays(9), "nested deeper than 8 levels"),
    "2^63 metadata keys": (_header(0, 2**63), "metadata key count 9223372036854775808 does not fit"),
    "2^40 tensors": (_header(2**40, 0), "tensor count 1099511627776 does not fit"),
    "string of 2^64-1 bytes": (
        _header(0, 1, struct.pack("<Q", 2**64 - 1) + b"k" * 32),
        "string length 18446744073709551615 does not fit",
    ),
    "array of 2^62 uint32": (_header(0, 1, _key(9, 4, 2**62)), "array element count 4611686018427387904 does not fit"),
    "array of 2^40 empty arrays": (_header(0, 1, _key(9, 9, 2**40)), "array element count 1099511627776 does not fit"),
    "unknown value type": (
        _header(0, 1, struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + b"\0" * 16),
        "unknown metadata value type 99",
    ),
    "unknown array element type": (_header(0, 1, _key(9, 4000, 1)), "unknown metadata value type 4000"),
    "alignment zero": (
        _header(0, 1, struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 0)),
        "general.alignment 0 is not a power of two",
    ),
    "alignment 3": (
        _header(0, 1, struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 3)),
        "general.alignment 3 is not a power of two",
    ),
    "tensor with 1000 dims": (_header(1, 0, _tensor(1000) + b"\0" * 64), "1000 dimensions"),
    "cut inside a key": (
        _header(0, 2, _kv_string(b"general.name", b"tiny") + struct.pack("<Q", 40) + b"gen"),
        "string length 40 does not fit the 3 bytes left",
    ),
    "cut inside a value": (
        _header(0, 1, struct.pack("<Q", 1) + b"k" + struct.pack("<I", 10) + b"\0\0"),
        "the file ends inside its header",
    ),
    "cut inside the counts": (b"GGUF" + struct.pack("<I", 3) + b"\0\0\0", "the file ends inside its header"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_GGUF))
def test_hostile_gguf_headers_are_one_line_errors(tmp_path, user_files, case):
    data, expect = HOSTILE_GGUF[case]
    f = tmp_path / "evil.gguf"
    f.write_bytes(data)
    kept = user_files(tmp_path)
    with pytest.raises(ModelFileError) as err:
        check_gguf(f)
    msg = str(err.value)
    assert "\n" not in msg and f"'{f}'" in msg and expect in msg and "Re-download" in msg
    kept.assert_kept()


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: os.symlink("/dev/zero", p), "not a regular file"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: os.symlink(p.parent / "gone.gguf", p), "cannot be read"),
    ],
)
def test_a_model_path_that_is_not_a_file_is_refused_without_blocking(tmp_path, make, expect):
    f = tmp_path / "odd.gguf"
    make(f)
    code = (
        "import sys; from slm_tasks.adapters.models import check_gguf, ModelFileError\n"
        "try: check_gguf(sys.argv[1])\nexcept ModelFileError as e: print(e); sys.exit(2)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and expect in proc.stdout and str(f) in proc.stdout


def test_a_hostile_gguf_through_the_cli_is_exit_2(tmp_path, mirror, user_files, slm_cli):
    f = tmp_path / "evil.gguf"
    f.write_bytes(_nested_arrays(50_000))
    kept = user_files(tmp_path)
    res = slm_cli(
        "run",
        "--model",
        f,
        "--limit",
        "1",
        "--tasks",
        "slm_arc_easy_lite",
        "--no-leaderboard",
        "--no-store",
        "--output-path",
        tmp_path / "out",
    )
    assert res.code == 2
    line = one_line(res.err)
    assert "nested deeper than 8 levels" in line and str(f) in line
    kept.assert_kept()
    assert not (tmp_path / "out").exists()


# ---- model arguments: unknown names and bad values refused before anything loads ---------------

CLI_BAD_ARGS = [
    ("n_thread=1", "unknown model argument 'n_thread'; did you mean 'n_threads'?"),
    ("dequantize=stored", "unknown model argument 'dequantize'; did you mean 'dequantise'?"),
    ("prefix_cache=maybe", "prefix_cache='maybe' is not true or false"),
    ("dequantise=f8", "left out, it computes on a f16 copy"),
    ("n_threads=two", "n_threads='two' is not a whole number"),
]


@pytest.mark.parametrize("arg, expect", CLI_BAD_ARGS)
def test_bad_model_args_through_slm_suite_run(tmp_path, mirror, user_files, slm_cli, arg, expect):
    (tmp_path / "notes.txt").write_text("mine")
    kept = user_files(tmp_path)
    t0 = time.monotonic()
    res = slm_cli(
        "run",
        "--model-args",
        arg,
        "--limit",
        "1",
        "--tasks",
        "slm_arc_easy_lite",
        "--no-leaderboard",
        "--no-store",
        "--output-path",
        tmp_path / "out",
    )
    assert res.code == 2
    line = one_line(res.err)
    assert expect in line, line
    assert time.monotonic() - t0 < 120
    kept.assert_kept()
    assert not (tmp_path / "out").exists()


def test_the_refusal_lists_the_known_names():
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    with pytest.raises(ModelArgsError) as err:
        LlamaCppLM.create_from_arg_string("model=smollm2-135m,n_thread=1")
    msg = str(err.value)
    assert msg.startswith("slm-llamacpp: unknown model argument 'n_thread'")
    for name in ("n_threads", "n_ctx", "prefix_cache", "dequantise", "store", "device", "batch_size"):
        assert name in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "args, expect",
    [
        ("model=nope.gguf,n_thread=1", "did you mean 'n_threads'"),
        ("model=nope.gguf,dequantize=stored", "did you mean 'dequantise'"),
        ("model=nope.gguf,prefix_cache=maybe", "prefix_cache='maybe'"),
        ("model=nope.gguf,verbose=sometimes", "verbose='sometimes'"),
        ("model=nope.gguf,n_ctx=1.5", "n_ctx=1.5 is not a whole number"),
        ("model=nope.gguf,ray_workers=all", "ray_workers='all'"),
        ("model=nope.gguf,zzz=1", "unknown model argument 'zzz'; known:"),
    ],
)
def test_lm_evals_own_path_refuses_before_the_model_file_is_looked_at(args, expect):
    """lm_eval --model slm-llamacpp --model_args ... : lm-eval's create_from_arg_string with the
    additional config it always passes. The model file does not exist: the argument is judged first."""
    import lm_eval.api.registry as registry

    cls = registry.get_model("slm-llamacpp")
    with pytest.raises(ModelArgsError, match=expect):
        cls.create_from_arg_string(args, {"batch_size": 1, "max_batch_size": None, "device": "cuda:0"})


def test_lm_evals_generic_args_are_accepted():
    """What lm-eval itself adds (batch_size, max_batch_size, device, trust_remote_code) passes the
    check: the error is then about the missing model file, not about an argument."""
    import lm_eval.api.registry as registry

    cls = registry.get_model("slm-llamacpp")
    with pytest.raises(ModelFileError, match="nope.gguf"):
        cls.create_from_arg_obj(
            {"model": "nope.gguf", "trust_remote_code": True, "prefix_cache": "no"},
            {"batch_size": "auto", "max_batch_size": 64, "device": "cpu"},
        )


@pytest.mark.parametrize(
    "kwargs, expect",
    [
        (dict(n_thread=1), "did you mean 'n_threads'"),
        (dict(dequantize="stored"), "did you mean 'dequantise'"),
        (dict(prefix_cache="maybe"), "prefix_cache='maybe'"),
        (dict(dequantise="int4"), "stored (compute in the stored format); left out, it computes on a f16 copy"),
    ],
)
def test_the_python_api_refuses_too(kwargs, expect):
    from slm_tasks.adapters.llamacpp import LlamaCppLM
    from slm_tasks.errors import SLMError

    with pytest.raises(SLMError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        LlamaCppLM(model="nope.gguf", **kwargs)


@pytest.mark.parametrize(
    "args, expect",
    [
        ({"pretrained": "/m", "tensor_parallel_size": "two"}, "tensor_parallel_size='two' is not a whole number"),
        ({"pretrained": "/m", "add_bos_token": "maybe"}, "add_bos_token='maybe' is not true or false"),
        ({"pretrained": "/m", "gpu_memory_utilization": "most"}, "gpu_memory_utilization='most' is not a number"),
    ],
)
def test_slm_vllm_checks_its_values_before_the_engine(args, expect):
    from slm_tasks.adapters.vllm import VLLMLM

    with pytest.raises(ModelArgsError, match=expect):
        VLLMLM.create_from_arg_obj(args, {"batch_size": 1, "device": "cuda"})


def test_slm_vllm_refuses_names_that_neither_it_nor_vllm_know(monkeypatch):
    """Names slm-vllm does not use go to vllm.LLM when the installed vLLM's EngineArgs has
    them; the field names here stand in for an installed vLLM's."""
    from slm_tasks.adapters.vllm import VLLMLM

    engine_args = frozenset({"model", "enforce_eager", "block_size", "max_num_seqs", "quantization"})
    monkeypatch.setattr(VLLMLM, "extra_model_args", classmethod(lambda cls: engine_args))
    with pytest.raises(ModelArgsError) as err:
        VLLMLM.create_from_arg_obj({"pretrained": "/m", "enforce_eagr": True})
    msg = str(err.value)
    assert "slm-vllm: unknown model argument 'enforce_eagr'; did you mean 'enforce_eager'?" in msg
    assert "vllm.LLM" in msg and "\n" not in msg
    assert VLLMLM.check_model_args({"pretrained": "/m", "enforce_eager": True, "max_num_seqs": 4})


def test_slm_vllm_without_vllm_leaves_engine_names_to_the_engine(monkeypatch):
    from slm_tasks.adapters.vllm import VLLMLM

    monkeypatch.setattr(VLLMLM, "extra_model_args", classmethod(lambda cls: None))
    assert VLLMLM.check_model_args({"pretrained": "/m", "enforce_eager": True})["enforce_eager"] is True

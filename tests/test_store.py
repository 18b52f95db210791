"""The response store: keys, exact round trips, crashes, concurrent writers and damaged files
(real sqlite files, real child processes and signals, real read-only and full mounts)."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from slm_tasks.adapters import store as S
from slm_tasks.adapters import store_file
from slm_tasks.adapters import store_keys as K
from slm_tasks.adapters.store import ResponseStore
from slm_tasks.adapters.store_keys import StoreError, model_identity, request_key, store_key

IDENTITY = {
    "model_sha256": "ab" * 32,
    "backend": "llama.cpp",
    "weights": "Q4_1",
    "n_ctx": 2048,
    "truncation": "left",
    "chat_template": None,
    "system_prompt": None,
    "sampling": {"temperature": 0.0, "seed": 1234},
    "slm_suite": "0.1.0",
    "lm_eval": "0.4.13",
}


def ll_key(i: int) -> str:
    return request_key("loglikelihood", (f"Question {i}: what comes next?\nAnswer:", f" choice {i % 4}"))


def ll_value(i: int) -> tuple[float, bool]:
    return (-(i * 0.7310585786300049) % 97.0 - 1e-3, i % 3 == 0)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def child(tmp_path: Path, body: str, *args, **kw) -> subprocess.Popen:
    script = tmp_path / f"child_{abs(hash(body))}.py"
    if not script.exists():  # never rewritten: a child started a moment ago may be reading it
        script.write_text(
            "import sys, time\nfrom slm_tasks.adapters import store as S\n"
            "from slm_tasks.adapters import store_keys as K\n" + textwrap.dedent(body)
        )
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
        **kw,
    )


def default_signals() -> None:
    """Children get Ctrl-C's default action even when the test run itself ignores SIGINT
    (a shell's background job does): Python then turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- keys ----------------------------------------------------------------------------------
def test_store_key_changes_with_every_field_and_not_with_order():
    base = store_key(IDENTITY)
    assert store_key(dict(reversed(list(IDENTITY.items())))) == base
    assert store_key({**IDENTITY, "sampling": {"seed": 1234, "temperature": 0.0}}) == base
    # one setting written two ways is one key
    assert store_key({**IDENTITY, "n_ctx": 2048.0, "sampling": {"temperature": 0, "seed": np.int64(1234)}}) == base
    changed = {
        "weights": "f16",
        "n_ctx": 4096,
        "chat_template": "{{ messages }}",
        "system_prompt": "Be brief.",
        "truncation": "right",
        "model_sha256": "cd" * 32,
        "backend": "vllm",
        "lm_eval": "0.4.14",
        "sampling": {"temperature": 0.7, "seed": 1234},
    }
    keys = {field: store_key({**IDENTITY, field: value}) for field, value in changed.items()}
    assert base not in keys.values() and len(set(keys.values())) == len(keys)
    assert store_key({**IDENTITY, "extra": None}) != base
    assert store_key({**IDENTITY, "chat_template": ""}) != base  # empty template is not "no template"


def test_store_key_refuses_what_cannot_be_keyed():
    with pytest.raises(StoreError, match="finite"):
        store_key({**IDENTITY, "sampling": {"temperature": float("nan")}})
    with pytest.raises(StoreError, match=r"identity\['path'\].*PosixPath"):
        store_key({**IDENTITY, "path": Path("/m.gguf")})
    with pytest.raises(StoreError, match="not a string"):
        store_key({1: "a"})


def test_request_keys():
    gen = ("Q: 2+2?\nA:", {"until": ["\n", "Q:"], "max_gen_toks": 256, "do_sample": False, "temperature": 0.0})
    k = request_key("generate_until", gen)
    assert request_key("generate_until", (gen[0], dict(reversed(list(gen[1].items()))))) == k
    assert request_key("generate_until", (gen[0], {**gen[1], "until": ["Q:", "\n"]})) != k
    assert request_key("generate_until", (gen[0] + " ", gen[1])) != k
    assert request_key("loglikelihood", ("a", "b")) != request_key("loglikelihood", ("ab", ""))
    assert request_key("loglikelihood", ("a", "b")) != request_key("loglikelihood_rolling", ("a", "b"))
    assert len({request_key("loglikelihood_rolling", (t,)) for t in ("", " ", "é", "e\u0301")}) == 4
    with pytest.raises(ValueError, match="unknown request kind 'loglikelihoods'"):
        request_key("loglikelihoods", ("a", "b"))


# --- round trips -----------------------------------------------------------------------------
FLOATS = [-1.2345678901234567, -0.0, 0.0, 5e-324, -1.7976931348623157e308, 0.1 + 0.2, -math.inf, math.inf]
TEXTS = ["", " ", "héllo wörld", "日本語\n\ttab", "emoji 🤖", "lone \ud800 surrogate", "a\x00b", "x" * 100_000]


def put_everything(st: ResponseStore) -> dict:
    expect = {}
    for i, f in enumerate(FLOATS + [np.float64(-2.5), np.float32(-0.1)]):
        expect[("loglikelihood", request_key("loglikelihood", ("c", str(i))))] = ((f, i % 2 == 0), {"tokens": i})
        expect[("loglikelihood_rolling", request_key("loglikelihood_rolling", (str(i),)))] = (f, None)
    expect[("loglikelihood", request_key("loglikelihood", ("c", "np")))] = ((-3.0, np.bool_(True)), None)
    for i, t in enumerate(TEXTS):
        key = request_key("generate_until", (str(i), {"until": ["\n"]}))
        expect[("generate_until", key)] = (t, {"tokens": len(t), "seconds": 1 / 3})
    expect[("loglikelihood_rolling", request_key("loglikelihood_rolling", ("nan",)))] = (math.nan, None)
    for (kind, key), (value, timing) in expect.items():
        st.put(kind, key, value, timing)
    return expect


def check_everything(st: ResponseStore, expect: dict) -> None:
    for (kind, key), (value, timing) in expect.items():
        ((got, got_timing),) = st.get_many(kind, [key]).values()
        assert got_timing == timing
        if kind == "generate_until":
            assert type(got) is str and got == value
        elif kind == "loglikelihood_rolling":
            assert type(got) is float
            assert math.isnan(got) if math.isnan(value) else bits(got) == bits(float(value))
        else:
            assert type(got) is tuple and type(got[1]) is bool and got[1] == bool(value[1])
            assert bits(got[0]) == bits(float(value[0]))


def test_round_trip_all_kinds_is_exact(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ResponseStore.open(path, store_key(IDENTITY), commit_every_n=10**6, commit_every_s=1e9) as st:
        expect = put_everything(st)
        assert st.pending == len(expect) and st.written == 0
        check_everything(st, expect)  # buffered answers are served too
        assert st.flush() == len(expect) and st.pending == 0
    assert not Path(f"{path}-wal").exists()  # closed cleanly: everything is in the main file
    with ResponseStore.open(path, store_key(IDENTITY)) as st:
        check_everything(st, expect)
        assert st.hits == len(expect) and st.count() == len(expect)
        assert st.count("generate_until") == len(TEXTS)
        assert st.get_many("generate_until", [ll_key(1)]) == {}


def test_models_never_share_answers(tmp_path):
    path = tmp_path / "responses.sqlite"
    a, b = store_key(IDENTITY), store_key({**IDENTITY, "weights": "f16"})
    keys = [ll_key(i) for i in range(300)]
    with ResponseStore.open(path, a) as sa, ResponseStore.open(path, b) as sb:
        for i, k in enumerate(keys):
            sa.put("loglikelihood", k, (-float(i), True))
            sb.put("loglikelihood", k, (-float(i) - 0.5, False))
    with ResponseStore.open(path, a) as sa:
        got = sa.get_many("loglikelihood", keys)
        assert [got[k][0] for k in keys] == [(-float(i), True) for i in range(300)]
    with ResponseStore.open(path, b) as sb:
        got = sb.get_many("loglikelihood", keys)
        assert [got[k][0] for k in keys] == [(-float(i) - 0.5, False) for i in range(300)]
    with ResponseStore.open(path, store_key({**IDENTITY, "n_ctx": 4096})) as sc:
        assert sc.get_many("loglikelihood", keys) == {} and sc.hits == 0 and sc.count() == 0
    rows = sqlite3.connect(path).execute("SELECT key, identity FROM models").fetchall()
    assert {r[0] for r in rows} >= {a, b}


def test_commits_by_count_and_by_time(tmp_path, monkeypatch):
    path = tmp_path / "responses.sqlite"
    mk = store_key(IDENTITY)
    with ResponseStore.open(path, mk, commit_every_n=25, commit_every_s=1e9) as st:
        for i in range(24):
            st.put("loglikelihood", ll_key(i), ll_value(i))
        assert ResponseStore.open(path, mk, readonly=True).count() == 0
        st.put("loglikelihood", ll_key(24), ll_value(24))
        assert st.written == 25 and ResponseStore.open(path, mk, readonly=True).count() == 25
    # the store's clock, moved by hand: a busy machine cannot make a put look late or early
    now = [100.0]
    monkeypatch.setattr(S, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep))
    with ResponseStore.open(path, mk, commit_every_n=10**6, commit_every_s=0.2) as st:
        now[0] += 0.19
        st.put("loglikelihood", ll_key(100), ll_value(100))
        assert st.pending == 1
        now[0] += 0.02  # 0.21 s after opening
        st.put("loglikelihood", ll_key(101), ll_value(101))
        assert st.pending == 0 and ResponseStore.open(path, mk, readonly=True).count() == 27
        now[0] += 0.19  # 0.19 s after that commit
        st.put("loglikelihood", ll_key(102), ll_value(102))
        assert st.pending == 1 and ResponseStore.open(path, mk, readonly=True).count() == 27


def test_readonly_mode(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ResponseStore.open(path, "m") as st:
        st.put("loglikelihood_rolling", request_key("loglikelihood_rolling", ("t",)), -4.25)
    ro = ResponseStore.open(path, "m", readonly=True)
    got = ro.get_many("loglikelihood_rolling", [request_key("loglikelihood_rolling", ("t",))])
    assert list(got.values()) == [(-4.25, None)]
    with pytest.raises(StoreError, match="opened read-only"):
        ro.put("loglikelihood_rolling", request_key("loglikelihood_rolling", ("u",)), -1.0)
    ro.close()
    assert ResponseStore.open(path, "unknown model", readonly=True).get_many("loglikelihood", [ll_key(0)]) == {}
    with pytest.raises(StoreError, match=f"{tmp_path / 'nope.sqlite'} does not exist"):
        ResponseStore.open(tmp_path / "nope.sqlite", "m", readonly=True)


# --- crashes and signals ---------------------------------------------------------------------
PUTTER = """
    from tests_store_values import ll_key, ll_value
    path, progress, every_n, every_s, mode = sys.argv[1:6]
    log = open(progress, "w", buffering=1)

    def run(st):
        log.write("ready\\n")
        for i in range(10**7):
            st.put("loglikelihood", ll_key(i), ll_value(i), {"tokens": i % 50, "seconds": i / 7})
            log.write(f"{i + 1} {st.written}\\n")

    if mode == "with":
        with S.exit_on_sigterm(), S.ResponseStore.open(path, "m", commit_every_n=int(every_n),
                                                       commit_every_s=float(every_s)) as st:
            run(st)
    else:  # no with block: the exit hook closes the store
        run(S.ResponseStore.open(path, "m", commit_every_n=int(every_n), commit_every_s=float(every_s)))
"""


@pytest.fixture()
def putter(tmp_path):
    """Start a child that puts ll_key(i) -> ll_value(i) for i = 0, 1, ... and logs each put."""
    # the child computes the same keys and values: these functions' own source, importable
    (tmp_path / "tests_store_values.py").write_text(
        "from slm_tasks.adapters.store_keys import request_key\n\n"
        + inspect.getsource(ll_key)
        + "\n"
        + inspect.getsource(ll_value)
    )

    def start(every_n, every_s, mode="with"):
        progress = tmp_path / "progress.log"
        progress.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        proc = child(tmp_path, PUTTER, tmp_path / "responses.sqlite", progress, every_n, every_s, mode, env=env)
        started.append(proc)
        deadline = time.monotonic() + 60
        while not (progress.exists() and progress.read_text().count("\n") >= 2):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "child never started putting"
            time.sleep(0.01)
        return proc, progress

    started: list[subprocess.Popen] = []
    yield start
    for proc in started:  # a failed test leaves no child running
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def last_progress(progress: Path) -> tuple[int, int]:
    lines = progress.read_text().split("\n")[1:-1]  # the last piece may be half written
    put, written = map(int, lines[-1].split())
    return put, written


def committed_prefix(path: Path) -> int:
    """How many of ll_key(0), ll_key(1), ... the store holds; checks they are a prefix and exact."""
    with ResponseStore.open(path, "m") as st:  # runs quick_check
        n = st.count()
        got = st.get_many("loglikelihood", [ll_key(i) for i in range(n + 100)])
    assert sorted(got) == sorted(ll_key(i) for i in range(n)), "committed items are not a prefix"
    for i in range(n):
        value, timing = got[ll_key(i)]
        assert bits(value[0]) == bits(ll_value(i)[0]) and value[1] == ll_value(i)[1]
        assert timing == {"tokens": i % 50, "seconds": i / 7}
    return n


def test_kill_9_loses_at_most_the_batch_not_committed(putter, tmp_path):
    rng = random.Random()
    seed = rng.randrange(10**9)
    rng.seed(seed)
    every_n = 40
    for attempt in range(4):
        (tmp_path / "responses.sqlite").unlink(missing_ok=True)
        proc, progress = putter(every_n, 0.05)
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"seed {seed}: child ended before the kill"
        put, written = last_progress(progress)
        n = committed_prefix(tmp_path / "responses.sqlite")
        # all it reported committed is there; at most one more put (unlogged) and one batch lost
        assert written <= n <= put + 1, (seed, attempt, written, n, put)
        assert put - n < every_n, (seed, attempt, written, n, put)


@pytest.mark.parametrize(
    "sig, mode, code", [(signal.SIGTERM, "with", 143), (signal.SIGINT, "with", -2), (signal.SIGINT, "exit hook", -2)]
)
def test_sigterm_and_sigint_flush_everything(putter, tmp_path, sig, mode, code):
    # nothing would be committed before the signal: only closing on the signal saves the items
    proc, progress = putter(10**7, 1e9, mode)
    while last_progress(progress)[0] < 2000:
        assert proc.poll() is None, proc.communicate()  # a child that died must not leave us waiting
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    put, written = last_progress(progress)
    assert written == 0
    n = committed_prefix(tmp_path / "responses.sqlite")
    assert put <= n <= put + 1


def test_a_store_never_closed_is_committed_at_exit(tmp_path):
    proc = child(
        tmp_path,
        """
        st = S.ResponseStore.open(sys.argv[1], "m", commit_every_n=10**6, commit_every_s=1e9)
        for i in range(10):
            st.put("loglikelihood_rolling", K.request_key("loglikelihood_rolling", (str(i),)), -float(i))
        del st
        __import__("gc").collect()
    """,
        tmp_path / "responses.sqlite",
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "", err
    with ResponseStore.open(tmp_path / "responses.sqlite", "m") as st:
        keys = [request_key("loglikelihood_rolling", (str(i),)) for i in range(10)]
        got = st.get_many("loglikelihood_rolling", keys)
        assert [got[k] for k in keys] == [(-float(i), None) for i in range(10)]


WRITER = """
    import glob
    path, lo, hi, barrier = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def meet(stage):
        # both writers reach ``stage`` before either goes on: the overlap does not hang on timing
        open(f"{barrier}.{stage}.{lo}", "w").close()
        deadline = time.monotonic() + 120
        while len(glob.glob(f"{barrier}.{stage}.*")) < 2:
            if time.monotonic() > deadline:
                sys.exit(f"the other writer never reached {stage}")
            time.sleep(0.001)

    meet("started")
    st = S.ResponseStore.open(path, "m", commit_every_n=50)
    for i in range(lo, hi):
        st.put("generate_until", K.request_key("generate_until", (f"prompt {i}", {"until": ["\\n"]})),
               f"answer {i} " * (i % 7), {"tokens": i % 7})
        if i == lo + 99:  # two batches committed, none pending: each writes while the other has it open
            meet("writing")
    st.close()
    print(st.written)
"""


def test_two_processes_write_one_store_at_once(tmp_path):
    path = tmp_path / "responses.sqlite"  # new: both also race to create it
    procs = [child(tmp_path, WRITER, path, lo, lo + 6000, tmp_path / "barrier") for lo in (0, 3000)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (out, err) in zip(procs, outs):  # noqa: B007
        assert p.returncode == 0 and err == "", err
    w1, w2 = [int(out) for out, _ in outs]
    assert w1 + w2 == 9000  # each shared key is added once
    with ResponseStore.open(path, "m") as st:
        keys = {K.request_key("generate_until", (f"prompt {i}", {"until": ["\n"]})): i for i in range(9000)}
        got = st.get_many("generate_until", keys)
        assert len(got) == 9000 and st.count() == 9000
        assert all(got[k] == (f"answer {i} " * (i % 7), {"tokens": i % 7}) for k, i in keys.items())


OPENER = """
    import glob
    folder = sys.argv[1]
    open(f"{folder}/ready.{sys.argv[2]}", "w").close()
    deadline = time.monotonic() + 60
    while len(glob.glob(folder + "/ready.*")) < int(sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.0005)
    S.ResponseStore.open(f"{folder}/responses.sqlite", "m").close()
"""


def test_processes_racing_to_create_a_store_all_open_it(tmp_path):
    # sqlite refuses a journal switch that meets another connection at once, without waiting;
    # four processes starting together on a new file hit that in most rounds
    for round_ in range(4):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        procs = [child(tmp_path, OPENER, folder, i, 4) for i in range(4)]
        try:
            errs = [p.communicate(timeout=120)[1] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(errs)
        with ResponseStore.open(folder / "responses.sqlite", "m") as st:
            assert st.count() == 0


# --- damaged files ----------------------------------------------------------------------------
@pytest.fixture()
def filled(tmp_path):
    """A closed store of 3000 loglikelihood and 200 generate_until responses."""
    path = tmp_path / "responses.sqlite"
    with ResponseStore.open(path, "m") as st:
        for i in range(3000):
            st.put("loglikelihood", ll_key(i), ll_value(i), {"tokens": i % 50})
        for i in range(200):
            st.put("generate_until", request_key("generate_until", (str(i), {})), f"The answer is {i}.")
    assert not Path(f"{path}-wal").exists()
    assert read_all(path) == 3200
    return path


def read_all(path: Path) -> int:
    """Open and read every response; any value that comes back must be the one stored."""
    with ResponseStore.open(path, "m") as st:
        got = st.get_many("loglikelihood", [ll_key(i) for i in range(3000)])
        gen_keys = [request_key("generate_until", (str(i), {})) for i in range(200)]
        gen = st.get_many("generate_until", gen_keys)
    assert all(got[ll_key(i)] == (ll_value(i), {"tokens": i % 50}) for i in range(3000) if ll_key(i) in got)
    assert all(gen[k] == (f"The answer is {i}.", None) for i, k in enumerate(gen_keys) if k in gen)
    return len(got) + len(gen)


def test_truncated_store_is_refused(filled):
    os.truncate(filled, filled.stat().st_size // 2)
    with pytest.raises(
        StoreError,
        match=f"response store {filled} is corrupt .*: delete it, or "
        "pass --store PATH for another file, or --no-store \\(model_args store=PATH / store=off\\)",
    ) as e:
        read_all(filled)
    assert "\n" not in str(e.value)


def test_overwritten_bytes_never_give_a_wrong_value(filled, tmp_path):
    size, refused = filled.stat().st_size, 0
    rng = random.Random(7)
    for n in range(1, 16):  # 64 random bytes at 15 places across the file
        damaged = tmp_path / f"damaged{n}.sqlite"
        shutil.copy(filled, damaged)
        with open(damaged, "r+b") as f:
            f.seek(size * n // 16)
            f.write(rng.randbytes(64))
        try:
            read_all(damaged)
        except StoreError as exc:
            assert f"response store {damaged} is corrupt (" in str(exc) and "\n" not in str(exc)
            refused += 1
    assert refused >= 10  # the rest hit free space inside pages: harmless


@pytest.mark.parametrize("needle", [struct.pack(">d", ll_value(1234)[0]), b"The answer is 123."])
def test_a_changed_value_fails_its_checksum(filled, needle):
    # one changed byte in a stored value keeps the file well-formed: only the row checksum sees it
    data = bytearray(filled.read_bytes())
    at = data.index(needle) + len(needle) - 2
    data[at] ^= 0x01
    filled.write_bytes(data)
    with pytest.raises(StoreError, match="fails its checksum"):
        read_all(filled)


def test_files_that_are_not_stores_are_refused_and_kept(tmp_path):
    text = tmp_path / "results.json"
    text.write_text('{"results": {}}\n' * 10)
    with pytest.raises(StoreError, match=f"{text} is not a response store \\(not an sqlite file\\)"):
        ResponseStore.open(text, "m")
    assert text.read_text() == '{"results": {}}\n' * 10
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.close()
    with pytest.raises(StoreError, match="is an sqlite file but not a response store"):
        ResponseStore.open(other, "m")
    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file becomes a new store
    with ResponseStore.open(empty, "m") as st:
        st.put("loglikelihood", ll_key(0), ll_value(0))
    assert ResponseStore.open(empty, "m").count() == 1


def test_newer_schema_is_refused(filled):
    con = sqlite3.connect(filled)
    con.execute(f"PRAGMA user_version = {store_file.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="written by a newer slm-suite .*upgrade slm-suite"):
        ResponseStore.open(filled, "m")


# --- read-only and full disks (real mounts in a private mount namespace) -----------------------
def in_mount_ns(tmp_path: Path, mount: str, body: str) -> list:
    """Run ``body`` in a child inside its own mount namespace after ``mount``; its JSON output."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    script = tmp_path / "in_ns.py"
    script.write_text(
        "import json, sys\nfrom slm_tasks.adapters import store as S\n"
        "from slm_tasks.adapters import store_keys as K\n" + textwrap.dedent(body)
    )
    r = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'{mount} || exit 77; exec "$0" "$1"',
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    if r.returncode == 77 or "unshare failed" in r.stderr:
        pytest.skip(f"mounting needs CAP_SYS_ADMIN here: {r.stderr.strip()}")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return json.loads(r.stdout)


def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    with ResponseStore.open(folder / "responses.sqlite", "m") as st:
        st.put("loglikelihood", ll_key(0), ll_value(0))
    out = in_mount_ns(
        tmp_path,
        "mount --bind ro ro && mount -o remount,bind,ro ro",
        """
        out = []
        for name, ro in [("responses.sqlite", False), ("new.sqlite", False), ("sub/new.sqlite", False),
                         ("responses.sqlite", True)]:
            try:
                st = S.ResponseStore.open("ro/" + name, "m", readonly=ro)
                out.append(list(st.get_many("loglikelihood", [sys.argv[1]]).values()))
            except K.StoreError as exc:
                out.append(str(exc))
        print(json.dumps(out))
    """.replace("sys.argv[1]", repr(ll_key(0))),
    )
    for msg, name in zip(out[:2], ["responses.sqlite", "new.sqlite"]):
        assert msg == (
            f"cannot open response store {folder / name} (its folder is not writable): "
            "pass --store PATH for another file, or --no-store (model_args store=PATH / store=off)"
        )
    assert out[2] == (
        f"cannot create the folder of response store {folder / 'sub/new.sqlite'} "
        "(Read-only file system): pass --store PATH for another file, or --no-store (model_args store=PATH / store=off)"
    )
    assert out[3] == [[list(ll_value(0)), None]]  # read-only use still reads it


def test_read_only_file_in_a_writable_folder(tmp_path):
    path = tmp_path / "responses.sqlite"
    with ResponseStore.open(path, "m") as st:
        st.put("loglikelihood", ll_key(0), ll_value(0))
    out = in_mount_ns(
        tmp_path,
        "mount --bind responses.sqlite responses.sqlite && mount -o remount,bind,ro responses.sqlite",
        """
        out = []
        for ro in (False, True):
            try:
                out.append(S.ResponseStore.open("responses.sqlite", "m", readonly=ro).count())
            except K.StoreError as exc:
                out.append(str(exc))
        print(json.dumps(out))
    """,
    )
    refused = (
        f"response store {path} is read-only (attempt to write a readonly database): make it "
        "writable, or pass --store PATH for another file, or --no-store (model_args store=PATH / store=off)"
    )
    assert out == [refused, 1]


def test_full_disk(tmp_path):
    (tmp_path / "small").mkdir()
    out = in_mount_ns(
        tmp_path,
        "mount -t tmpfs -o size=200k tmpfs small",
        """
        path = "small/responses.sqlite"
        st = S.ResponseStore.open(path, "m", commit_every_n=20)
        keys = [K.request_key("generate_until", (f"q{i}", {})) for i in range(10**5)]
        errors = []
        try:
            for i, k in enumerate(keys):
                st.put("generate_until", k, f"answer {i} " * 8)
        except K.StoreError as exc:
            errors.append(str(exc))
        try:
            st.close()
        except K.StoreError as exc:
            errors.append(str(exc))
        got = S.ResponseStore.open(path, "m", readonly=True).get_many("generate_until", keys)
        ok = all(got[k][0] == f"answer {i} " * 8 for i, k in enumerate(keys[:len(got)]))
        print(json.dumps([errors, st.written, len(got), ok]))
    """,
    )
    errors, written, readable, ok = out
    assert 0 < written < 10**5 and readable == written and ok
    assert errors and all(
        e
        == (
            f"cannot write response store {tmp_path / 'small/responses.sqlite'} "
            "(database or disk is full): free space on its disk, or pass --store PATH "
            "for another file, or --no-store (model_args store=PATH / store=off)"
        )
        for e in errors
    )


# --- model identity ---------------------------------------------------------------------------
def test_model_identity_of_a_file_is_hashed_once(tmp_path):
    cache, f = tmp_path / "cache", tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 400)
    first = model_identity(f, cache=cache)
    assert first == hashlib.sha256(f.read_bytes()).hexdigest() and (cache / "model-identity.sqlite").is_file()
    st = f.stat()
    f.write_bytes(b"GGUX" + bytes(range(256)) * 400)  # new content, same size and mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert model_identity(f, cache=cache) == first  # not read again: the cached digest (by design)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert model_identity(f, cache=cache) == hashlib.sha256(f.read_bytes()).hexdigest() != first
    f.write_bytes(b"GGUX" + bytes(range(256)) * 401)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same mtime, new size
    assert model_identity(f, cache=cache) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert model_identity(tmp_path / "." / "m.gguf", cache=cache) == model_identity(f, cache=cache)
    # an unusable cache costs time, never the right digest
    (tmp_path / "not-a-folder").write_text("")
    assert model_identity(f, cache=tmp_path / "not-a-folder") == hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="model .*nope.gguf does not exist"):
        model_identity(tmp_path / "nope.gguf", cache=cache)


def test_model_identity_of_a_checkpoint_folder(tmp_path):
    cache, ckpt = tmp_path / "cache", tmp_path / "ckpt"
    ckpt.mkdir()
    files = {
        "config.json": b'{"n_layer": 2}',
        "model.safetensors": b"\x00" * 5000,
        "tokenizer.json": b'{"vocab": {}}',
        "chat_template.jinja": b"{{ m }}",
    }
    for name, data in files.items():
        (ckpt / name).write_bytes(data)
    first = model_identity(ckpt, cache=cache)
    (ckpt / "README.md").write_text("notes")
    (ckpt / ".gitattributes").write_text("*")
    assert model_identity(ckpt, cache=cache) == first  # documentation does not change an answer
    template = ckpt / "chat_template.jinja"
    before = template.stat()
    template.write_bytes(b"{{ n }}")  # same size; its mtime set past the old one, whatever the clock's grain
    os.utime(template, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    second = model_identity(ckpt, cache=cache)
    assert second != first
    (ckpt / "chat_template.jinja").rename(ckpt / "template.jinja")  # names count
    assert model_identity(ckpt, cache=cache) not in (first, second)
    (ckpt / "template.jinja").rename(ckpt / "chat_template.jinja")
    assert model_identity(ckpt, cache=cache) == second
    (ckpt / "generation_config.json").write_text("{}")  # a file more
    assert model_identity(ckpt, cache=cache) != second
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("x")
    with pytest.raises(StoreError, match="holds no weight, config or tokenizer files"):
        model_identity(tmp_path / "docs", cache=cache)

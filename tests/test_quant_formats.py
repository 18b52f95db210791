"""The quantiser: every format of the sweep made from the embedded SmolLM2-135M by llama.cpp's
own quantiser, loaded back, cached by content, written atomically; unknown formats refused."""

from __future__ import annotations

import os

import pytest

from slm_tasks.adapters.llamacpp_lib import LlamaCppError
from slm_tasks.adapters.quantise import FORMATS, by_precision, format_name, quantise, stored_format
from slm_tasks.quant_sweep import DEFAULT_FORMATS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLM_SUITE_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def f16_source(cache):
    from slm_tasks.quant_sweep import working_source

    spec, source, origin = working_source("smollm2-135m", threads=2)
    assert stored_format(spec.path) == "Q4_1"  # the embedded file: 4 bits, so the sweep starts from F16
    assert "dequantised F16 copy" in origin
    return source


@pytest.fixture(scope="module")
def made(f16_source):
    return {f: quantise(f16_source, f, threads=2) for f in DEFAULT_FORMATS}


def test_every_default_format_is_made_and_loads(made):
    from slm_tasks.adapters.llamacpp_engine import LlamaEngine

    sizes = {}
    for fmt, (path, seconds) in made.items():
        assert path.is_file() and fmt in path.name and seconds > 0
        assert stored_format(path) == fmt  # the file says what it is
        engine = LlamaEngine(path, max_length=64, n_threads=2, n_parallel=1, dequantise="stored")
        try:
            logits = engine.set_prefix([1, 2, 3, 4])
            assert logits.shape == (engine.n_vocab,) and float(abs(logits).max()) > 0
        finally:
            engine.close()
        sizes[fmt] = path.stat().st_size
    # fewer bits, smaller file: the order the formats are ranked in
    ranked = by_precision(DEFAULT_FORMATS)
    assert ranked[0] == "F16" and ranked[-1] == "Q3_K_M"
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q6_K"] > sizes["Q5_K_M"] > sizes["Q4_K_M"] > sizes["Q3_K_M"]


def test_a_cached_copy_is_reused_and_no_temporary_file_is_left(made, f16_source):
    path, _ = made["Q8_0"]
    before = path.stat().st_mtime_ns
    again, seconds = quantise(f16_source, "q8_0")  # names are case-insensitive
    assert again == path and seconds == 0.0 and path.stat().st_mtime_ns == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_cache_name_is_the_source_content_and_the_format(made, f16_source, cache):
    from slm_tasks.adapters.store_keys import model_identity

    tag = model_identity(f16_source)[:12]
    for fmt, (path, _) in made.items():
        assert path.parent == cache / "quantised" and path.name == f"{f16_source.stem}-{tag}-{fmt}.gguf"


def test_a_failed_quantisation_leaves_nothing(f16_source, tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    out = tmp_path / "out.gguf"
    with pytest.raises(LlamaCppError, match="could not re-encode"):
        quantise(bad, "Q4_0", out=out)
    assert os.listdir(tmp_path) == ["not-a-model.gguf"]


def test_unknown_format_is_one_line_naming_the_known_ones():
    with pytest.raises(LlamaCppError) as exc:
        format_name("Q9_X")
    msg = str(exc.value)
    assert "\n" not in msg and "Q9_X" in msg and all(f in msg for f in FORMATS)


def test_unknown_format_on_the_command_line(slm_cli, user_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    files = user_files(tmp_path)
    r = slm_cli("quant", "smollm2-135m", "--formats", "F16,Q4_K_M,Q9_X", "--out", str(tmp_path / "sweep"))
    assert r.code == 2
    assert len(r.error_lines) == 1
    assert r.error_lines[0].startswith("slm-suite: error: unknown quantisation format 'Q9_X': use one of F32")
    files.assert_kept()
    assert not (tmp_path / "sweep").exists()


def test_unknown_profile_and_a_gate_format_outside_the_sweep(slm_cli, tmp_path):
    r = slm_cli("quant", "smollm2-135m", "--formats", "F16,Q8_0", "--gate", "Q4_0", "--out", str(tmp_path / "s"))
    assert r.code == 2 and len(r.error_lines) == 1 and "--gate Q4_0" in r.error_lines[0]
    assert not (tmp_path / "s").exists()


def test_bad_policy_and_an_out_that_is_a_file_fail_before_any_work(slm_cli, user_files, tmp_path):
    (tmp_path / "taken").write_text("mine")
    files = user_files(tmp_path)
    r = slm_cli("quant", "smollm2-135m", "--out", str(tmp_path / "taken"))
    assert r.code == 2 and r.error_lines == [
        f"slm-suite: error: --out {tmp_path / 'taken'} is a file, not a folder; choose another --out"
    ]
    r = slm_cli("quant", "smollm2-135m", "--policy", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "s"))
    assert r.code == 2 and len(r.error_lines) == 1 and "quantisation policy" in r.error_lines[0]
    files.assert_kept()
    assert not (tmp_path / "s").exists()


def test_every_profile_is_scored_by_its_spec():
    """The packaged profiles (leaderboards/quant_profiles.yaml): each task of a profile is a task
    of its spec's domains or a suite group, and the default is the multiple-choice profile."""
    from slm_tasks.leaderboards.spec import load_spec
    from slm_tasks.paths import task_dir
    from slm_tasks.quant_sweep import DEFAULT_PROFILE, PROFILES

    assert DEFAULT_PROFILE == "mc"
    for name, (tasks, spec_name) in PROFILES.items():
        spec = load_spec(spec_name)
        declared = {t.task for d in spec.domains for t in d.tasks}
        groups = {p.stem.lstrip("_") for p in task_dir().rglob("_*.yaml")}
        assert tasks and all(t in declared or t in groups for t in tasks), name
    # mc-full extends mc with the three longest multiple-choice tasks
    mc, full = PROFILES["mc"][0], PROFILES["mc-full"][0]
    assert full[: len(mc)] == mc and set(full) - set(mc) == {
        "slm_hellaswag_lite",
        "slm_boolq_lite",
        "slm_truthfulqa_mc2_lite",
    }

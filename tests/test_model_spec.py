"""The model is resolved once: the run's header, the backend, the response store's key, the cost
record, the runtime bench and the board's row read one ModelSpec made by the backend class."""

import ast
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from slm_tasks import api, run_plan
from slm_tasks.adapters.bench import bench
from slm_tasks.adapters.hardware import usable_cores
from slm_tasks.adapters.llamacpp import LlamaCppLM
from slm_tasks.adapters.models import ModelFileError, resolve_model
from slm_tasks.leaderboards.ingest import Run
from slm_tasks.results.cost_record import CostRecord

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    """smollm2-135m's weights under a path of their own (a GGUF path, not a short name)."""
    out = tmp_path_factory.mktemp("model") / "my-model.gguf"
    shutil.copyfile(resolve_model("smollm2-135m"), out)
    return out


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _store_identity(lm) -> dict:
    with sqlite3.connect(lm.store.path) as conn:
        (row,) = conn.execute("SELECT identity FROM models WHERE key=?", (lm.store.model_key,)).fetchall()
    return json.loads(row[0])


@pytest.mark.parametrize("case", ["short name, defaults", "GGUF path, stored, 1 thread"])
def test_header_backend_store_cost_bench_and_board_read_one_resolution(case, gguf, tmp_path):
    if case.startswith("short"):
        margs = {"model": "smollm2-135m"}
        name, weights, threads = "smollm2-135m [f16]", "f16", usable_cores()
        scoring = "weights as stored, re-encoded to f16 for scoring"
    else:
        margs = {"model": str(gguf), "dequantise": "stored", "n_threads": "1"}
        name, weights, threads, scoring = None, None, 1, "weights as stored"  # name: the GGUF's own
    margs["store"] = str(tmp_path / "responses.sqlite")

    spec = api.resolve("slm-llamacpp", margs)  # what slm-suite run does before loading the tasks
    header = run_plan.header(run_plan.Plan(), spec, None)[0]
    plural = "" if threads == 1 else "s"
    assert header == f"model: {margs['model']} ({scoring}); backend slm-llamacpp, {threads} thread{plural}"

    # what lm-eval's simple_evaluate builds from the same arguments
    lm = LlamaCppLM.create_from_arg_obj(margs, {"batch_size": None, "max_batch_size": None, "device": None})
    try:
        assert lm.spec is spec  # resolved once: the backend got the header's description
        assert lm.engine.n_threads == spec.threads == threads
        assert lm.engine.dequantised_to == spec.weights == weights
        if name is None:  # the name the weights carry, as llama.cpp itself reads it
            name = lm.engine.meta("general.name")
            assert name and name != gguf.stem
        assert spec.name == name
        digest = _sha256(spec.path)

        identity = _store_identity(lm)
        assert identity["model_sha256"] == spec.sha256 == digest
        assert identity["weights"] == (weights or "stored")

        model = lm.cost_record()["model"]
        assert (model["name"], model["sha256"], model["dequantised_to"]) == (name, digest, weights)
        assert model["path"] == str(spec.path)

        board = Run(
            path=tmp_path / "x" / "results_x.json",
            results={"model_name": "not this"},
            tasks={},
            cost=CostRecord.from_json(lm.cost_record(), "results_x.json"),
            cost_source="results config",
        )
        assert board.model == name
    finally:
        lm.close()

    rec = bench(spec, runs=1, pause_s=0, protocols=("survey",), progress=False)
    # the bench measures the weights as stored: the stored row's name, the same file and threads
    assert rec["model"]["name"] == spec.stored().name == name.removesuffix(" [f16]")
    assert (rec["model"]["sha256"], rec["model"]["dequantised_to"]) == (digest, None)
    assert rec["bench"]["n_threads"] == rec["hardware"]["threads"] == threads


def test_a_changed_model_file_is_resolved_and_checked_again(gguf, tmp_path):
    copy = tmp_path / "m.gguf"
    shutil.copyfile(gguf, copy)
    first = LlamaCppLM.resolve({"model": str(copy), "dequantise": "stored"})
    assert LlamaCppLM.resolve({"model": str(copy), "dequantise": "stored"}) is first
    with open(copy, "r+b") as f:
        f.truncate(copy.stat().st_size // 2)
    with pytest.raises(ModelFileError, match="truncated"):
        LlamaCppLM.resolve({"model": str(copy), "dequantise": "stored"})
    shutil.copyfile(gguf, copy)
    os.utime(copy, ns=(1, 1))
    again = LlamaCppLM.resolve({"model": str(copy), "dequantise": "stored"})
    assert again is not first and again.sha256 == first.sha256 == _sha256(gguf)


def test_defaults_are_decided_by_the_resolution(gguf):
    """dequantise left out computes on an f16 copy; dequantise=stored (or none) as stored;
    n_threads left out uses every usable core."""
    base = {"model": str(gguf)}
    assert LlamaCppLM.resolve(base).weights == "f16"
    assert LlamaCppLM.resolve({**base, "dequantise": "none"}).weights is None
    assert LlamaCppLM.resolve({**base, "dequantise": "BF16"}).name.endswith(" [bf16]")
    assert LlamaCppLM.resolve(base).threads == usable_cores()
    assert LlamaCppLM.resolve({**base, "n_threads": 3}).threads == 3


def test_run_plan_reads_no_private_engine_names():
    tree = ast.parse((REPO / "slm_tasks" / "run_plan.py").read_text())
    imported = [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert imported  # the check reads the module's imports
    assert not [(m, n) for m, n in imported if n.startswith("_") or "engine" in m or "llamacpp" in m]


def test_a_run_without_a_cost_record_is_named_as_lm_eval_names_it(tmp_path):
    """lm-eval's own runs: ``model_name`` (lm-eval's rule over the model_args), else the folder."""
    folder = tmp_path / "org__model"
    results = {"model_name": "org/model", "config": {"model_args": {"engine": "other", "path": "p"}}}
    assert Run(folder / "results_x.json", results, {}, None, None).model == "org/model"
    assert Run(folder / "results_x.json", {"config": {}}, {}, None, None).model == "org__model"
    named = CostRecord.from_json({"schema": "slm-suite.cost/1", "model": {"name": "smollm2-135m [f16]"}}, "x")
    assert Run(folder / "results_x.json", results, {}, named, "sidecar").model == "smollm2-135m [f16]"


def test_vllm_resolves_a_checkpoint_folder_or_a_cached_hub_id(tmp_path, monkeypatch):
    """slm-vllm's resolution (no vLLM needed): a folder's digest and name, ``name=`` over it, the
    dtype; a hub id is its snapshot in the local Hugging Face cache, and only that."""
    import huggingface_hub.constants

    from slm_tasks.adapters.models import ModelFileError
    from slm_tasks.adapters.store_keys import model_identity
    from slm_tasks.adapters.vllm import VLLMLM

    def checkpoint(folder):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"torch_dtype": "float32"}')
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "tokenizer.json").write_text("{}")
        return folder

    folder = checkpoint(tmp_path / "my-checkpoint")
    spec = VLLMLM.resolve({"pretrained": str(folder)})
    assert (spec.path, spec.name, spec.dtype, spec.threads) == (folder, "my-checkpoint", "auto", None)
    assert spec.sha256 == model_identity(folder, cache=tmp_path / "cache")
    assert spec.scoring == "dtype auto"
    named = VLLMLM.resolve({"pretrained": str(folder), "name": "mine", "dtype": "float32"})
    assert (named.name, named.scoring) == ("mine", "dtype float32")

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    with pytest.raises(ModelFileError, match="nor in the local Hugging Face cache .*hf download org/model"):
        VLLMLM.resolve({"pretrained": "org/model"})
    repo = hub / "models--org--model"
    snapshot = checkpoint(repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    cached = VLLMLM.resolve({"pretrained": "org/model"})
    assert (cached.path, cached.name, cached.sha256) == (snapshot, "org/model", model_identity(snapshot))

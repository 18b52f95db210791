"""index.html in a real headless Chromium: it loads from file://, sorts, and shows the plots;
a one-task domain shows its task's interval, ties share a rank, the Pareto badges name a
frontier, and a model name made of HTML shows as text.

Needs Debian's `chromium` + `chromium-driver` and the `selenium` package; skipped without them.
The screenshot goes to $SLM_ARTIFACTS_DIR (CI) or the test's tmp folder.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import pytest

from slm_tasks.leaderboards import build

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


SPEC = {
    "schema": "slm-suite.board-spec/1",
    "name": "demo",
    "title": "Browser test board",
    "domains": [
        {"name": "commonsense", "title": "Commonsense", "tasks": [{"task": "t_a"}, {"task": "t_b"}]},
        {"name": "problem_solving", "title": "Problem solving", "tasks": [{"task": "t_c"}, {"task": "t_absent"}]},
    ],
    "cost": {"hardware": {"backend": "llama.cpp"}},
}
HOSTILE = "<img src=x onerror=alert(1)>"
# name, accuracy, decode ms/token, peak bytes (None: no cost record)
MODELS = [
    ("alpha", 0.6, 5.0, 2e8),
    ("beta", 0.68, 12.0, 6e8),
    ("gamma", 0.5, 8.0, 9e8),
    ("delta", 0.76, 25.0, 1.2e9),
    (HOSTILE, 0.55, 30.0, 1.3e9),
    ("epsilon", 0.4, None, None),
]
TWIN = "alpha-twin"  # alpha's outcomes again, no cost record: tied with alpha


@pytest.fixture(scope="module")
def board_dir(synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    rng = random.Random(7)
    for name, acc, decode, peak in MODELS:
        cost = synth.cost_record(name, decode, int(peak)) if decode else None
        tasks = {t: [1.0 if rng.random() < acc else 0.0 for _ in range(60)] for t in ("t_a", "t_b", "t_c")}
        synth.make_run(root / "runs", "hostile" if name == HOSTILE else name, tasks, cost=cost)
        if name == "alpha":
            synth.make_run(root / "runs", TWIN, tasks)
    return build([root / "runs"], spec=SPEC, out=root / "board")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM or not DRIVER:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the selenium package")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,2000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def cell_texts(browser, table_id: str, header: str) -> dict[str, str]:
    """model -> the text of the cell under the header whose first line is ``header``."""
    return browser.execute_script(
        "var t = document.getElementById(arguments[0]);"
        "var col = Array.from(t.tHead.rows[0].cells)"
        "  .findIndex(h => h.innerText.split('\\n')[0] === arguments[1]);"
        "var out = {};"
        "Array.from(t.tBodies[0].rows).forEach(r => { out[r.dataset.model] = r.cells[col].innerText; });"
        "return out;",
        table_id,
        header,
    )


def column_values(browser, table_id: str, col: int) -> list[str]:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))"
        ".map(r => r.cells[arguments[1]].dataset.value)",
        table_id,
        col,
    )


def test_page_loads_offline_sorts_and_plots(board_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By

    html = (board_dir / "index.html").read_text()
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", html)  # no external resources
    browser.get((board_dir / "index.html").as_uri())
    assert browser.title == "Browser test board"
    # nothing fetched: inline CSS/JS/SVG only
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    rows = browser.find_elements(By.CSS_SELECTOR, "#board tbody tr")
    assert [r.get_attribute("data-model") for r in rows][-1] == "epsilon"  # ranked by the builder

    heads = browser.find_elements(By.CSS_SELECTOR, "#board thead th")
    overall = next(h for h in heads if h.text.startswith("overall"))
    col = heads.index(overall)
    overall.click()
    asc = [float(v) for v in column_values(browser, "board", col)]
    assert asc == sorted(asc) and overall.get_attribute("aria-sort") == "ascending"
    overall.click()
    desc = [float(v) for v in column_values(browser, "board", col)]
    assert desc == sorted(desc, reverse=True) and desc != asc

    decode = next(h for h in heads if h.text.startswith("decode"))
    decode.click()
    vals = column_values(browser, "board", heads.index(decode))
    assert vals[-1] == ""  # not measured: at the bottom
    measured = [float(v) for v in vals if v]
    assert measured == sorted(measured) and len(measured) == 5

    model = next(h for h in heads if h.text == "model")
    model.click()
    names = column_values(browser, "board", heads.index(model))
    assert names == sorted(names)

    for plot in ("latency", "memory"):
        svg = browser.find_element(By.CSS_SELECTOR, f"#plot-{plot} svg")
        size = svg.size
        assert size["width"] > 300 and size["height"] > 150
        # one marker per model with cost (legend markers are not in these groups)
        assert (
            browser.execute_script(
                "return document.querySelectorAll('#plot-' + arguments[0] + ' svg g[id^=points-] use').length", plot
            )
            == 5
        )

    # no HTML from a model name: the name is text, no image was made, no script ran
    made = "return document.querySelectorAll('img, script:not(:last-of-type)').length"
    assert browser.execute_script(made) == 0
    assert HOSTILE in [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#board td.text a")]
    assert browser.execute_script(
        "return document.querySelector('#board tbody tr[data-model=\"' + CSS.escape(arguments[0]) + '\"]') !== null",
        HOSTILE,
    )

    browser.find_element(By.CSS_SELECTOR, "#board a[href='#model-1']").click()
    details = browser.find_element(By.ID, "model-1")
    details.find_element(By.TAG_NAME, "summary").click()
    assert details.get_attribute("open") is not None
    assert "version" in details.text and "AMD EPYC" in details.text

    artifacts = Path(os.environ.get("SLM_ARTIFACTS_DIR") or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    shot = artifacts / "leaderboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_intervals_ties_and_badges_read_right(board_dir, browser):
    from selenium.webdriver.common.by import By

    browser.get((board_dir / "index.html").as_uri())
    # problem_solving has one task present (t_c; t_absent is missing): the domain shows t_c's
    # Wilson interval, not a bootstrap or averaged one
    domain = cell_texts(browser, "board", "Problem solving")
    task = cell_texts(browser, "task-table", "t_c")
    assert len(domain) == len(MODELS) + 1
    for model, text in domain.items():
        assert text.splitlines() == task[model].splitlines() and "[" in text, model
    # ranks: alpha and its twin share one, shown with "="; the next rank skips
    ranks = cell_texts(browser, "board", "#")
    assert ranks["alpha"] == ranks[TWIN] and ranks["alpha"].startswith("=")
    in_order = browser.execute_script(
        "return Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.cells[0].innerText)"
    )
    numbers = [int(r.lstrip("=")) for r in in_order]
    for r, n in zip(in_order, numbers):  # competition ranking: 1 + the number of better rows
        assert n == numbers.index(n) + 1 and r.startswith("=") == (numbers.count(n) > 1)
    # badges name a frontier, never "fast" / "small"
    badges = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#board .badge")]
    assert badges and set(badges) <= {"Pareto: score vs latency", "Pareto: score vs memory"}
    assert "fast" not in badges and "small" not in badges
    for b in browser.find_elements(By.CSS_SELECTOR, "#board .badge"):
        title = b.get_attribute("title")
        assert "Pareto frontier" in title and "need not be fast or small" in title
    legend = browser.find_element(By.CSS_SELECTOR, "#plot-latency svg").get_attribute("innerHTML")
    assert "on the frontier (Pareto: score vs latency)" in legend


# ---- the long-context heat maps --------------------------------------------------------------


@pytest.fixture(scope="module")
def lc_board_dir(synth, tmp_path_factory):
    """Two models' long-context runs (tests/test_long_context_board.py writes them): one
    answers only at depth 100%, the other everything up to its 3000-token context."""
    import importlib.util

    path = Path(__file__).with_name("test_long_context_board.py")
    spec = importlib.util.spec_from_file_location("lc_board", path)
    lc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lc)
    root = tmp_path_factory.mktemp("lc-html")
    lc.make_lc_run(synth, root / "runs", "deep-only", lc.near_only)
    lc.make_lc_run(synth, root / "runs", HOSTILE, lambda n, d, i: True, context=3000)
    return build([root / "runs"], spec=dict(lc.SPEC, title="Long-context board"), out=root / "board")


def test_long_context_heat_maps_render_in_the_browser(lc_board_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get((lc_board_dir / "index.html").as_uri())
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    maps = browser.find_elements(By.CSS_SELECTOR, "table.heatmap")
    assert [m.find_element(By.TAG_NAME, "caption").text for m in maps] == sorted(["deep-only", HOSTILE])
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0  # the name is text
    for m in maps:
        assert m.is_displayed() and m.size["width"] > 150
        rows = m.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["1,000", "2,000", "4,000"]
        assert all(len(r.find_elements(By.TAG_NAME, "td")) == 3 for r in rows)
    deep = next(m for m in maps if m.find_element(By.TAG_NAME, "caption").text == "deep-only")
    cells = deep.find_elements(By.CSS_SELECTOR, "tbody td")
    colour = {c.text: c.value_of_css_property("background-color") for c in cells}
    assert set(colour) == {"0", "50", "100"} and len(set(colour.values())) == 3
    assert "Wilson" in cells[0].get_attribute("title")
    hostile = next(m for m in maps if m is not deep)
    na = [c for c in hostile.find_elements(By.CSS_SELECTOR, "tbody td") if c.text == "n/a"]
    assert len(na) == 3 and all("trained context (3000)" in c.get_attribute("title") for c in na)
    link = browser.find_element(By.CSS_SELECTOR, "a[href='long_context.png']")
    assert link.is_displayed() and (lc_board_dir / "long_context.png").stat().st_size > 5000
    artifacts = Path(os.environ.get("SLM_ARTIFACTS_DIR") or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView()", deep)
    assert browser.save_screenshot(str(artifacts / "long_context_heatmap.png"))

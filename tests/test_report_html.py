"""Issue 18, part 1: the interactive report, in a real (headless) browser."""

import json
import math
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO

from jnas import results
from jnas.report import html
from jnas.report import records as rec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium missing: pip install -e '.[test]'"
    )
    if not (CHROMIUM and DRIVER):
        pytest.skip("no system Chromium: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _open(driver, path):
    driver.get(path.as_uri())
    for _ in range(600):
        if driver.execute_script("return !!(window.jnasReport && jnasReport.ready)"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never became ready")


def test_report_loads_offline_and_follows_the_budgets(
    reference_search, tmp_path, browser
):
    work = tmp_path / "work"
    shutil.copytree(reference_search.workdir, work)
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", f"--workdir={work}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = work / html.REPORT
    text = page.read_text()
    assert "<script src=" not in text and "https://" not in text.split("<body>")[1]
    _open(browser, page)
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    records = results.load(work)
    data = html.report_data(records, results.load_curves(work))
    # One drawn point per record in each format that has an accuracy.
    counts = browser.execute_script(
        "return document.getElementById('memory_plot').data.slice(0, 3)"
        ".map(t => t.x.length)"
    )
    split = rec.choose_split(records)
    want = [int((~_nan(rec.accuracies(records, f, split))).sum()) for f in rec.FORMATS]
    assert counts == want and sum(want) >= len(records)
    # Move the memory slider: the highlighted fronts are jnas.pareto's.
    for value in (0, 40, 70, 100):
        browser.execute_script(
            "const s = document.getElementById('memory'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('input'));",
            value,
        )
        budgets = browser.execute_script("return jnasReport.budgets()")
        memory = budgets["memory"] if budgets["memory"] is not None else math.inf
        got = browser.execute_script("return jnasReport.fronts()")
        assert got == html.fronts(data, memory, math.inf), value
        # The latency plot draws the accuracy-vs-latency front (its own x).
        want = html.fronts(data, memory, math.inf, cost="latency")
        assert browser.execute_script("return jnasReport.latencyFronts()") == want
        drawn = browser.execute_script(
            "return document.getElementById('latency_plot').data.slice(3, 6)"
            ".map(t => t.x)"
        )
        points = data["points"]
        assert drawn == [[points[i]["latency"] for i in want[f]] for f in rec.FORMATS]
    assert browser.execute_script("return jnasReport.fronts().float32.length") > 0
    # Clicking a drawn point opens its details.
    from selenium.webdriver.common.action_chains import ActionChains

    point = browser.find_elements("css selector", "#memory_plot .scatterlayer .point")[
        0
    ]
    ActionChains(browser).move_to_element(point).click().perform()
    time.sleep(0.5)
    selected = browser.execute_script("return jnasReport.selected")
    assert selected is not None
    details = browser.find_element("id", "details").text
    assert records[selected]["hash"][:12] in details and "launch.export" in details
    for _ in range(100):  # the layer table is inflated asynchronously
        if "Layers (the IR):" in browser.find_element("id", "details").text:
            break
        time.sleep(0.05)
    details = browser.find_element("id", "details").text
    first_conv = next(n["name"] for n in records[selected]["arch"]["nodes"][1:])
    assert "Layers (the IR):" in details and first_conv in details
    # The table sorts and filters.
    name = data["points"][0]["name"]
    browser.execute_script(
        "const f = document.getElementById('filter'); f.value = arguments[0];"
        "f.dispatchEvent(new Event('input'));",
        name,
    )
    rows = browser.find_elements("css selector", "#table tr")
    assert 1 < len(rows) <= len(records) + 1 and name in rows[1].text
    # Long tables show a page of rows until "show all" is clicked.
    browser.execute_script(
        "jnasReport.view.pageSize = 1; const f = document.getElementById('filter');"
        "f.value = ''; f.dispatchEvent(new Event('input'));"
    )
    assert len(browser.find_elements("css selector", "#table tr")) == 2
    shown = browser.find_element("id", "rows_shown").text
    assert shown == f"1 of {len(records)} matching candidates shown"
    browser.find_element("id", "show_all").click()
    assert len(browser.find_elements("css selector", "#table tr")) == len(records) + 1
    assert not browser.find_element("id", "show_all").is_displayed()


def _nan(values):
    import numpy as np

    return np.isnan(np.asarray(values, float))


def test_report_of_an_empty_workdir_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launch.report", f"--workdir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0 and "holds no result records" in proc.stderr


def test_report_data_is_json_and_escapes_the_script_end():
    record = {
        "hash": "ab" * 32, "space": "x</script>", "law": "s1", "index": 0,
        "params": 1, "flops": 2, "arch": None, "feasible": True,
        "accuracy": {"float32": {"val": 0.5, "test": None}},
        "memory_bytes": {"float32": 4}, "latency_ms": {"predicted": 1.0},
        "train": {"diverged": False},
    }  # fmt: skip
    data = html.report_data([record], [])
    page = html.render(data, "t")
    assert page.count("</script>") == page.count("<script")  # none injected
    assert json.loads(json.dumps(data))["points"][0]["accuracy"]["float32"] == 0.5

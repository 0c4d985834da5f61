"""How fast the interactive report of a large workdir opens and responds.

    python benchmarks/report_open.py --workdir=runs/replay [--repeats 3]

Writes the workdir's report (``launch.report``), opens it in headless
Chromium (the system package) and prints, per repeat, the seconds from
navigation to the page being ready (plots drawn, table filled; by the
page's own clock, from navigation start, and by the driver's, which adds
its round trips: an empty page's time is printed for scale) and the
seconds a memory-budget move takes to re-highlight both plots (the
replay of the release: 1,617 records).
"""

import argparse
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from jnas.report import html


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    page = html.write_report(args.workdir)
    print(f"report written in {time.perf_counter() - start:.1f} s: {page} "
          f"({Path(page).stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(arg)
    # The driver's own round trips, for scale: an empty page, same protocol.
    blank = Path(page).with_name("blank.html")
    blank.write_text("<!DOCTYPE html><html><body><script>window.ok = true</script>")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    start = time.perf_counter()
    driver.get(blank.resolve().as_uri())
    while not driver.execute_script("return !!window.ok"):
        time.sleep(0.01)
    print(f"an empty page: {time.perf_counter() - start:.2f} s by the driver's clock")
    driver.quit()
    blank.unlink()
    for _ in range(args.repeats):
        driver = webdriver.Chrome(
            service=Service("/usr/bin/chromedriver"), options=options
        )
        start = time.perf_counter()
        driver.get(Path(page).resolve().as_uri())
        while not driver.execute_script(
            "return !!(window.jnasReport && jnasReport.ready)"
        ):
            time.sleep(0.01)
        ready = time.perf_counter() - start
        start = time.perf_counter()
        driver.execute_script(
            "const s = document.getElementById('memory'); s.value = 30;"
            "s.dispatchEvent(new Event('input'));"
        )
        moved = time.perf_counter() - start
        timing = driver.execute_script(
            "const t = jnasReport.timing; return [performance.timing.responseEnd -"
            " performance.timing.navigationStart, t.started, t.plots, t.ready]"
        )
        points = driver.execute_script("return jnasReport.pointCount()")
        print(
            f"ready {ready:.2f} s (in the page: file read {timing[0] / 1e3:.2f} s, "
            f"script started {timing[1] / 1e3:.2f} s, plots drawn "
            f"{timing[2] / 1e3:.2f} s, table {timing[3] / 1e3:.2f} s), "
            f"budget move {moved:.2f} s, {points} points drawn"
        )
        driver.quit()


if __name__ == "__main__":
    main()

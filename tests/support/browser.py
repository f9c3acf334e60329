"""Drive a transcript page in a real headless Chromium (Debian's chromium + chromium-driver, through selenium) and
print what a reviewer would see and do, as one JSON document. The tests run it inside `unshare -n` (loopback only),
so the page must work with the network off.

    python tests/support/browser.py PAGE.html [--click N] [--search TEXT] [--language CODE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait(driver, script: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("page", type=Path)
    parser.add_argument("--click", type=int, default=None)
    parser.add_argument("--search", default=None)
    parser.add_argument("--language", default=None)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(args.page.resolve().as_uri())
        wait(driver, "return document.querySelectorAll('p.line').length > 0")
        loaded = wait(driver, "const p = document.getElementById('player'); return p.readyState >= 1 && p.duration;")
        result = {
            "title": driver.title,
            "lines": [e.text for e in driver.find_elements(By.CSS_SELECTOR, "p.line")],
            "starts": driver.execute_script(
                "return [...document.querySelectorAll('p.line')].map(p => +p.dataset.start)"
            ),
            "media_duration": loaded,
            "media_error": driver.execute_script(
                "const e = document.getElementById('player').error; return e && e.code"
            ),
            "tracks": driver.execute_script(
                "return [...document.querySelectorAll('.track')].map(t => "
                "({speaker: t.dataset.speaker, turns: [...t.querySelectorAll('.turn')].map(s => +s.dataset.start)}))"
            ),
            "resources": driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)"),
        }
        if args.language:
            driver.execute_script(
                "const s = document.getElementById('language'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('change'));",
                args.language,
            )
            result["lines_after_language"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "p.line")]
        if args.click is not None:
            line = driver.find_elements(By.CSS_SELECTOR, "p.line")[args.click]
            line.click()
            start = line.get_attribute("data-start")
            wait(driver, f"return Math.abs(document.getElementById('player').currentTime - {start}) < 0.5")
            time.sleep(0.8)  # playing: the line being spoken is marked
            result["current_time"] = driver.execute_script("return document.getElementById('player').currentTime")
            result["current_lines"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "p.line.current")]
        if args.search:
            box = driver.find_element(By.ID, "search")
            box.send_keys(args.search)
            result["visible_after_search"] = [
                e.text for e in driver.find_elements(By.CSS_SELECTOR, "p.line") if e.is_displayed()
            ]
            result["marks"] = [e.text for e in driver.find_elements(By.TAG_NAME, "mark")]
        if args.screenshot:
            driver.save_screenshot(str(args.screenshot))
        result["console_errors"] = [
            entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

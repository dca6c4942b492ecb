"""A person's view: headless Chromium logs in and opens a task with a prediction in the labeling UI.

The prediction's tab (named by its model version) must be there; selected, its regions
fill the region list with their labels and scores, each marked as predicted.  The screenshot lands in
``artifacts/browser_task.png``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from harness.lsdriver import ProjectRun
from harness.processes import REPO
from integration.support import CHROMEDRIVER, CHROMIUM, ensure_predicted, module_marks, require_browser

pytestmark = module_marks()

ARTIFACTS = REPO / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,1000")
REGION = ".lsf-tree__node_type_timeseriesregion"


@pytest.fixture
def browser() -> Iterator[object]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.TemporaryDirectory(prefix="chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def test_prediction_shows_in_labeling_ui(label_studio, numeric_run: ProjectRun, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run, api = numeric_run, label_studio.api
    version = ensure_predicted(run)
    candidates = [
        (task, p) for task in run.unannotated() for p in api.predictions(task)
        if p["model_version"] == version and p["result"]
    ]
    assert candidates, f"no unannotated task has a prediction of {version} with regions"
    task, prediction = candidates[0]
    labels = sorted(r["value"]["timeserieslabels"][0] for r in prediction["result"])
    scores = sorted(f"{r['score']:.2f}" for r in prediction["result"])

    browser.get(f"{label_studio.url}/user/login")
    browser.find_element(By.NAME, "email").send_keys(label_studio.username)
    browser.find_element(By.NAME, "password").send_keys(label_studio.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "/user/login" not in d.current_url)

    browser.get(f"{label_studio.url}/projects/{run.project}/data?task={task}")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser_task.png"

    def prediction_tab(driver: object) -> object:
        for tab in driver.find_elements(By.CSS_SELECTOR, ".lsf-annotation-button"):
            names = tab.find_elements(By.CSS_SELECTOR, ".lsf-annotation-button__name")
            if names and names_version(names[0].text, version):
                return tab
        return None

    def selected_with_regions(driver: object) -> bool:
        tab = prediction_tab(driver)
        selected = tab is not None and "lsf-annotation-button_selected" in (tab.get_attribute("class") or "")
        return selected and len(driver.find_elements(By.CSS_SELECTOR, REGION)) == len(labels)

    try:
        # The labeling UI re-renders while it loads: an element found a moment ago may be gone.
        rerendered = (StaleElementReferenceException,)
        tab = WebDriverWait(browser, 60, poll_frequency=0.5, ignored_exceptions=rerendered).until(prediction_tab)
        tab.find_element(By.CSS_SELECTOR, ".lsf-annotation-button__main").click()  # show the prediction itself
        WebDriverWait(browser, 30, poll_frequency=0.5, ignored_exceptions=rerendered).until(selected_with_regions)
    finally:
        browser.save_screenshot(str(shot))
        (ARTIFACTS / "browser_task.html").write_text(browser.page_source)
    regions = browser.find_elements(By.CSS_SELECTOR, REGION)
    shown_labels = sorted(r.find_element(By.CSS_SELECTOR, ".lsf-outliner-item__title").text.strip() for r in regions)
    assert shown_labels == labels
    shown_scores = sorted(r.find_element(By.CSS_SELECTOR, ".lsf-outliner-item__control_type_score").text.strip()
                          for r in regions)
    assert shown_scores == scores
    for region in regions:  # the sparkle icon of a region that came from a prediction
        assert region.find_elements(By.CSS_SELECTOR, ".lsf-outliner-item__control_type_predict svg"), region.text
    print(f"task {task}: the {len(regions)} regions of prediction {version} shown; screenshot {shot}")


def names_version(shown: str, version: str) -> bool:
    """Whether a tab title shows ``version``; long names are cut in the middle ("v5-20261...35811Z")."""
    shown = shown.strip()
    for cut in ("...", "\u2026"):
        if cut in shown:
            head, tail = shown.split(cut, 1)
            return version.startswith(head) and version.endswith(tail) and len(head) + len(tail) > 4
    return shown == version


def test_dashboard_in_browser_matches_status(label_studio, numeric_run: ProjectRun, backend, browser):
    """The dashboard after a real training, at 1280x800: the project list, one project, one task;
    its numbers are /status's.  Screenshots land in ``artifacts/dashboard_*.png``."""
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = numeric_run
    version = ensure_predicted(run)
    status = requests.get(f"{backend.url}/status/{run.project}", timeout=30).json()
    assert status["model_version"] == version
    assert status["dashboard"] == f"/dashboard/project/{run.project}"
    [model] = status["models"]
    browser.set_window_size(1280, 800)
    ARTIFACTS.mkdir(exist_ok=True)

    def images_loaded(driver: object) -> bool:
        images = driver.find_elements(By.TAG_NAME, "img")
        return bool(images) and all(driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img) for img in images)

    browser.get(f"{backend.url}/dashboard")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-project="{run.project}"]')
    shown = {cls: row.find_element(By.CSS_SELECTOR, f"td.{cls}").text.strip()
             for cls in ("version", "tasks", "rows", "bacc", "minf1")}
    browser.save_screenshot(str(ARTIFACTS / "dashboard_projects.png"))
    assert shown == {"version": version, "tasks": str(model["data"]["tasks"]), "rows": str(model["data"]["rows"]),
                     "bacc": str(model["validation"]["balanced_accuracy"]),
                     "minf1": str(model["validation"]["min_class_f1"])}

    row.find_element(By.CSS_SELECTOR, "a").click()
    WebDriverWait(browser, 60, poll_frequency=0.5).until(images_loaded)
    browser.save_screenshot(str(ARTIFACTS / "dashboard_project.png"))
    assert browser.find_element(By.ID, "version").text == version
    assert browser.find_element(By.CSS_SELECTOR, "td.bacc").text == str(model["validation"]["balanced_accuracy"])
    assert model["stopped_because"] in browser.page_source
    listed = [int(r.get_attribute("data-task")) for r in browser.find_elements(By.CSS_SELECTOR, "tr[data-task]")]
    assert sorted(listed) == sorted(run.tasks)  # read from Label Studio's task list

    task = next(iter(run.annotations))
    browser.find_element(By.NAME, "id").send_keys(str(task))
    browser.find_element(By.CSS_SELECTOR, "form button").click()
    WebDriverWait(browser, 60, poll_frequency=0.5).until(
        lambda d: f"/task/{task}" in d.current_url and images_loaded(d))
    browser.save_screenshot(str(ARTIFACTS / "dashboard_task.png"))
    assert browser.find_element(By.ID, "version").text == version

    # A task only predicted (the export holds annotated tasks only; its prediction written after the
    # training or asked of /predict): opened from the project's task list.
    predicted_only = next(t for t in run.tasks if t not in run.annotations)
    stored = run.api.predictions(predicted_only)
    [ours] = [p for p in stored if p["model_version"] == version][-1:]
    view_file = (label_studio.tmp / "models" / f"model_project_{run.project}" / "task_views" / version
                 / f"task_{predicted_only}.npz")

    def open_predicted_only() -> None:
        browser.get(f"{backend.url}/dashboard/project/{run.project}")
        browser.find_element(By.CSS_SELECTOR, f'a[href$="/task/{predicted_only}"]').click()
        WebDriverWait(browser, 60, poll_frequency=0.5).until(
            lambda d: f"/task/{predicted_only}" in d.current_url and images_loaded(d))

    open_predicted_only()
    assert browser.find_element(By.CSS_SELECTOR, "span.annotated").text == "not annotated"
    assert browser.find_element(By.CSS_SELECTOR, "span.score").text == str(ours["score"])
    assert len(run.api.predictions(predicted_only)) == len(stored)  # the dashboard made Label Studio predict nothing
    assert view_file.exists()  # stored by /predict or on this first look, for every worker
    written = view_file.stat().st_mtime_ns
    open_predicted_only()  # the task data read back match what the view was made from: not made again
    assert view_file.stat().st_mtime_ns == written
    print(f"dashboard of project {run.project} matches /status for {version}; screenshots in {ARTIFACTS}")

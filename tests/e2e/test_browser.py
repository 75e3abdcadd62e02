"""The app in a real browser: Debian Chromium driven by Playwright against ``streamlit run app.py``.

Besides checking what a user sees, these tests take a screenshot of every page (1400 x 900). They go to
a temporary folder, or to ``$SEGDEMO_SCREENSHOTS`` when set: ``make screenshots`` sets it to
``docs/screenshots`` to re-take the README's pictures (so an ordinary test run leaves the tree clean).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from segdemo.synthetic import render_scene, scene_rng

SCREENSHOTS = Path(
    os.environ.get("SEGDEMO_SCREENSHOTS") or Path(tempfile.gettempdir()) / "segdemo-screenshots"
)
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def settle(page, timeout: float = 90_000) -> None:
    """Wait until the script run is over and every image has loaded."""
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=timeout
    )


def open_page(page, app_url: str, path: str, title: str) -> None:
    """Go to a page and wait for its first run to finish (its title is drawn first)."""
    page.goto(f"{app_url}/{path}")
    page.get_by_role("heading", name=title).first.wait_for()
    settle(page)


def image_sources(page) -> list[str]:
    return page.locator('[data-testid="stImage"] img').evaluate_all("images => images.map(i => i.src)")


def captions(page) -> list[str]:
    return page.locator('[data-testid="stImageCaption"]').all_inner_texts()


def cells(page) -> list[str]:
    """The texts of the table cells on the page (the grids keep an accessible copy of their cells)."""
    return page.locator('[data-testid="stDataFrame"] [role="gridcell"]').all_text_contents()


def wait_until(condition, timeout: float = 90.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def screenshot(page, name: str, scroll_to=None) -> Path:
    """Save the viewport as SCREENSHOTS/<name>.png, optionally with a locator scrolled to the top."""
    if scroll_to is not None:
        # Scroll the element to the top, then back by the height of Streamlit's fixed header bar.
        scroll_to.first.evaluate(
            "e => { e.scrollIntoView({block: 'start'}); let p = e.parentElement;"
            " const scrolls = n => ['auto', 'scroll'].includes(getComputedStyle(n).overflowY)"
            " && n.scrollHeight > n.clientHeight;"
            " while (p && !scrolls(p)) p = p.parentElement; if (p) p.scrollTop -= 70; }"
        )
    page.mouse.move(1395, 450)  # park the pointer in the empty margin: no hover decorations
    time.sleep(0.5)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert Image.open(path).size == (1400, 900)
    return path


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box or multiselect labelled ``label``."""
    page.get_by_role("combobox", name=re.compile(re.escape(label))).first.click()
    page.get_by_role("option", name=re.compile(re.escape(option))).first.click()
    page.keyboard.press("Escape")
    time.sleep(0.3)
    settle(page)


def test_home_lists_the_checkpoints(page, app_url):
    open_page(page, app_url, "", "Synthetic-to-real semantic segmentation")
    wait_until(lambda: "bisenet_gta5" in cells(page), what="the checkpoint table")
    assert "bisenet_cityscapes" in cells(page) and "procedural" in cells(page)
    assert page.get_by_role("button", name=re.compile("Build")).count() == 1
    screenshot(page, "home")


def test_segment_an_uploaded_photo(page, app_url, tmp_path):
    image, _ = render_scene(scene_rng(0, "target", "val", 0), "target", (640, 320))
    photo = tmp_path / "street.png"
    Image.fromarray(image).save(photo)
    open_page(page, app_url, "segment", "Segment a street scene")
    page.get_by_text("Upload a photo").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
    wait_until(lambda: len(image_sources(page)) == 2, what="the overlay")
    settle(page)
    assert captions(page)[0] == "Input" and "ms on cpu" in captions(page)[1]
    overlay = page.locator('[data-testid="stImage"] img').nth(1)
    data = overlay.screenshot()
    assert Image.open(io.BytesIO(data)).size[0] > 300  # shown at a useful size
    # The overlay is not the photo: the class colours are painted over it.
    sources = image_sources(page)
    assert sources[0] != sources[1]
    choose(page, "Checkpoints", "bisenet_gta5 (")
    wait_until(lambda: page.get_by_text("Pixels where they disagree").count() == 1, what="the disagreement")
    settle(page)
    assert len(image_sources(page)) == 4  # photo, two overlays, the disagreement map
    screenshot(page, "segment")


def test_fda_beta_slider_changes_the_translated_image(page, app_url):
    open_page(page, app_url, "fda", "FDA: Fourier domain adaptation")
    before = image_sources(page)[2]
    assert "β = 0.010" in captions(page)[2]
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="β").get_by_role("slider")
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    wait_until(lambda: "β = 0.030" in captions(page)[2], what="the caption of the new β")
    settle(page)
    after = image_sources(page)[2]
    assert after != before
    assert "19 x 19 frequencies swapped" in captions(page)[2]
    spectra = image_sources(page)[3:6]
    page.get_by_text("Zoom the spectra").click()
    wait_until(
        lambda: image_sources(page)[3:6] != spectra and image_sources(page)[3] not in spectra,
        what="the zoomed spectra",
    )
    settle(page)
    assert image_sources(page)[2] == after  # zooming changes the spectra only
    screenshot(page, "fda", scroll_to=page.locator('[data-testid="stSlider"]'))


def test_dacs_page_mixes_source_classes_into_the_target(page, app_url):
    open_page(page, app_url, "dacs", "DACS: cross-domain mixed sampling")
    wait_until(lambda: len(image_sources(page)) == 8, what="the eight DACS pictures")
    settle(page)
    assert any(c.startswith("mixed image") for c in captions(page))
    assert page.get_by_text("Pasted classes").count() == 1
    screenshot(page, "dacs", scroll_to=page.locator('[data-testid="stRadio"]'))


def test_results_shows_the_report_beside_the_checkpoints(page, app_url):
    open_page(page, app_url, "results", "Results")
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    wait_until(lambda: "bisenet_gta5_dacs (report)" in cells(page), what="the results table")
    texts = cells(page)
    assert "32.12" in texts and "bisenet_gta5 (procedural)" in texts
    assert any(c.startswith("procedural cityscapes-layout val") for c in texts)
    screenshot(page, "results")


def test_benchmark_measures_this_machine(page, app_url):
    open_page(page, app_url, "benchmark", "Benchmark")
    choose(page, "Input size", "64 x 128")
    page.get_by_role("button", name="Run the benchmark").click()
    wait_until(lambda: "run 1: bisenet (this machine)" in cells(page), what="the measured row")
    settle(page)
    assert "12.07M" in cells(page) and "12.58M" in cells(page)
    screenshot(page, "benchmark")


def test_a_page_url_on_a_fresh_server_gets_the_apps_navigation(browser, checkpoint_root, start_app, tmp_path):
    # The first request a new server process gets runs in Streamlit's legacy pages-folder mode; a bookmarked
    # page URL must still show the app's navigation, not a list of the files in pages/.
    with start_app(checkpoint_root, tmp_path / "streamlit.log") as url:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            page = context.new_page()
            open_page(page, url, "fda", "FDA: Fourier domain adaptation")
            links = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
            titles = [link.strip().split("\n")[-1] for link in links]  # each link: icon ligature, then title
            assert titles == ["Home", "Segment", "FDA", "DACS", "Evaluate", "Results", "Benchmark"]
            assert len(image_sources(page)) >= 6
        finally:
            context.close()


def test_evaluate_an_uploaded_zip_shows_the_matrix_and_the_gallery(page, app_url, tmp_path):
    import zipfile

    from segdemo.labels import colorize

    archive_path = tmp_path / "my_streets.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for i in range(2):
            image, label = render_scene(scene_rng(5, "target", "val", i), "target", (256, 128))
            for folder, picture in (("images", image), ("labels", colorize(label))):
                data = io.BytesIO()
                Image.fromarray(picture).save(data, format="PNG")
                archive.writestr(f"{folder}/street_{i}.png", data.getvalue())
    open_page(page, app_url, "evaluate", "Evaluate checkpoints on labelled images")
    page.get_by_text("Upload a zip of image / label pairs").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(archive_path))
    page.locator('[data-testid="stFileChipName"]').filter(has_text="my_streets.zip").first.wait_for()
    settle(page)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    wait_until(
        lambda: (
            page.locator('[data-testid="stPlotlyChart"]').count() == 1 and len(image_sources(page)) == 2 * 4
        ),
        timeout=180,
        what="the confusion matrix and the gallery of both images",
    )
    settle(page)
    assert "right / wrong / ignored" in captions(page)
    assert page.get_by_text(re.compile("labels read as colours")).count() >= 1
    screenshot(page, "evaluate", scroll_to=page.get_by_role("heading", name="Confusion matrix"))


def test_a_study_opens_offline_with_every_section_and_the_results_pages_numbers(
    browser, checkpoint_root, tmp_path
):
    from segdemo.results import all_result_rows, results_frame
    from segdemo.study import StudyImage, build_study, write_study

    folders = sorted(p for p in checkpoint_root.iterdir() if (p / "meta.json").is_file())
    image, label = render_scene(scene_rng(0, "target", "val", 2), "target", (320, 160))
    path = write_study(
        tmp_path / "study.html",
        build_study(
            folders,
            checkpoint_root,
            [StudyImage("val_2", image, label, "procedural val 2")],
            profile_size=(64, 128),
        ),
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    fetched = []
    context.route("**/*", lambda route: (fetched.append(route.request.url), route.continue_()))
    try:
        page = context.new_page()
        page.goto(path.as_uri())
        page.locator(".js-plotly-plot .main-svg").first.wait_for()
        assert page.locator("section h2").all_inner_texts() == [
            "Per-class IoU",
            "mIoU, and each method's gain over source only",
            "Efficiency",
            "Images through the checkpoints",
            "FDA and DACS",
        ]
        assert page.locator(".js-plotly-plot").count() == 2
        assert page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert [
            url for url in fetched if not url.startswith(("file:", "data:"))
        ] == []  # nothing from a network
        # The checkpoints' mIoU is the Results page's, cell for cell.
        frame = results_frame(all_result_rows(checkpoint_root))
        cells = page.locator("#iou td").all_inner_texts()
        for label_ in frame[frame["source"] == "checkpoint"].index:
            assert f"{frame.loc[label_, 'mIoU']:.2f}" in cells
        screenshot(page, "study")
    finally:
        context.close()

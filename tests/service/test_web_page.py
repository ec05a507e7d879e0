"""The page at ``/`` in a real browser: Debian's chromium, headless, through its chromedriver
(selenium), against a real server on the shipped model (models/repository, awnet-mnist).

The page must answer what the API answers for the same bytes (class, p_adv, verdict), crop a
photo of another aspect ratio itself instead of letting the API refuse it, and show the API's
errors. Skipped only when chromium or chromedriver is not installed (Debian packages
``chromium`` and ``chromium-driver``: scripts/install_system_deps.sh). Screenshots go to
tmp_path; with ``AWNET_WRITE_DOCS=1`` the first test also writes docs/figures/web_page.png.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.paths import EMBEDDED_DIGITS, ROOT, SHIPPED_MODEL, SHIPPED_VERSION
from tests.support.servers import Server, start_server

pytestmark = pytest.mark.slow

DOCS_FIGURE = ROOT / "docs" / "figures" / "web_page.png"
WAIT_S = 20.0
API_KEY = "page-test-key"


def _browser_paths() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
        pytest.skip(f"{' and '.join(missing)} not installed: the page test needs a real "
                    "browser (Debian packages chromium and chromium-driver; "
                    "scripts/install_system_deps.sh installs them)")
    return browser, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    browser, chromedriver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,960", "--force-device-scale-factor=1", "--lang=en-US",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    drv = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture(scope="module")
def server(shipped_repository: Path) -> Iterator[Server]:
    with start_server(shipped_repository) as srv:
        yield srv


@pytest.fixture(scope="module")
def digit() -> tuple[np.ndarray, str]:
    """A real MNIST digit of the embedded set's test split: (uint8 [28, 28], its true class)."""
    if not EMBEDDED_DIGITS.is_file():
        pytest.skip(f"{EMBEDDED_DIGITS} missing")
    with np.load(EMBEDDED_DIGITS) as data:
        i = int(data["test_idx"][0])
        return data["images"][i], str(data["class_names"][data["labels"][i]])


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _api(server: Server, body: bytes, content_type: str = "image/png", **headers: str) -> httpx.Response:
    url = f"{server.url}/v1/models/{SHIPPED_MODEL}/versions/{SHIPPED_VERSION}/classify?top_k=5"
    return httpx.post(url, content=body, headers={"Content-Type": content_type, **headers},
                      timeout=30.0)


def _open(driver: WebDriver, server: Server) -> None:
    driver.get(server.url + "/")
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#model option[data-name="{SHIPPED_MODEL}"]'),
        "the model picker never listed the shipped model")


def _upload(driver: WebDriver, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def _wait_for_answer(driver: WebDriver) -> None:
    def answered(d: WebDriver) -> bool:
        return bool(d.find_element(By.ID, "result-class").text or d.find_element(By.ID, "error").text)

    WebDriverWait(driver, WAIT_S).until(answered, "the page showed neither a result nor an error")


def _shown(driver: WebDriver) -> dict[str, object]:
    value = lambda i: driver.find_element(By.ID, i).get_attribute("data-value")  # noqa: E731
    return {
        "class": driver.find_element(By.ID, "result-class").text,
        "p_adv": float(value("p-adv")),
        "threshold": float(value("threshold")),
        "verdict": driver.find_element(By.ID, "verdict").text,
        "mix": float(value("mix")),
        "p_adv text": driver.find_element(By.ID, "p-adv").text,
        "threshold text": driver.find_element(By.ID, "threshold").text,
        "top_k": [li.get_attribute("data-class")
                  for li in driver.find_elements(By.CSS_SELECTOR, "#topk li")],
    }


def _assert_same(shown: dict[str, object], answer: dict) -> None:
    assert shown["class"] == answer["class"]
    assert shown["p_adv"] == pytest.approx(answer["p_adv"], rel=1e-6, abs=1e-12)
    assert shown["threshold"] == pytest.approx(answer["threshold"], rel=1e-9)
    assert shown["verdict"] == answer["verdict"]
    assert shown["mix"] == pytest.approx(answer["mix"], rel=1e-6, abs=1e-12)
    assert shown["top_k"] == [c["class"] for c in answer["top_k"]]
    for key in ("p_adv", "threshold"):  # the numbers as shown (3 significant digits)
        assert float(shown[f"{key} text"]) == pytest.approx(answer[key], rel=5e-3, abs=1e-12)


def _no_error(driver: WebDriver) -> None:
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.get_attribute("textContent")


def _screenshot(driver: WebDriver, path: Path) -> None:
    """The whole page: the viewport made as tall as the document for the shot (DevTools)."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1200, "height": min(max(height, 600), 2400), "deviceScaleFactor": 1,
        "mobile": False})
    try:
        assert driver.save_screenshot(str(path)), path
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_root_serves_the_page_and_stays_out_of_the_schema(server: Server):
    r = httpx.get(server.url + "/", timeout=10.0)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="docs"' in r.text and "{{" not in r.text  # the settings are filled in
    for asset in ("static/page.js", "static/page.css"):
        assert asset in r.text
        assert httpx.get(f"{server.url}/{asset}", timeout=10.0).status_code == 200
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    assert "/" not in httpx.get(server.url + "/openapi.json", timeout=10.0).json()["paths"]
    assert httpx.get(server.url + "/docs", timeout=10.0).status_code == 200


def test_page_classifies_a_real_digit_as_the_api_does(driver, server, digit, tmp_path):
    pixels, label = digit
    body = _png(Image.fromarray(pixels))
    path = tmp_path / f"digit-{label}.png"
    path.write_bytes(body)
    answer = _api(server, body).json()
    assert answer["class"] == label, answer  # the shipped model reads this digit right

    _open(driver, server)
    names = [o.get_attribute("data-name")
             for o in driver.find_elements(By.CSS_SELECTOR, "#model option")]
    assert SHIPPED_MODEL in names
    assert "28×28" in driver.find_element(By.ID, "model-info").text
    assert driver.find_element(By.LINK_TEXT, "API docs").get_attribute("href") == server.url + "/docs"
    assert not driver.find_element(By.ID, "api-key-row").is_displayed()  # no key configured
    _upload(driver, path)
    _wait_for_answer(driver)
    _no_error(driver)
    shown = _shown(driver)
    _assert_same(shown, answer)
    assert shown["class"] == label
    assert len(shown["top_k"]) == 5
    assert "sent as it is" in driver.find_element(By.ID, "prep-note").text.lower()
    assert driver.find_element(By.ID, "preview").is_displayed()

    shot = tmp_path / "web_page.png"
    _screenshot(driver, shot)
    assert shot.stat().st_size > 10_000
    if os.environ.get("AWNET_WRITE_DOCS") == "1":
        DOCS_FIGURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_FIGURE)


def test_page_centre_crops_a_photo_of_another_aspect_ratio(driver, server, digit, tmp_path):
    """224x56 with the digit (doubled to 56x56) in the middle: the API refuses it as it is; the
    page crops the centre 56x56 and gets the same answer as the API for that crop."""
    pixels, label = digit
    square = Image.fromarray(pixels).resize((56, 56), Image.Resampling.NEAREST)
    wide = Image.new("L", (224, 56), 0)
    wide.paste(square, (84, 0))
    path = tmp_path / "wide.png"
    path.write_bytes(_png(wide))
    refused = _api(server, path.read_bytes())
    assert refused.status_code == 400 and "crop or pad it first" in refused.json()["error"]
    answer = _api(server, _png(square)).json()
    assert answer["class"] == label, answer

    _open(driver, server)
    _upload(driver, path)
    _wait_for_answer(driver)
    _no_error(driver)
    assert "centre-cropped to 56x56" in driver.find_element(By.ID, "prep-note").text.lower()
    assert driver.find_element(By.ID, "sent").is_displayed()
    _assert_same(_shown(driver), answer)
    _screenshot(driver, tmp_path / "web_page_cropped.png")


def test_page_shows_the_api_error_for_a_file_that_is_no_image(driver, server, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image at all\n")
    refused = _api(server, path.read_bytes(), "application/octet-stream")
    assert refused.status_code == 415

    _open(driver, server)
    _upload(driver, path)
    _wait_for_answer(driver)
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed()
    assert "415" in error.text and refused.json()["error"] in error.text, error.text
    assert driver.find_element(By.ID, "result-class").text == ""
    _screenshot(driver, tmp_path / "web_page_error.png")


def test_page_serves_several_models_and_crops_colour_photos_to_the_model_aspect(
    driver, shipped_repository, tmp_path
):
    """The shipped model beside a fake colour model of another aspect ratio (3x24x32) and a
    version of it that fails to load: every version listed, only the ready ones selectable;
    a 320x100 colour photo is centre-cropped to 133x100 (4:3) for the colour model."""
    from tests.support import fake_model

    repo = tmp_path / "repo"
    shutil.copytree(shipped_repository / SHIPPED_MODEL, repo / SHIPPED_MODEL)
    fake_model.write_model_version(repo, "colour", "1", shape=(3, 24, 32))
    fake_model.write_model_version(repo, "colour", "2", shape=(3, 24, 32), data=b"not onnx")
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (100, 320, 3), dtype=np.uint8))
    path = tmp_path / "colour.png"
    path.write_bytes(_png(photo))
    with start_server(repo) as srv:
        url = f"{srv.url}/v1/models/colour/versions/1/classify?top_k=5"
        answer = httpx.post(url, content=_png(photo.crop((93, 0, 226, 100))),
                            headers={"Content-Type": "image/png"}, timeout=30.0).json()
        _open(driver, srv)
        options = {(o.get_attribute("data-name"), o.get_attribute("data-version")): o
                   for o in driver.find_elements(By.CSS_SELECTOR, "#model option")}
        assert set(options) == {(SHIPPED_MODEL, SHIPPED_VERSION), ("colour", "1"), ("colour", "2")}
        assert not options["colour", "2"].is_enabled()  # UNAVAILABLE: listed, not selectable
        assert options["colour", "1"].is_enabled()
        Select(driver.find_element(By.ID, "model")).select_by_value(
            options["colour", "1"].get_attribute("value"))
        assert "3×24×32 (colour)" in driver.find_element(By.ID, "model-info").text
        _upload(driver, path)
        _wait_for_answer(driver)
        _no_error(driver)
        assert "centre-cropped to 133x100" in driver.find_element(By.ID, "prep-note").text.lower()
        _assert_same(_shown(driver), answer)
        _screenshot(driver, tmp_path / "web_page_colour.png")


def test_page_sends_the_api_key_when_the_service_asks_for_one(
    driver, shipped_repository, digit, tmp_path
):
    pixels, label = digit
    path = tmp_path / "digit.png"
    path.write_bytes(_png(Image.fromarray(pixels)))
    with start_server(shipped_repository, api_key=API_KEY) as srv:
        _open(driver, srv)
        assert driver.find_element(By.ID, "api-key-row").is_displayed()
        _upload(driver, path)  # no key yet: the service's 401, as a message
        _wait_for_answer(driver)
        error = driver.find_element(By.ID, "error")
        assert error.is_displayed() and "401" in error.text and "API key" in error.text, error.text

        driver.find_element(By.ID, "api-key").send_keys(API_KEY)
        driver.find_element(By.ID, "classify").click()
        WebDriverWait(driver, WAIT_S).until(
            lambda d: d.find_element(By.ID, "result-class").text, "no result with the key")
        _no_error(driver)
        answer = _api(srv, path.read_bytes(), Authorization=f"Bearer {API_KEY}").json()
        _assert_same(_shown(driver), answer)
        assert answer["class"] == label


"""The playground in a real browser: every panel with real inputs against the committed models, what it renders,
errors as the API words them, the API key prompt, keyboard order, phone width and dark mode; screenshots of each."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from tests.browser.conftest import make_driver
from tests.conftest import ROOT, ServerProcess

pytestmark = pytest.mark.timeout(120)


def wait(driver, condition, timeout: float = 20.0, message: str = ""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a panel replaces its output when an answer arrives: an element read a moment earlier may be gone
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]) \
        .until(lambda d: condition(d), message)


def open_page(driver, url: str) -> None:
    driver.get(f"{url}/")  # the root redirects to /playground/
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), message="page never ready")


def panel(driver, name: str):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, f"panel-{name}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
    return element


def css(root, selector: str):
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, selector)


def click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def shoot(target, folder, name: str, driver=None) -> None:
    """A PNG of an element (whole, however tall: the window grows to the page for the shot) or of the window,
    palette-reduced so the committed set stays small."""
    from PIL import Image

    if driver is None:
        png = target.get_screenshot_as_png()
    else:
        size = driver.get_window_size()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(height + 200, 12000))
        driver.execute_script("window.scrollTo(0, 0)")
        try:
            png = target.screenshot_as_png
        finally:
            driver.set_window_size(size["width"], size["height"])
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(folder / f"playground-{name}.png", optimize=True)


def error_text(section) -> str:
    (error,) = css(section, ".error")
    return error.text if error.is_displayed() else ""


@pytest.fixture(scope="module")
def page(driver, live_server):
    open_page(driver, live_server.url)
    return driver


def test_the_page_loads_from_the_root_with_no_request_beyond_the_server(page, live_server):
    assert page.current_url == f"{live_server.url}/playground/"
    assert page.title == "Neuroserve playground"
    resources = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(live_server.url) for name in resources), resources
    models = httpx.get(f"{live_server.url}/v1/models").json()["data"]
    shown = {e.get_attribute("data-panel") for e in css(page, "section.panel")}
    assert {"images", "tumor", "sentiment", "translate", "chat", "traffic", "price", "detect", "server"} <= shown
    # one picker per panel, listing exactly the models of its task
    tasks = {"images": "image-classification", "tumor": "tumor-detection", "sentiment": "text-sentiment",
             "translate": "translation", "chat": "chat", "traffic": "traffic-forecast", "price": "price-forecast",
             "detect": "object-detection"}
    for name, task in tasks.items():
        options = [o.get_attribute("value") for o in css(panel(page, name), ".model-row option")]
        assert options == sorted(m["id"] for m in models if m["task"] == task)
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors  # no script error, no CSP violation


def test_images_panel_shows_top_k_bars_and_a_relevance_map(page, screenshots):
    section = panel(page, "images")
    click(page, css(section, 'button[data-example="cat.png"]')[0])
    wait(page, lambda d: (css(section, "img.preview")[0].get_attribute("src") or "").startswith("blob:"))
    from selenium.webdriver.support.ui import Select

    Select(css(section, "form select")[0]).select_by_value("3")
    css(section, "input[type=checkbox]")[0].click()  # explain
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".relevance img"), message="no relevance map")
    assert len(css(section, ".bars li")) == 3
    assert css(section, ".label-text")[0].text.lower() == "cat"
    assert page.execute_script("return arguments[0].naturalWidth", css(section, ".relevance img")[0]) > 0
    shoot(section, screenshots, "images", page)


def test_tumor_panel_shows_the_decision_against_the_threshold_and_the_card_warning(page, screenshots):
    section = panel(page, "tumor")
    wait(page, lambda d: "must not be used" in css(section, ".warning")[0].text, message="card line not shown")
    assert "NOT a medical device" in css(section, ".warning")[0].text
    click(page, css(section, 'button[data-example="scan-tumor.png"]')[0])
    wait(page, lambda d: (css(section, "img.preview")[0].get_attribute("src") or "").startswith("blob:"))
    css(section, "input[type=checkbox]")[0].click()  # explain
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".relevance img"), message="no relevance map")
    assert "Tumour suspected" in css(section, ".decision")[0].text and "threshold" in css(section, ".decision")[0].text
    assert len(css(section, ".bars li")) == 4  # the subtype head's four classes
    shoot(section, screenshots, "tumor", page)
    click(page, css(section, 'button[data-example="scan-no-tumor.png"]')[0])
    wait(page, lambda d: "no-tumor" in css(section, ".drop-caption")[0].text)
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: "No tumour found" in css(section, ".decision")[0].text)


def test_detect_panel_draws_the_boxes_over_the_picture(page, screenshots, live_server):
    section = panel(page, "detect")
    click(page, css(section, 'button[data-example="road-signs.jpg"]')[0])
    wait(page, lambda d: (css(section, "img.preview")[0].get_attribute("src") or "").startswith("blob:"))
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".detect-figure svg"), message="no boxes drawn")
    answer = httpx.post(f"{live_server.url}/v1/images/detect",
                        files={"images": ("road-signs.jpg", (ROOT / "examples" / "road-signs.jpg").read_bytes())}).json()
    found = answer["results"][0]["detections"]
    rects = css(section, ".detect-figure svg rect")
    assert found and len(rects) == len(found) == len(css(section, "ol.detections li"))
    # the SVG is in the picture's own pixels (240 x 320), so the server's boxes are drawn as they are
    svg = css(section, ".detect-figure svg")[0]
    assert page.execute_script("return arguments[0].getAttribute('viewBox')", svg) == "0 0 240 320"
    assert float(rects[0].get_attribute("x")) == pytest.approx(found[0]["box"][0], abs=0.01)
    assert found[0]["label"] in css(section, "ol.detections")[0].text.lower()  # (the page capitalises labels)
    assert page.execute_script("return arguments[0].naturalWidth", css(section, ".detect-figure img")[0]) == 240
    shoot(section, screenshots, "detect", page)
    # a threshold outside [0, 1]: the API's 422, worded as the API words it
    field = css(section, "input[type=number]")[0]
    field.send_keys("1.5")
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: "score_threshold" in error_text(section), message="no 422 shown")
    field.clear()


def test_sentiment_panel_labels_each_text_and_highlights_words(page, screenshots):
    section = panel(page, "sentiment")
    click(page, css(section, 'button[data-example="sentences"]')[0])
    wait(page, lambda d: css(section, "textarea")[0].get_attribute("value"))
    css(section, "input[type=checkbox]")[0].click()
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: len(css(section, ".result")) == 4)
    labels = [e.text for e in css(section, ".chip-label")]
    assert labels[:2] == ["positive", "negative"]
    assert len(css(css(section, ".result")[0], ".token")) >= 6  # a weight per word of "A warm, funny and beautifully acted film."
    shoot(section, screenshots, "sentiment", page)


def test_translation_panel_translates_with_the_chosen_beam(page, screenshots, live_server):
    section = panel(page, "translate")
    click(page, css(section, 'button[data-example="sentences"]')[0])
    wait(page, lambda d: css(section, "textarea")[0].get_attribute("value"))
    from selenium.webdriver.support.ui import Select

    Select(css(section, "form select")[0]).select_by_value("1")
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: len(css(section, ".translation")) == 4)
    shown = [e.text for e in css(section, ".translation")]
    direct = httpx.post(f"{live_server.url}/v1/text/translate", timeout=30, json={
        "texts": json.loads((ROOT / "examples" / "texts.json").read_text())["translate"], "beam_size": 1}).json()
    assert shown == direct["translations"]  # greedy decoding: the page shows exactly what the API answers
    assert "beam 1" in css(section, ".served-by")[0].text
    shoot(section, screenshots, "translate", page)


RECORD_LENGTHS = """
const log = arguments[0];
window.__lengths = [];
new MutationObserver(() => {
  const turns = log.querySelectorAll('.turn.assistant .text');
  if (turns.length) window.__lengths.push(turns[turns.length - 1].textContent.length);
}).observe(log, {subtree: true, childList: true, characterData: true});
"""


def test_chat_panel_streams_the_reply_token_by_token_and_stops(page, screenshots):
    section = panel(page, "chat")
    log = css(section, ".conversation")[0]
    page.execute_script(RECORD_LENGTHS, log)
    slider = css(section, "input[type=range]")[0]
    page.execute_script("arguments[0].value = '0'; arguments[0].dispatchEvent(new Event('input'))", slider)
    click(page, css(section, 'button[data-example="1"]')[0])  # "What are you doing this weekend?"
    wait(page, lambda d: css(section, "textarea")[0].get_attribute("value"))
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".turn.assistant") and not css(section, ".turn.streaming"), message="no reply")
    reply = css(section, ".turn.assistant")[0]
    # the reply arrived as several server-sent events and was shown as it grew (the browser may paint a few
    # events that came in one network read at once, so the observed lengths are at most the chunks)
    lengths = [n for n in page.execute_script("return window.__lengths") if n]
    assert int(reply.get_attribute("data-chunks")) >= 4, reply.get_attribute("data-chunks")
    assert lengths and lengths == sorted(lengths) and lengths[-1] == len(css(reply, ".text")[0].text), lengths
    assert css(reply, ".text")[0].text.strip()
    shoot(section, screenshots, "chat", page)
    # Stop: abort a reply while it streams; the reply keeps what arrived and says it was stopped.
    click(page, [b for b in css(section, "button") if b.text == "New conversation"][0])
    css(section, "textarea")[0].send_keys("Where did you go on holiday last summer?")  # greedy: 64 tokens, cut at max_tokens
    stop = [b for b in css(section, "button") if b.text == "Stop"][0]
    page.execute_script("""
      const [log, stop] = arguments;  // press Stop as the first words arrive (a person would be slower)
      new MutationObserver((_, observer) => {
        const text = log.querySelector('.turn.assistant .text');
        if (text && text.textContent.length) { observer.disconnect(); stop.click(); }
      }).observe(log, {subtree: true, childList: true, characterData: true});""", log, stop)
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".turn.stopped"), message="the reply was not stopped")
    assert not css(section, ".turn.streaming") and not stop.is_enabled()
    reply = css(section, ".turn.assistant .text")[0].text
    assert 0 < len(reply) < 150 and not reply.endswith("camping on"), reply  # cut short, kept what arrived


def test_traffic_panel_draws_history_forecast_and_band(page, screenshots):
    section = panel(page, "traffic")
    click(page, css(section, 'button[data-example="traffic.json"]')[0])
    wait(page, lambda d: "168 values" in css(section, ".hint")[0].text)
    assert css(section, "input[type=datetime-local]")[0].get_attribute("value") == "2017-10-16T00:00"
    css(section, "input[type=checkbox]")[0].click()  # explain
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, "svg.chart"))
    series = {e.get_attribute("data-series") for e in css(section, "svg.chart [data-series]")}
    assert series == {"history", "forecast", "interval"}
    assert len(css(section, "svg.chart .influence rect")) == 96  # one bar per history value shown
    labels = [e.text for e in css(section, "svg.chart .axis-label")]
    assert labels == ["2017-10-19 00:00", "forecast from 2017-10-23 00:00 →", "2017-10-23 23:00"]  # the last 96 h shown
    shoot(section, screenshots, "traffic", page)


def test_price_panel_forecasts_and_shows_a_422_as_the_api_words_it(page, screenshots, live_server):
    section = panel(page, "price")
    history = css(section, "textarea")[0]
    history.send_keys("101.5, 102, 99.8")
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: error_text(section), message="no error shown")
    api = httpx.post(f"{live_server.url}/v1/forecast/price", json={"history": [101.5, 102, 99.8], "horizon": 5,
                                                                   "model": "prices-lstm"})
    assert api.status_code == 422
    assert error_text(section).endswith(api.json()["error"])  # word for word
    assert css(section, ".status-code")[0].text == "422"
    shoot(section, screenshots, "error", page)
    history.clear()
    click(page, css(section, 'button[data-example="prices.json"]')[0])
    wait(page, lambda d: "90 values" in css(section, ".hint")[0].text)
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, "svg.chart"))
    assert not error_text(section)
    assert len(css(section, "svg.chart [data-series]")) == 3
    shoot(section, screenshots, "price", page)


def _needs(live_server, task: str, example: str) -> None:
    tasks = {m["task"] for m in httpx.get(f"{live_server.url}/v1/models").json()["data"]}
    if task not in tasks:
        pytest.skip(f"no {task} model in models/")
    if example not in httpx.get(f"{live_server.url}/playground/examples.json").json()["examples"]:
        pytest.skip(f"examples/{example} is missing")


def test_fraud_panel_scores_csv_rows_and_explains(page, screenshots, live_server):
    _needs(live_server, "fraud-scoring", "transactions.csv")
    section = panel(page, "fraud")
    click(page, css(section, 'button[data-example="transactions.csv"]')[0])
    wait(page, lambda d: css(section, "textarea")[0].get_attribute("value"))
    rows = len(css(section, "textarea")[0].get_attribute("value").strip().splitlines()) - 1  # minus the header
    css(section, "input[type=checkbox]")[0].click()
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: len(css(section, ".result")) == rows, message="no scores")
    decisions = [e.text for e in css(section, ".decision strong")]
    assert set(decisions) <= {"Fraud suspected", "Looks genuine"} and len(css(section, ".meter")) == rows
    assert len(css(css(section, ".result")[0], ".diverging li")) == 6  # the six columns that moved it most
    shoot(section, screenshots, "fraud", page)
    threshold = css(section, "input[type=number]")[0]
    threshold.send_keys("1.5")  # outside [0, 1]: the API's 422, word for word
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: error_text(section))
    assert "threshold" in error_text(section) and css(section, ".status-code")[0].text == "422"


def test_deterioration_panel_scores_a_stay(page, screenshots, live_server):
    _needs(live_server, "icu-deterioration", "icu_stay.json")
    section = panel(page, "deterioration")
    assert "NOT a medical device" in css(section, ".warning")[0].text
    click(page, css(section, 'button[data-example="icu_stay.json"]')[0])
    wait(page, lambda d: css(section, "textarea")[0].get_attribute("value"))
    css(section, "input[type=checkbox]")[0].click()  # explain
    click(page, css(section, "button[type=submit]")[0])
    wait(page, lambda d: css(section, ".decision") or error_text(section), message="no answer")
    assert not error_text(section), error_text(section)
    assert "h observed" in css(section, ".decision")[0].text and css(section, ".meter")
    assert css(section, ".diverging li")  # the measurements that moved the risk
    shoot(section, screenshots, "deterioration", page)


def test_server_panel_lists_every_model_and_opens_a_card(page, screenshots, live_server):
    section = panel(page, "server")
    models = httpx.get(f"{live_server.url}/v1/models").json()["data"]
    assert len(css(section, "tbody tr")) == len(models)
    shoot(section, screenshots, "server", page)
    button = [b for b in css(section, "tbody button") if b.text == "tumor-cnn"][0]
    click(page, button)
    dialog = css(page, "#card-dialog")[0]
    wait(page, lambda d: dialog.get_attribute("open") is not None and css(dialog, "blockquote"))
    assert "Model card: tumor-cnn" in css(dialog, "h2")[0].text
    assert "NOT a medical device" in css(dialog, "blockquote")[0].text
    assert css(dialog, "table")  # the card's tables are tables
    figures = css(dialog, "img.card-figure")  # roc.png, confusion matrices, ... fetched with the key, shown as blob:
    assert len(figures) >= 4
    wait(page, lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", f)
                             for f in figures), message="card figures not shown")
    shoot(page, screenshots, "card")
    from selenium.webdriver.common.keys import Keys

    dialog.send_keys(Keys.ESCAPE)
    wait(page, lambda d: dialog.get_attribute("open") is None)
    assert page.switch_to.active_element == button  # focus returns to what opened the card


def test_keyboard_order_and_labels(page):
    unlabelled = page.execute_script("""
      return [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.outerHTML.slice(0, 80));""")
    assert not unlabelled
    page.refresh()  # focus navigation starts from the top of a freshly loaded page
    wait(page, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    order = []
    for _ in range(20):
        ActionChains(page).send_keys(Keys.TAB).perform()
        order.append(page.execute_script(
            "const e = document.activeElement; return e.dataset.example || e.textContent.trim().slice(0, 20) || e.type || e.tagName"))
    assert order[0] == "Skip to the panels"
    images = order[order.index("Images"):]
    # nav links, then the first panel: model picker, its card, the picture, its examples, the options, Send
    assert images[:2] == ["Images", "Tumour"]
    panel_start = order.index("Model card") - 1
    assert order[panel_start + 2:panel_start + 4] == ["file", "cat.png"], order


def test_phone_width_and_dark_mode(browser_missing, live_server, screenshots):
    if browser_missing:
        pytest.skip(browser_missing)
    phone = make_driver(500, 844)  # headless chromium's smallest window; the viewport is set below
    try:
        phone.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1,
                                                                       "mobile": True})
        open_page(phone, live_server.url)
        assert phone.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        shoot(phone, screenshots, "phone")
        light = phone.execute_script("return getComputedStyle(document.body).backgroundColor")
        phone.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        dark = phone.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert light != dark
        phone.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        phone.set_window_size(1280, 900)
        section = panel(phone, "traffic")
        click(phone, css(section, 'button[data-example="traffic.json"]')[0])
        wait(phone, lambda d: "168 values" in css(section, ".hint")[0].text)
        click(phone, css(section, "button[type=submit]")[0])
        wait(phone, lambda d: css(section, "svg.chart"))
        shoot(section, screenshots, "dark", phone)
    finally:
        phone.quit()


def test_a_server_with_keys_asks_for_one_and_keeps_it_in_the_tab(browser_missing, tmp_path, screenshots):
    if browser_missing:
        pytest.skip(browser_missing)
    server = ServerProcess(ROOT / "models", log_path=tmp_path / "keyed.log",
                           env={"NEUROSERVE_API_KEYS": "play-key-123", "NEUROSERVE_LOAD_MODELS": "cifar10-small"})
    drv = make_driver()
    try:
        server.wait_ready(60)
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        assert httpx.get(f"{server.url}/playground/").status_code == 200  # the page itself needs no key
        drv.get(f"{server.url}/")
        key_form = css(drv, "#key-form")[0]
        wait(drv, lambda d: key_form.is_displayed(), message="no key prompt")
        assert drv.switch_to.active_element == css(drv, "#key-input")[0]
        css(drv, "#key-input")[0].send_keys("wrong-key")
        css(key_form, "button")[0].click()
        wait(drv, lambda d: css(drv, "#key-error")[0].is_displayed())
        assert "missing or invalid API key" in css(drv, "#key-error")[0].text
        shoot(drv, screenshots, "key")
        css(drv, "#key-input")[0].send_keys("play-key-123")
        css(key_form, "button")[0].click()
        wait(drv, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
        assert not key_form.is_displayed()
        assert drv.execute_script("return sessionStorage.getItem('neuroserve-api-key')") == "play-key-123"
        assert drv.execute_script("return localStorage.length") == 0 and "play-key" not in drv.execute_script("return document.cookie")
        section = panel(drv, "images")
        click(drv, css(section, 'button[data-example="ship.png"]')[0])
        wait(drv, lambda d: (css(section, "img.preview")[0].get_attribute("src") or "").startswith("blob:"))
        click(drv, css(section, "button[type=submit]")[0])
        wait(drv, lambda d: css(section, ".bars li"))
        assert css(section, ".served-by")[0].text.endswith("cifar10-small v1")
    finally:
        drv.quit()
        server.stop()

"""The page of `hf-charrnn explain` in a real browser: headless Chromium (Debian's package, `make browser`) driven by
Playwright, with nothing downloaded. Every check reads the page itself (computed colours, the hover box) and compares
it with numbers computed here in Python from the model; a console error or an uncaught exception fails the test.

`HF_CHARRNN_SCREENSHOT_MODEL=FOLDER pytest tests/test_explain_browser.py -k screenshot` writes the README's picture
(docs/explain.png) from that model on a Shakespeare passage; without it the screenshot goes to a temporary folder.
"""

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from hf_charrnn.explain import activations
from hf_charrnn.explain.report import display_scale, render_report, surprisal_colour, unit_colour
from hf_charrnn.tokenization_charrnn import build_char_tokenizer

from testing_utils import tiny_model

CHROMIUM = os.environ.get("HF_CHARRNN_CHROMIUM") or next(
    (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine: `make browser` installs Debian's chromium package "
                             "(the page is tested in a real browser wherever one can be installed)")
playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is a test dependency: make install")

README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "explain.png"
BLOCK_TOKENS = 500  # page.js draws the text in blocks of this many tokens


def as_drawn(text: str) -> str:
    """The text as the page draws it: a line break keeps a visible mark, so that it can be coloured and hovered."""
    return text.replace("\n", "\u23ce\n")


def sample_text(length: int) -> str:
    """Generated text with what the page ranks units by: quotes, brackets, words, lines of varied length."""
    lines, n = [], 0
    while sum(len(line) + 1 for line in lines) < length:
        n += 1
        words = " ".join(["alpha", "beta", "gamma", "delta", "epsilon"][: 1 + n % 5])
        lines.append(f'{n}: "{words}" said (the {n % 7} of them) and [left]' + "." * (n % 3))
    return "\n".join(lines)[:length]


TEXT = sample_text(1600)
TOKENIZER = build_char_tokenizer([sample_text(30_000)])


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3, vocab_size=len(TOKENIZER), hidden_size=12)


@pytest.fixture(scope="module")
def acts(model):
    return activations(model, TEXT, tokenizer=TOKENIZER)


def write_page(model, text, path, tokenizer=TOKENIZER, name="tiny-lstm"):
    path.write_text(render_report(activations(model, text, tokenizer=tokenizer), tokenizer, name, model.config),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def page_path(model, tmp_path_factory):
    return write_page(model, TEXT, tmp_path_factory.mktemp("explain") / "explain.html")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """Opens a page file and waits until it is drawn; fails the test on any console error or page exception."""
    problems, pages = [], []

    def opener(path, width=1280, height=900):
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
                if message.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
    assert problems == []


def shown_colours(page, first: int, last: int) -> list[tuple[int, ...]]:
    colours = page.evaluate("""([first, last]) => Array.from({length: last - first}, (_, k) =>
        getComputedStyle(document.querySelector(`#text span[data-i="${first + k}"]`)).backgroundColor)""",
                            [first, last])
    return [tuple(int(v) for v in re.findall(r"\d+", colour)[:3]) for colour in colours]


def assert_colours_show(page, expected: list[tuple[int, ...]], first: int = 0):
    shown = shown_colours(page, first, first + len(expected))
    worst = max(max(abs(a - b) for a, b in zip(s, e)) for s, e in zip(shown, expected))
    assert worst <= 2, f"colours differ by up to {worst}/255 from the activations"  # 8-bit values, rounding


def unit_colours(model, acts, layer, kind, unit, first=0, last=BLOCK_TOKENS):
    states = acts.states(kind)[layer]
    scale = display_scale(model.config.cell_type, kind, states)[unit]
    return [unit_colour(float(value / scale)) for value in states[first:last, unit]]


def picker(page) -> tuple[int, str, int]:
    return (int(page.input_value("#layer")), page.input_value("#kind"), int(page.input_value("#unit-slider")))


def showing(page, what: str) -> None:
    """Waits until the page colours the text by `what` ('layer/kind/unit' or 'surprisal'): a new layer's states are
    unpacked asynchronously."""
    page.wait_for_selector(f'body[data-showing="{what}"]', timeout=10_000)


def test_the_text_is_coloured_by_the_chosen_units_activations(open_page, page_path, model, acts):
    page = open_page(page_path)
    assert page.inner_text("#text") == as_drawn(TEXT)
    layer, kind, unit = picker(page)
    first = page.locator("#ranked-lists button").first  # the page opens on the unit that ranks first
    assert (layer, kind, unit) == (int(first.get_attribute("data-layer")), first.get_attribute("data-kind"),
                                   int(first.get_attribute("data-unit")))
    assert_colours_show(page, unit_colours(model, acts, layer, kind, unit))


def test_hovering_a_character_shows_the_models_top_five_and_its_surprisal(open_page, page_path, acts):
    page = open_page(page_path)
    probabilities = torch.softmax(acts.next_logits.double(), dim=-1)
    for i in (0, 9, 141, BLOCK_TOKENS - 1):
        page.hover(f'#text span[data-i="{i}"]')
        assert page.get_attribute("#details", "data-index") == str(i) and page.is_visible("#details")
        items = page.locator("#details li")
        shown = [(items.nth(k).get_attribute("data-token"), float(items.nth(k).get_attribute("data-probability")))
                 for k in range(items.count())]
        top = probabilities[i].topk(5)
        assert [token for token, _ in shown] == TOKENIZER.convert_ids_to_tokens(top.indices.tolist())
        assert [p for _, p in shown] == pytest.approx(top.values.tolist(), abs=1e-5)
        assert f"surprisal {acts.surprisal[i].item():.2f} bits" in page.inner_text("#details")


def test_line_breaks_can_be_hovered_and_the_keyboard_steps_through_the_tokens(open_page, page_path, acts):
    page = open_page(page_path)
    newline = TEXT.index("\n")
    page.hover(f'#text span[data-i="{newline}"]')
    assert page.get_attribute("#details", "data-index") == str(newline)
    assert page.inner_text("#details").startswith("after \u23ce")
    assert f"surprisal {acts.surprisal[newline].item():.2f} bits" in page.inner_text("#details")
    page.focus("#text")
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.get_attribute("#details", "data-index") == "2"
    assert page.get_attribute('#text span[data-i="2"]', "class") == "selected"
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute("#details", "data-index") == "1"
    page.keyboard.press("Escape")
    assert page.is_hidden("#details") and page.locator("#text span.selected").count() == 0


def test_a_one_layer_gru_page_offers_hidden_states_only(open_page, tmp_path):
    gru = tiny_model(seed=4, vocab_size=len(TOKENIZER), hidden_size=12, cell_type="gru", num_layers=1)
    page = open_page(write_page(gru, TEXT, tmp_path / "gru.html"))
    assert page.locator("#layer option").all_inner_texts() == ["0"]
    assert page.locator("#kind option").all_inner_texts() == ["hidden"]
    page.fill("#unit-search", "5")
    page.press("#unit-search", "Enter")
    showing(page, "0/hidden/5")
    assert_colours_show(page, unit_colours(gru, activations(gru, TEXT, tokenizer=TOKENIZER), 0, "hidden", 5))


def test_the_picker_search_box_and_ranked_units_change_the_colours(open_page, page_path, model, acts):
    page = open_page(page_path)
    page.select_option("#layer", value="0")
    page.select_option("#kind", value="cell")
    page.fill("#unit-search", "7")
    page.press("#unit-search", "Enter")
    showing(page, "0/cell/7")
    assert picker(page) == (0, "cell", 7)
    assert_colours_show(page, unit_colours(model, acts, 0, "cell", 7))
    page.click("#next-unit")
    showing(page, "0/cell/8")
    assert_colours_show(page, unit_colours(model, acts, 0, "cell", 8))
    page.fill("#unit-search", "12")  # the layers have units 0 to 11
    page.press("#unit-search", "Enter")
    assert "no unit 12" in page.inner_text("#unit-message") and picker(page) == (0, "cell", 8)
    page.select_option("#layer", value="1")
    page.select_option("#kind", value="hidden")
    showing(page, "1/hidden/8")
    assert_colours_show(page, unit_colours(model, acts, 1, "hidden", 8))
    button = page.locator("#ranked-lists button").nth(3)
    button.click()
    chosen = (int(button.get_attribute("data-layer")), button.get_attribute("data-kind"),
              int(button.get_attribute("data-unit")))
    showing(page, "/".join(map(str, chosen)))
    assert picker(page) == chosen
    assert_colours_show(page, unit_colours(model, acts, *chosen))


def test_the_surprisal_toggle_colours_by_surprisal(open_page, page_path, acts):
    page = open_page(page_path)
    page.check("input[name=mode][value=surprisal]")
    showing(page, "surprisal")
    assert page.is_disabled("#layer") and page.is_disabled("#unit-search")  # the unit picker is off
    assert_colours_show(page, [surprisal_colour(bits) for bits in acts.surprisal[:BLOCK_TOKENS].tolist()])
    page.hover('#text span[data-i="3"]')
    assert "activation" not in page.inner_text("#details")


def test_twenty_thousand_characters_are_drawn_lazily_and_stay_correct(open_page, model, tmp_path):
    text = sample_text(20_000)
    page = open_page(write_page(model, text, tmp_path / "long.html"))
    drawn = page.locator("#text span[data-i]").count()
    assert BLOCK_TOKENS <= drawn < 20_000 and page.inner_text("#text") == as_drawn(text)  # the rest: plain text
    page.locator("#text span[data-block]").last.scroll_into_view_if_needed()
    page.wait_for_selector('#text span[data-i="19999"]')
    layer, kind, unit = picker(page)
    long_acts = activations(model, text, tokenizer=TOKENIZER)
    assert_colours_show(page, unit_colours(model, long_acts, layer, kind, unit, 19_500, 20_000), first=19_500)


def test_screenshot_of_the_page(open_page, page_path, tmp_path):
    """The README's picture, when HF_CHARRNN_SCREENSHOT_MODEL names a trained model; a smoke screenshot otherwise."""
    model_folder = os.environ.get("HF_CHARRNN_SCREENSHOT_MODEL")
    target = tmp_path / "explain.png"
    if model_folder:
        from hf_charrnn.model_loading import load_model_and_tokenizer
        from hf_charrnn.shakespeare import load_shakespeare_play

        trained, tokenizer = load_model_and_tokenizer(model_folder, device="cpu")
        passage = load_shakespeare_play()["validation"]["text"][0][:3000]
        page_path = write_page(trained, passage, tmp_path / "shakespeare.html", tokenizer, Path(model_folder).name)
        target = README_SCREENSHOT
    page = open_page(page_path, width=1200, height=760)
    page.hover('#text span[data-i="60"]')
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The chat page in a real headless Chromium (Debian's, driven by Playwright) against a live server.

MOSS_SCREENSHOTS=1 saves the screenshots of the main states into docs/screenshots/."""

import os
import re
from pathlib import Path

import httpx
import playwright.sync_api as playwright
import pytest
from server_process import ServerProcess

from moss.store import Answer, Store

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("web"), "--parallel", "2") as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids; the CSP is
    # checked on its own in test_injected_markup_cannot_run_script.
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_selector("#model option", state="attached")
    yield page
    context.close()
    assert not errors, errors


def shot(page, name):
    target = SHOTS if os.environ.get("MOSS_SCREENSHOTS") else Path(os.environ.get("TMPDIR", "/tmp"))
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"))


def ask(page, text, wait=True):
    page.fill("[data-testid=input]", text)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid=stop]", state="visible")
    if wait:
        page.wait_for_selector("[data-testid=send]", state="visible", timeout=90_000)
        page.wait_for_selector("[data-testid=msg-assistant] [data-testid=up]")


def last_answer(page):
    return page.locator("[data-testid=msg-assistant]").last


def conversation(server, page):
    conv_id = page.evaluate("S.conv.id")
    return httpx.get(f"{server.url}/v1/conversations/{conv_id}").json()


def test_answer_streams_in_and_stop_works(page, server):
    ask(page, "Write a very long essay about the history of the sea, with many sections.", wait=False)
    bubble = page.locator("[data-testid=msg-assistant] .bubble").last
    page.wait_for_function("document.querySelector('[data-testid=thread]').innerText.length > 200")
    first = len(bubble.inner_text())
    page.wait_for_function(  # the answer grows while it streams
        "n => [...document.querySelectorAll('[data-testid=msg-assistant] .bubble')].pop().innerText.length > n",
        arg=first, timeout=30_000)
    page.click("[data-testid=stop]")
    page.wait_for_selector("[data-testid=send]", state="visible", timeout=5000)
    page.wait_for_selector("[data-testid=feedback-state]")  # the saved partial answer, marked stopped
    stopped = last_answer(page).inner_text()
    assert "stopped" in stopped
    page.wait_for_timeout(1000)
    assert last_answer(page).inner_text() == stopped, "nothing more arrives after Stop"
    answer = [m for m in conversation(server, page)["messages"] if m["role"] == "assistant"][-1]
    assert answer["finish_reason"] == "cancelled" and answer["completion_tokens"] < 1000


def test_markdown_code_and_math_render(page):
    ask(page, "Show a python code block that prints hello, and the formula $E = mc^2$.")
    # The model's own text varies; the renderer is checked on a message we control as well.
    html = page.evaluate("""markdown('Some **bold**\\n\\n```python\\nprint(1)\\n```\\n\\nand $x_1^2$ and $$\\\\frac{a}{b}$$').innerHTML""")
    assert "<strong>bold</strong>" in html and "hljs" in html and "copy-code" in html
    assert 'class="katex"' in html and "katex-display" in html  # inline and display math typeset
    assert "<script" not in page.evaluate("markdown('<script>alert(1)</script><img src=x onerror=alert(1)>').innerHTML")


def test_answers_cannot_bring_forms_styles_frames_or_remote_images(page):
    html = page.evaluate("""markdown(
        '<form action="http://evil.example"><input name="q"><button>Go</button></form>' +
        '<style>body { display: none }</style><iframe src="http://evil.example"></iframe>' +
        '<textarea>x</textarea><select><option>1</option></select>' +
        '<p style="position: fixed; inset: 0">cover</p><img src="http://evil.example/t.png">' +
        '\\n\\n![tracker](https://evil.example/pixel.png) [a link](https://example.org)').innerHTML""")
    for tag in ("<form", "<input", "<button", "<style", "<iframe", "<textarea", "<select", "style=", "evil.example"):
        assert tag not in html, (tag, html)
    assert 'rel="noopener noreferrer"' in html and "cover" in html


def test_math_is_not_typeset_inside_code_and_no_text_breaks_rendering(page):
    box = page.evaluate("""(() => { const b = markdown('Run:\\n\\n```bash\\necho "$HOME/$USER"\\n```\\n\\n' +
        'or `cp $A $B`, and $x^2$ is math'); return [b.querySelector('pre code').textContent,
        b.querySelector('p code') && b.querySelector('p code').textContent, b.innerHTML]; })()""")
    block, inline, html = box
    assert '"$HOME/$USER"' in block and inline == "cp $A $B"
    assert html.count('class="katex"') == 1  # only $x^2$
    for text in ("@@MOSSMATH3@@", "@@MOSSMATH0@@ $y$", "mossmath1x2n0e and $z$", "$$", "`unclosed $a$"):
        assert page.evaluate("(t) => markdown(t).textContent.length", text) > 0, text


def test_injected_markup_cannot_run_script(browser, server):
    """Even markup that got past the sanitizer cannot run: the Content-Security-Policy forbids
    inline script and handlers."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#model option", state="attached")
    page.evaluate("""document.querySelector('#thread').insertAdjacentHTML('beforeend',
        '<img src="data:," onerror="window.pwned = 1"><a id="x" href="javascript:window.pwned = 2">x</a>')""")
    page.click("#x")
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None
    context.close()


def test_feedback_of_every_kind_survives_a_reload(page, server):
    ask(page, "What is the capital of France?")
    answer = last_answer(page)
    answer.locator("[data-testid=up]").click()
    page.wait_for_selector("[data-testid=msg-assistant] [data-testid=up].active")
    last_answer(page).locator("[data-testid=down]").click()
    page.click("[data-testid=reason-incorrect]")
    page.fill("[data-testid=comment]", "Not what I asked")
    page.click("[data-testid=submit-rating]")
    page.wait_for_selector("[data-testid=msg-assistant] [data-testid=down].active")
    last_answer(page).locator("[data-testid=better]").click()
    page.fill("[data-testid=correction-input]", "The capital of France is **Paris**.")
    page.click("[data-testid=save-correction]")
    page.wait_for_selector("[data-testid=correction]")
    last_answer(page).locator("[data-testid=compare]").click()
    page.wait_for_selector("[data-testid=pick-b]:not([disabled])", timeout=90_000)
    shot(page, "compare")
    page.click("[data-testid=pick-b]")
    page.wait_for_selector("[data-testid=pick-b].active")
    last_answer(page).locator("[data-testid=flag]").click()
    page.wait_for_selector("[data-testid=msg-assistant] [data-testid=flag].active")
    shot(page, "feedback")

    kinds = lambda: {f["kind"]: f["value"] for m in conversation(server, page)["messages"]  # noqa: E731
                     for f in m["feedback"]}
    stored = kinds()
    assert stored["rating"] == {"rating": "down", "reasons": ["incorrect"], "comment": "Not what I asked"}
    assert stored["correction"] == {"content": "The capital of France is **Paris**."}
    assert stored["comparison"]["choice"] == "other" and stored["flag"] == {"reason": ""}

    conv_id = page.evaluate("S.conv.id")
    page.reload()
    page.wait_for_selector(f"#conversations li[data-id='{conv_id}'] .title")
    page.click(f"#conversations li[data-id='{conv_id}'] .title")
    page.wait_for_selector("[data-testid=correction]")
    state = last_answer(page).locator("[data-testid=feedback-state]").inner_text()
    assert "Rated bad: Incorrect" in state and "Flagged" in state and "preferred B" in state
    assert "Paris" in last_answer(page).locator("[data-testid=correction]").inner_text()

    last_answer(page).locator("[data-testid=flag]").click()  # withdraw the flag
    page.wait_for_selector("[data-testid=msg-assistant] [data-testid=flag]:not(.active)")
    assert "flag" not in kinds()


def test_a_correction_is_remembered_at_once_and_can_be_forgotten(page, server):
    ask(page, "Who founded the Quillmere Lighthouse Society?")
    last_answer(page).locator("[data-testid=better]").click()
    page.fill("[data-testid=correction-input]", "Edda Thornvik founded the Quillmere Lighthouse Society.")
    page.click("[data-testid=save-correction]")
    note = page.wait_for_selector("[data-testid=will-remember]")
    assert note.get_attribute("data-scope") == "you" and "Moss will remember this" in note.inner_text()
    ask(page, "Who established the Quillmere Lighthouse Society?")
    marker = last_answer(page).locator("[data-testid=memory-marker]")
    marker.click()  # the marker opens the memories the answer used
    used = last_answer(page).locator("[data-testid=used-memory]")
    assert used.count() == 1 and "Edda Thornvik" in used.inner_text()
    shot(page, "memory")
    page.click("[data-testid=memories-open]")
    item = page.locator("[data-testid=memory-item]", has_text="Quillmere")
    assert item.get_attribute("data-scope") == "you"
    item.locator("[data-testid=forget-memory]").click()
    page.wait_for_selector("[data-testid=memory-item][data-scope=gone]")
    page.click("[data-testid=memories-close]")
    ask(page, "Who established the Quillmere Lighthouse Society?")
    assert last_answer(page).locator("[data-testid=memory-marker]").count() == 0


def test_tools_are_switched_per_conversation_and_their_calls_unfold(page, server):
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/chat/completions") else None)
    page.click("[data-testid=tools-toggle]")
    assert page.get_attribute("[data-testid=tools-toggle]", "aria-pressed") == "true"
    ask(page, "What is 6 * 7?")
    assert sent[-1]["builtin_tools"] == ["calculator", "solver", "knowledge_search"]
    runs = conversation(server, page)["messages"][-1]["tool_runs"] or []
    assert last_answer(page).locator("[data-testid=tool-run]").count() == len(runs)  # what the small model called
    page.click("[data-testid=new-chat]")
    assert page.get_attribute("[data-testid=tools-toggle]", "aria-pressed") == "false"  # a new conversation: off
    ask(page, "Hello")
    assert "builtin_tools" not in sent[-1]
    # An answer that used tools (stored as the server stores one), reopened: its calls fold out.
    store = Store(f"sqlite:///{server.home}/moss.db")
    said = Answer("17 * 23 is 391.", "smollm2-135m-instruct", [], {}, 1, 1, 0, "stop", 1, 1, tool_runs=[
        {"name": "calculator", "arguments": '{"expression": "17 * 23"}', "result": "17 * 23 = 391", "ok": True}])
    store.record(store.local_user().id, [{"role": "user", "content": "What is 17 * 23?"}], [said])
    store.close()
    page.reload()
    page.locator("#conversations li", has_text="17 * 23").click()
    details = page.wait_for_selector("[data-testid=tool-runs]")
    details.click()
    assert "calculator" in page.locator("[data-testid=tool-run]").inner_text() and "391" in details.inner_text()


def test_an_admin_reviews_feedback_and_its_author_sees_where_it_stands(page, server):
    """The server's own user is its admin (no --auth, on this machine): the page shows the review."""
    ask(page, "Who founded the Quorvane Library?")
    last_answer(page).locator("[data-testid=better]").click()
    page.fill("[data-testid=correction-input]", "The Quorvane Library was founded by Elsbeth Marrow.")
    page.click("[data-testid=save-correction]")
    standing = page.wait_for_selector("[data-testid=standing-correction]")
    assert standing.get_attribute("data-state") == "pending" and "pending" in standing.inner_text()
    feedback_id = next(f["id"] for m in conversation(server, page)["messages"] for f in m["feedback"])

    page.click("[data-testid=review-open]")
    item = page.wait_for_selector(f"[data-testid=review-item][data-id='{feedback_id}']")
    assert "Elsbeth Marrow" in item.inner_text() and "Who founded the Quorvane Library?" in item.inner_text()
    shot(page, "review")
    page.fill(f"[data-testid=review-item][data-id='{feedback_id}'] [data-testid=reject-reason]", "made up")
    page.click(f"[data-testid=review-item][data-id='{feedback_id}'] [data-testid=reject]")
    page.wait_for_selector(f"[data-testid=review-item][data-id='{feedback_id}']", state="detached")  # decided
    page.select_option("[data-testid=review-state]", "rejected")
    item = page.wait_for_selector(f"[data-testid=review-item][data-id='{feedback_id}'][data-state=rejected]")
    assert "made up" in item.inner_text()
    page.click("[data-testid=review-close]")

    page.click("[data-testid=my-feedback]")  # its author's own list
    mine = page.wait_for_selector(f"[data-testid=review-item][data-id='{feedback_id}']")
    assert mine.get_attribute("data-state") == "rejected" and not page.is_visible("[data-testid=review-state]")
    page.click("[data-testid=review-close]")
    conv_id = page.evaluate("S.conv.id")
    page.reload()
    page.wait_for_selector(f"#conversations li[data-id='{conv_id}'] .title")
    page.click(f"#conversations li[data-id='{conv_id}'] .title")
    standing = page.wait_for_selector("[data-testid=standing-correction]")
    assert standing.get_attribute("data-state") == "rejected" and "made up" in standing.inner_text()


def test_regenerate_and_edit_make_branches(page, server):
    ask(page, "Name a fruit.")
    first_answer = last_answer(page).get_attribute("data-id")
    last_answer(page).locator("[data-testid=regenerate]").click()
    page.wait_for_selector("[data-testid=msg-assistant] [data-testid=branch-count]", timeout=90_000)
    page.wait_for_selector("[data-testid=send]", state="visible", timeout=90_000)
    assert last_answer(page).locator("[data-testid=branch-count]").inner_text() == "2/2"
    page.locator("[data-testid=msg-user] [data-testid=edit]").first.click()
    page.fill("[data-testid=edit-input]", "Name a vegetable.")
    page.click("[data-testid=edit-send]")
    page.wait_for_selector("[data-testid=send]", state="visible", timeout=90_000)
    page.wait_for_selector("[data-testid=msg-user] [data-testid=branch-count]")
    user = page.locator("[data-testid=msg-user]").first
    assert user.locator("[data-testid=branch-count]").inner_text() == "2/2"
    assert "Name a vegetable." in user.inner_text()
    user.locator("[data-testid=branch-prev]").click()
    assert "Name a fruit." in page.locator("[data-testid=msg-user]").first.inner_text()
    assert last_answer(page).locator("[data-testid=branch-count]").inner_text() == "2/2"
    messages = {m["id"]: m for m in conversation(server, page)["messages"]}
    texts = [m["content"] for m in messages.values()]
    assert "Name a fruit." in texts and "Name a vegetable." in texts
    siblings = [m for m in messages.values() if m["parent_id"] == messages[first_answer]["parent_id"]]
    assert len(siblings) == 2  # the first answer is kept beside its regeneration


def test_sidebar_rename_search_delete(page):
    ask(page, "Tell me about penguins.")
    page.click("[data-testid=new-chat]")
    ask(page, "Tell me about volcanoes.")
    item = page.locator("#conversations li").first
    item.locator("[data-testid=rename]").click()
    page.fill("[data-testid=rename-input]", "Volcano notes")
    page.keyboard.press("Enter")
    page.wait_for_selector("#conversations li .title >> text=Volcano notes")
    page.fill("[data-testid=search]", "penguin")
    page.wait_for_function("document.querySelectorAll('#conversations li').length === 1")
    assert "penguins" in page.locator("#conversations li").first.inner_text().lower()
    page.fill("[data-testid=search]", "")
    page.wait_for_selector("#conversations li .title >> text=Volcano notes")
    volcano = page.locator("#conversations li", has_text="Volcano notes")
    volcano.locator("[data-testid=delete]").click()
    volcano.locator("[data-testid=delete]").click()  # the second click confirms
    page.wait_for_selector("#conversations li .title >> text=Volcano notes", state="detached")


def test_chinese_ui_dark_theme_and_phone_width(page, browser, server):
    ask(page, "Hello!")
    page.click("[data-testid=lang]")
    assert page.inner_text("[data-testid=send]") == "发送"
    assert page.get_attribute("[data-testid=input]", "placeholder").startswith("给 Moss 发消息")
    assert page.inner_text("[data-testid=new-chat]") == "+ 新对话"
    assert page.get_attribute("[data-testid=msg-assistant] [data-testid=up]", "title") == "好回答"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    shot(page, "desktop-zh")
    page.click("[data-testid=theme]")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    shot(page, "desktop-dark")
    page.reload()  # both choices are remembered
    page.wait_for_selector("#model option", state="attached")
    assert page.inner_text("[data-testid=send]") == "发送"
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.click("[data-testid=lang]")
    page.click("[data-testid=theme]")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    small = phone.new_page()
    small.goto(server.url)
    small.wait_for_selector("#model option", state="attached")
    sidebar_right = "document.querySelector('#sidebar').getBoundingClientRect().right"
    assert small.evaluate(sidebar_right) <= 0  # the list slides away on a phone
    small.fill("[data-testid=input]", "What is 2+2?")
    small.click("[data-testid=send]")
    small.wait_for_selector("[data-testid=send]", state="visible", timeout=90_000)
    small.wait_for_selector("[data-testid=msg-assistant] [data-testid=up]")
    width = small.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "no sideways scrolling at phone width"
    shot(small, "phone")
    small.click("[data-testid=menu]")
    small.wait_for_timeout(400)
    assert small.evaluate(sidebar_right) > 200 and small.is_visible("#conversations li")
    shot(small, "phone-menu")
    phone.close()


def test_sign_in_with_an_api_key(browser, tmp_path):
    server = ServerProcess(tmp_path, "--auth")
    key = server.moss("users", "add", "erin").stdout.strip()
    with server:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.url)
        page.wait_for_selector("[data-testid=signin]", state="visible")
        page.fill("[data-testid=key]", "moss-wrong")
        page.click("[data-testid=signin-submit]")
        page.wait_for_selector("#signin-error", state="visible")
        page.fill("[data-testid=key]", key)
        page.click("[data-testid=signin-submit]")
        page.wait_for_selector("[data-testid=signin]", state="hidden")
        page.wait_for_selector("#model option", state="attached")
        ask(page, "Hi!")
        convs = httpx.get(server.url + "/v1/conversations", headers={"Authorization": f"Bearer {key}"}).json()
        assert len(convs["data"]) == 1
        # the key went into an HttpOnly cookie: no script in the page (injected or not) can read it
        assert key not in page.evaluate("document.cookie + JSON.stringify(localStorage) + JSON.stringify(S)")
        assert any(c["name"] == "moss_key" and c["httpOnly"] and c["sameSite"] == "Strict"
                   for c in context.cookies())
        page.reload()  # a reload keeps the session
        page.wait_for_selector("#model option", state="attached")
        assert page.is_hidden("[data-testid=signin]")
        page.click("[data-testid=signout]")
        page.wait_for_selector("[data-testid=signin]", state="visible")
        assert not [c for c in context.cookies() if c["name"] == "moss_key"]
        context.close()


def test_desktop_screenshot(page):
    ask(page, "Show a short python function that reverses a string, with a one-line explanation.")
    page.wait_for_timeout(200)
    shot(page, "desktop")
    assert re.search(r"\w", last_answer(page).inner_text())

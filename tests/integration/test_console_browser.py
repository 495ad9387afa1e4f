"""The web console in a real browser (headless Chromium through the
DevTools protocol, tests/lib/browser.py) against a real TCG guest: the VNC
page shows the guest's screen and takes its keyboard; the serial page runs
a command typed into it and shows its output."""

import io
import time

import pytest
from PIL import Image

import browser as cdp
from test_console_guest import cnode  # noqa: F401  (the fixture: vpsd, ledger, edge port, guest spec)


@pytest.fixture
def chromium(tmp_path):
    with cdp.Browser(tmp_path) as b:
        yield b


def page_url(port, kind, ticket):
    return f"https://127.0.0.1:{port}/{kind}.html#ticket={ticket}"


CANVAS_RECT = """(() => { const c = document.querySelector('#screen canvas');
    if (!c || !c.width) return null;
    const r = c.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height, fbw: c.width, fbh: c.height}; })()"""


def lit_pixels(png, rect, row=None):
    """Pixels of the canvas area (or of one text row of it: VGA text mode
    has 16-pixel rows) brighter than a dark background: the glyphs of a
    text console."""
    img = Image.open(io.BytesIO(png)).convert("L")
    top, height = rect["y"], rect["h"]
    if row is not None:
        height = rect["h"] * 16 / rect["fbh"]
        top += row * height
    box = (int(rect["x"]), int(top), int(rect["x"] + rect["w"]), int(top + height))
    return sum(1 for v in img.crop(box).getdata() if v > 90)


def wait_lit(page, rect, predicate, what, shot, timeout=30):
    """Screenshots until predicate(screenshot) holds; its value. The last
    screenshot is kept in the file shot, either way."""
    deadline = time.monotonic() + timeout
    while True:
        png = page.screenshot()
        shot.write_bytes(png)
        n = predicate(png)
        if n:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout} s (screenshot {shot})")
        time.sleep(0.5)


def test_vnc_page_shows_the_guest_screen_and_types_into_it(cnode, chromium, tmp_path):
    v, ledger, port, s = cnode
    page = chromium.open(page_url(port, "vnc", ledger.ticket(s["uuid"], s["account_id"], kind="vnc")))
    page.wait_for("document.body.dataset.state === 'connected'", timeout=30)
    # The ticket left the address bar as soon as the page read it.
    assert "ticket" not in page.evaluate("location.href")
    rect = page.wait_for(CANVAS_RECT, timeout=30)
    assert rect["fbw"] >= 640 and rect["fbh"] >= 400, rect  # the guest's VGA mode, not a placeholder
    area = rect["w"] * rect["h"]
    # The first VT: boot messages and a root prompt, light grey on black.
    full = wait_lit(page, rect, lambda png: (n := lit_pixels(png, rect)) > area * 0.01 and n,
                    "the guest's screen stays blank", tmp_path / "vnc-1-boot.png")

    # Keys typed into the page reach the guest through RFB: `clear` empties
    # its screen but for a prompt.
    page.evaluate("document.querySelector('#screen canvas').focus()")
    page.type_keys("clear\r")
    wait_lit(page, rect, lambda png: lit_pixels(png, rect) < full / 3 and lit_pixels(png, rect, row=1) == 0,
             f"`clear` typed, the screen keeps more than a third of its {full} lit pixels",
             tmp_path / "vnc-2-clear.png")
    # And the command's output is the second row, as long as the first.
    page.type_keys("echo " + "W" * 60 + "\r")
    wait_lit(page, rect, lambda png: lit_pixels(png, rect, row=1) > lit_pixels(png, rect, row=0) / 2,
             "no output row under `echo WWW…`", tmp_path / "vnc-3-echo.png")
    assert "console session opened" in v.log_text() and 'kind=vnc' in v.log_text()


def terminal_text(page):
    return page.evaluate("""(() => { const b = vpsdTerminal.buffer.active; const out = [];
        for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
        return out.join('\\n'); })()""")


def test_serial_page_runs_a_typed_command(cnode, chromium):
    v, ledger, port, s = cnode
    page = chromium.open(page_url(port, "serial", ledger.ticket(s["uuid"], s["account_id"], kind="serial")))
    page.wait_for("document.body.dataset.state === 'connected'", timeout=30)
    assert "ticket" not in page.evaluate("location.href")
    # A fresh prompt first: the shell has been waiting since boot.
    page.press("Enter")
    page.wait_for("vpsdTerminal.buffer.active.getLine(vpsdTerminal.buffer.active.cursorY"
                  " + vpsdTerminal.buffer.active.baseY).translateToString(true).includes('#')", timeout=30)
    page.insert_text("echo browser-$((6*7))")
    page.press("Enter")
    deadline = time.monotonic() + 30
    while True:
        text = terminal_text(page)
        # The command line shows "browser-$((6*7))": only the shell's output
        # is a line of its own reading browser-42.
        if "browser-42" in text.splitlines() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lines = text.splitlines()
    assert "browser-42" in lines, text
    assert any("echo browser-$((6*7))" in line for line in lines), text

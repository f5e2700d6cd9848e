"""Open an `mmer analyze -f html` report in headless Chromium and check that it works for real.

    python tools/check_html_report.py report.html [--screenshot docs/analyze_report.png]

Drives Chromium over the DevTools protocol (`--remote-debugging-port`, websocket-client) and checks,
for the first analysed clip: the video loads and plays (its time advances), the timeline cursor
follows it, a click on the timeline seeks the video and moves the "now" window, seeking to a word's
start highlights that word, on a 390 px wide (phone) viewport nothing overflows sideways, the print
stylesheet hides the player; and that the page logged no console error, no uncaught exception and
no failed request. Prints one line per problem and exits 1 when there is any, 0 otherwise; exits 2
when Chromium cannot be started (not installed: `apt-get install chromium`).

Needs the `chromium` program (Debian's package) and the `websocket-client` package (the test extra).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DESKTOP = (1200, 900)  # viewport px for the checks and the screenshot
PHONE_WIDTH = 390
STARTUP_S = 30.0
PLAY_S = 1.5  # how long the video plays before its time is checked


def find_browser() -> str | None:
    """The Chromium executable: $CHROMIUM, else the first of BROWSERS on PATH."""
    return os.environ.get("CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)


class DevTools:
    """A minimal Chrome DevTools protocol client for one page target; keeps every event seen."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.socket = websocket.create_connection(ws_url, timeout=STARTUP_S, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return True
            self.socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.events.append(json.loads(self.socket.recv()))
            except Exception:  # noqa: BLE001 - a receive timeout just ends this wait
                break
        return any(e.get("method") == method for e in self.events)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited); raises on a thrown error."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def pause(self, seconds: float) -> None:
        """Let the page run, collecting events meanwhile."""
        self.wait_for("(none)", seconds)


def console_problems(events: list[dict]) -> list[str]:
    """Console errors and warnings, uncaught exceptions and failed loads among DevTools events."""
    problems = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            problems.append(f"console {params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            problems.append(f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            problems.append(f"browser log {entry['level']}: {entry.get('text')} {entry.get('url', '')}".rstrip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params.get('errorText')}")
    return problems


def page_checks(tools: DevTools) -> list[str]:
    """Play, follow, seek, highlight, phone width and print checks on the first analysed clip."""
    problems = []
    state = tools.evaluate("""(() => {
        const s = document.querySelector('section.clip[data-clip]');
        if (!s) return null;
        const m = s.querySelector('.media');
        return {sections: document.querySelectorAll('section.clip').length, ready: m.readyState,
                error: m.error && m.error.code, src: m.currentSrc,
                data: JSON.parse(s.querySelector('script.clip-data').textContent)};
    })()""")
    if state is None:
        return ["no analysed clip section in the report"]
    data = state["data"]
    for _ in range(50):  # up to 5 s for the media to load its metadata
        ready = tools.evaluate("document.querySelector('section.clip[data-clip] .media').readyState")
        if ready >= 1:
            break
        tools.pause(0.1)
    else:
        return [f"the media never loaded ({state['src']}, error code {state['error']})"]

    clip = "document.querySelector('section.clip[data-clip]')"
    media = f"{clip}.querySelector('.media')"
    tools.evaluate(f"{media}.muted = true, {media}.play()")
    tools.pause(PLAY_S)
    played = tools.evaluate(f"({{t: {media}.currentTime, x: +{clip}.querySelector('.cursor').getAttribute('x1')}})")
    if not played["t"] > 0.2:
        problems.append(f"the video does not play: currentTime {played['t']:.2f} s after {PLAY_S} s")
    if abs(played["x"] - played["t"]) > 0.6:
        problems.append(f"the cursor does not follow playback: at x={played['x']:.2f} s, video at {played['t']:.2f} s")
    tools.evaluate(f"{media}.pause()")

    target = 0.75 * data["duration"]
    box = tools.evaluate(f"(() => {{ const svg = {clip}.querySelector('.lane svg');"
                         " svg.scrollIntoView({block: 'center'}); const r = svg.getBoundingClientRect();"
                         " return {x: r.left, y: r.top, w: r.width, h: r.height}; })()")
    tools.call("Input.dispatchMouseEvent", type="mousePressed", x=box["x"] + 0.75 * box["w"], y=box["y"] + box["h"] / 2,
               button="left", clickCount=1)
    tools.call("Input.dispatchMouseEvent", type="mouseReleased", x=box["x"] + 0.75 * box["w"], y=box["y"] + box["h"] / 2,
               button="left", clickCount=1)
    tools.pause(0.5)
    seeked = tools.evaluate(f"({{t: {media}.currentTime, span: {clip}.querySelector('.now-span').textContent,"
                            f" x: +{clip}.querySelector('.cursor').getAttribute('x1')}})")
    window = next(w for w in reversed(data["windows"]) if w["start"] <= target)
    if abs(seeked["t"] - target) > 0.25:
        problems.append(f"a click at 75% of the timeline seeks to {seeked['t']:.2f} s, not {target:.2f} s")
    if not seeked["span"].startswith(f"{window['start']:.1f}"):
        problems.append(f"after seeking to {target:.2f} s the 'now' window reads {seeked['span']!r}")
    if abs(seeked["x"] - seeked["t"]) > 0.05:
        problems.append("the cursor does not move to the seeked time")

    if data["words"]:
        text, start, end = data["words"][len(data["words"]) // 2]
        tools.evaluate(f"{media}.currentTime = {(start + end) / 2}")
        tools.pause(0.5)
        spoken = tools.evaluate(f"Array.from({clip}.querySelectorAll('.transcript .w.spoken'), w => w.textContent)")
        if spoken != [text]:
            problems.append(f"at the word {text!r} the highlighted words are {spoken}")
    else:
        problems.append("the clip has no timed words to highlight")

    tools.call("Emulation.setDeviceMetricsOverride", width=PHONE_WIDTH, height=800, deviceScaleFactor=1, mobile=True)
    tools.pause(0.3)
    width = tools.evaluate("document.documentElement.scrollWidth")
    if width > PHONE_WIDTH + 1:
        problems.append(f"on a {PHONE_WIDTH} px wide phone the page is {width} px wide (sideways scrolling)")
    tools.call("Emulation.setDeviceMetricsOverride", width=DESKTOP[0], height=DESKTOP[1], deviceScaleFactor=1, mobile=False)
    tools.call("Emulation.setEmulatedMedia", media="print")
    if tools.evaluate(f"getComputedStyle({media}).display") != "none":
        problems.append("the print stylesheet does not hide the player")
    tools.call("Emulation.setEmulatedMedia", media="")
    return problems


def screenshot(tools: DevTools, path: Path, at_s: float) -> None:
    """PNG of the first clip's section (video paused at `at_s` seconds), at the desktop width."""
    tools.evaluate("document.querySelector('section.clip[data-clip] .media').currentTime = " + repr(at_s))
    tools.pause(0.8)
    box = tools.evaluate("(() => { const r = document.querySelector('section.clip[data-clip]').getBoundingClientRect();"
                         " return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; })()")
    shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": box["x"], "y": box["y"], "width": box["w"], "height": box["h"], "scale": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    png = base64.b64decode(shot["data"])
    try:  # a 256-colour PNG is about a third of the size (Pillow comes with matplotlib)
        from PIL import Image

        Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(path, optimize=True)
    except ImportError:
        path.write_bytes(png)


def check_report(report: Path, shot: Path | None = None, shot_at_s: float = 2.5) -> list[str]:
    """Open `report` in headless Chromium; the problems found (empty: all good). Raises
    FileNotFoundError when no Chromium is installed, RuntimeError when it does not start."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install Debian's `chromium`, or set $CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="mmer-chromium-") as profile:
        command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                   "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
                   "--remote-debugging-port=0", f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "about:blank"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + STARTUP_S
            while not (port_file.is_file() and port_file.read_text().strip()):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{browser} did not start (exit code {process.poll()})")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=STARTUP_S) as response:
                pages = [t for t in json.load(response) if t.get("type") == "page"]
            tools = DevTools(pages[0]["webSocketDebuggerUrl"])
            for domain in ("Runtime", "Log", "Network", "Page"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=report.resolve().as_uri())
            if not tools.wait_for("Page.loadEventFired", STARTUP_S):
                return ["the report did not finish loading"]
            problems = page_checks(tools)
            if shot is not None:
                screenshot(tools, shot, shot_at_s)
            tools.pause(0.3)
            return problems + console_problems(tools.events)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="an HTML report written by `mmer analyze -f html`")
    parser.add_argument("--screenshot", type=Path, help="also save a PNG of the first clip's section here")
    parser.add_argument("--at", type=float, default=2.5, help="video time (s) of the screenshot (default 2.5)")
    args = parser.parse_args()
    try:
        problems = check_report(args.report, args.screenshot, args.at)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"check_html_report: cannot run: {err}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"check_html_report: {line}", file=sys.stderr)
    print(f"check_html_report: {args.report}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""A headless Chromium driven through the DevTools protocol over a pipe (no dependencies).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its file
descriptor 3 and writes answers and events to descriptor 4, one JSON message per
NUL-terminated chunk. That needs no WebDriver, no websocket library and no network port.
Used by ``tests/test_map.py`` and ``benchmarks/map_html.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

#: flags for a headless Chromium that asks no server for anything
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio",
         "--hide-scrollbars", "--enable-unsafe-swiftshader", "--use-angle=swiftshader")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable, or None: ``$CHROMIUM`` wins."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, or stopped answering."""


class Browser:
    """One headless Chromium with one page; ``call`` sends a command to that page.

    Events are collected in ``self.events`` (a list of ``(method, params)``) from the
    moment the page is attached; :meth:`clear_events` forgets them.
    """

    def __init__(self, executable: str | None = None, width: int = 1100, height: int = 800,
                 timeout: float = 60.0):
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("no Chromium found (install Debian's chromium)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="simcne-chromium-")
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        args = [executable, *FLAGS, f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]

        def pipes_at_3_and_4():  # in the child, before exec; dup2 makes them inheritable
            a = os.dup(to_chrome_r)  # copies first, so that neither dup2 overwrites the other
            b = os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)  # in case a dup2 above had nothing to do
            os.set_inheritable(4, True)

        # close_fds=False: Python's own descriptors are not inheritable (PEP 446), so only
        # 0-2 and the two pipes reach Chromium
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, close_fds=False,
                                      preexec_fn=pipes_at_3_and_4)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._w = to_chrome_w
        self._r = from_chrome_r
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: list[tuple[str, dict]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"],
                                     flatten=True, session=None)["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    # -- the protocol ----------------------------------------------------------------------
    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append((msg.get("method"), msg.get("params", {})))
                self._cond.notify_all()

    def call(self, method: str, session: str | bool = True, **params) -> dict:
        """Send a command (to the page, or with ``session=None`` to the browser); its result."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session is True and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self._next_id not in self._answers:
                if self._closed:
                    raise BrowserError(f"Chromium closed the pipe during {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no answer to {method} within {self.timeout} s")
                self._cond.wait(left)
            answer = self._answers.pop(self._next_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, method: str, timeout: float | None = None, start: int = 0) -> dict:
        """Wait for the first event ``method`` at or after position ``start`` of the events."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while True:
                for name, params in self.events[start:]:
                    if name == method:
                        return params
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no {method} event within {timeout or self.timeout} s")
                self._cond.wait(left)

    # -- what the tests use ----------------------------------------------------------------
    def open(self, path, fragment: str = "") -> float:
        """Load a local file and wait for its load event; returns the seconds it took.

        The page is left for ``about:blank`` first, so that the same file with another
        ``fragment`` ("#...") is loaded afresh.
        """
        start = len(self.events)
        self.call("Page.navigate", url="about:blank")
        self.wait_event("Page.loadEventFired", start=start)
        url = Path(path).resolve().as_uri() + fragment
        start = len(self.events)
        t0 = time.perf_counter()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", start=start)
        return time.perf_counter() - t0

    def js(self, expression: str, timeout: float | None = None):
        """Evaluate JavaScript in the page (promises are awaited) and return its value."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True, timeout=int(1000 * (timeout or self.timeout)))
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None, poll: float = 0.05):
        """Evaluate ``expression`` until it is truthy; return that value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout or self.timeout} s: "
                                   f"{expression}")
            time.sleep(poll)

    def mouse(self, kind: str, x: float, y: float, button: str = "none", buttons: int = 0):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button,
                  buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)

    def screenshot(self, path) -> None:
        import base64

        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and error log entries so far."""
        out = []
        for name, p in self.events:
            if name == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning",
                                                                         "assert"):
                out.append(f"console.{p['type']}: "
                           + " ".join(str(a.get("value", a.get("description", "")))
                                      for a in p.get("args", [])))
            elif name == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description")
                                               or d.get("text")))
            elif name == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry'].get('text')}")
        return out

    def requests(self) -> list[str]:
        """URLs of every network request the page made so far (data: URLs too)."""
        return [p["request"]["url"] for name, p in self.events
                if name == "Network.requestWillBeSent"]

    def clear_events(self) -> None:
        with self._cond:
            self.events.clear()

    def close(self) -> None:
        try:
            if self._proc.poll() is None and not self._closed:
                try:
                    self.timeout = 5.0
                    self.call("Browser.close", session=None)
                except BrowserError:
                    pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        finally:
            for fd in (self._w, self._r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- the simcne map (simcne.plot.interactive_map) -------------------------------------------
_FIGURE = """(() => {
  const doc = Bokeh.documents[0]
  const plot = [...doc._all_models.values()].find((m) => m.type === "Figure")
  return Bokeh.index.find_one(plot)
})()"""

MAP_READY = ("!!(window.Bokeh && Bokeh.documents.length && window.simcne_map && "
             f"{_FIGURE} && {_FIGURE}.is_idle)")


def wait_map(b: Browser, timeout: float = 60.0) -> None:
    """Wait until the map's plot has drawn and every thumbnail page is decoded."""
    b.wait_for(MAP_READY, timeout=timeout)
    b.js("window.simcne_map.ready", timeout=timeout)


def drawn_points(b: Browser) -> dict:
    """Points each visible scatter renderer drew, from bokeh's views: {name: count}."""
    return b.js(f"""(() => {{
      const pv = {_FIGURE}, out = {{}}
      for (const rv of pv.renderer_views.values()) {{
        if (!rv.model.visible || !rv.model.name || !rv.model.name.startsWith("class-")) continue
        const sx = rv.glyph.sx, sy = rv.glyph.sy
        let k = 0
        for (let i = 0; i < sx.length; i++) if (isFinite(sx[i]) && isFinite(sy[i])) k++
        out[rv.model.name] = k
      }}
      return out
    }})()""")


def point_position(b: Browser, i: int):
    """Where point ``i`` of the embedding is on the screen (CSS pixels), or None."""
    return b.js(f"""((i) => {{
      const pv = {_FIGURE}
      for (const rv of pv.renderer_views.values()) {{
        const d = rv.model.data_source ? rv.model.data_source.data : null
        if (!d || !d.index) continue  // (a renderer without points, e.g. the density)
        const k = Array.prototype.indexOf.call(d.index, i)
        if (k < 0) continue
        const r = pv.canvas_view.el.getBoundingClientRect()
        return [r.left + pv.frame.x_scale.compute(d.x[k]),
                r.top + pv.frame.y_scale.compute(d.y[k])]
      }}
      return null
    }})({int(i)})""")


def frame_box(b: Browser):
    """The plot frame (where the points are) on the screen: [left, top, right, bottom]."""
    return b.js(f"""(() => {{
      const pv = {_FIGURE}, r = pv.canvas_view.el.getBoundingClientRect(), f = pv.frame.bbox
      return [r.left + f.left, r.top + f.top, r.left + f.right, r.top + f.bottom]
    }})()""")


def tooltips(b: Browser) -> list[dict]:
    """What the hover boxes on show say: [{index, label, class, file, src}, ...]."""
    return b.js("""(() => {
      const out = []
      for (const v of Bokeh.index.all_views()) {
        if (v.model.type !== "Tooltip" || !v.model.visible || v.model.position == null) continue
        const root = v.shadow_el || v.el.shadowRoot || v.el
        const get = (c) => { const e = root.querySelector(c); return e ? e.textContent : null }
        if (get(".simcne-index") === null) continue
        const img = root.querySelector(".simcne-thumb")
        const box = v.el.getBoundingClientRect()
        if (!v.el.isConnected || box.width === 0) continue
        out.push({index: get(".simcne-index"), label: get(".simcne-label"),
                  class: get(".simcne-class"), file: get(".simcne-file"),
                  src: img ? img.src : null, img_complete: img ? img.complete : null,
                  box: [box.left, box.top, box.right, box.bottom]})
      }
      return out
    })()""")


def hover(b: Browser, x: float, y: float, timeout: float = 10.0) -> list[dict]:
    """Move the mouse to (x, y) and wait for a hover box with a thumbnail; its contents."""
    b.mouse("mouseMoved", x, y)
    deadline = time.monotonic() + timeout
    while True:
        tips = tooltips(b)
        if tips and all(t["src"] is None or (t["src"].startswith("data:image/png")
                                             and t["img_complete"]) for t in tips):
            return tips
        if time.monotonic() > deadline:
            return tips
        time.sleep(0.02)


def next_frame(b: Browser) -> None:
    """Wait until the browser has drawn the next two frames."""
    b.js("new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)))")

"""Headless Chromium (the Debian package) for the page tests: the rendered DOM and what the page requested.

Missing Chromium is a failure, not a skip: `setup.sh` installs it (and a
developer can with `apt-get install chromium`).
"""

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND"]  # nothing can leave the machine anyway
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is needed for the page tests: apt-get install chromium (setup.sh does, as root)")
    return found


def _run(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp / 'profile'}", *extra, url],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@dataclass
class Element:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)
    text: str = ""

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Element"]:
        return [e for e in self.iter() if (tag is None or e.tag == tag) and (cls is None or cls in e.classes())]

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(Element("#text", {}, text=data))


@dataclass
class Loaded:
    dom: Element
    requests: list[str]   # every URL the page itself asked the network for


def page_requests(netlog: Path) -> list[str]:
    """URLs requested on behalf of a file:// page (Chromium's own update checks are not the page's)."""
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start and "url" in e.get("params", {})
            and "file://" in e["params"].get("network_isolation_key", "")]


def load(path: Path, tmp: Path) -> Loaded:
    """Open `path` from disk in headless Chromium: the DOM after loading, and the page's network requests."""
    netlog = tmp / "net.json"
    proc = _run(Path(path).resolve().as_uri(), tmp, f"--log-net-log={netlog}", "--dump-dom")
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    tree = _Tree()
    tree.feed(proc.stdout)
    return Loaded(tree.root, page_requests(netlog))


def screenshot(path: Path, png: Path, tmp: Path, width: int = 1280, height: int = 2400) -> None:
    proc = _run(Path(path).resolve().as_uri(), tmp, f"--window-size={width},{height}", f"--screenshot={png}")
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]

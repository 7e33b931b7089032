"""Headless Chromium for the report: check that it renders, and print it to PDF.

Everything runs offline: Chromium and chromedriver are found on the machine (Debian
packages ``chromium`` and ``chromium-driver``), and selenium is given the driver path so
its driver manager never looks anything up.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMEDRIVER = Path("/usr/bin/chromedriver")
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    # offline and quiet: no network of its own, no updates, no sync
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailableError(RuntimeError):
    """Chromium, chromedriver or selenium is missing; the message says which."""


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome executable, or None."""
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_unavailable_reason(need_selenium: bool = True) -> str | None:
    """Why the browser checks cannot run here (None when they can)."""
    if find_chromium() is None:
        return "Chromium not found (apt-get install chromium chromium-driver)"
    if not need_selenium:
        return None
    driver = shutil.which("chromedriver") or (str(CHROMEDRIVER) if CHROMEDRIVER.exists() else None)
    if driver is None:
        return "chromedriver not found (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium, or the dev extras)"
    return None


_PROBE = """
const imgs = Array.from(document.images);
return {
  images: imgs.length,
  broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.alt || i.src.slice(0, 80)),
  height: Math.ceil(document.documentElement.scrollHeight),
  verdicts: Object.fromEntries(Array.from(document.querySelectorAll('li.verdict'))
    .map(e => [e.dataset.index, e.textContent])),
  limits: Array.from(document.querySelectorAll('figure.diffmap'))
    .map(e => e.dataset.limitsHu),
  external: Array.from(document.querySelectorAll('[src],[href]'))
    .map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(u => /^(https?:)?\\/\\//i.test(u)),
};
"""


_BOX = """
const e = document.querySelector(arguments[0]);
if (!e) return null;
const r = e.getBoundingClientRect();
return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height};
"""


def _capture(driver: Any, box: dict[str, float]) -> dict[str, str]:
    """A PNG (base64) of a page region in CSS pixels, beyond the viewport if need be."""
    return driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**box, "scale": 1}},
    )


def browser_check(
    html_path: Path,
    screenshot: Path | None = None,
    width: int = 1440,
    max_height: int = 30000,
    timeout_s: float = 60.0,
    elements: Mapping[str, tuple[str, Path]] | None = None,
) -> dict[str, Any]:
    """Open a report in headless Chromium and say whether it rendered.

    Returns ``images`` (count), ``broken`` (alt text of images that did not load),
    ``external`` (links to other hosts), ``page_height`` (CSS px), ``screenshot_std`` (grey
    level standard deviation, 0-255, of a full-page screenshot), ``nonwhite_fraction`` and
    ``screenshot`` (where the PNG was saved, if asked), ``verdicts`` (the text of every
    verdict sentence, by its index in metrics.verdict.series) and ``diffmap_limits`` (the
    HU colour limits of every difference-map figure). ``elements`` maps a name to (CSS
    selector, PNG path): each element is saved as its own screenshot.
    Raises :class:`BrowserUnavailableError`.
    """
    reason = browser_unavailable_reason()
    if reason:
        raise BrowserUnavailableError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()  # type: ignore[assignment]
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},1000")
    profile = tempfile.TemporaryDirectory(prefix="ctrobust-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")  # a fresh profile every time
    driver_path = shutil.which("chromedriver") or str(CHROMEDRIVER)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(timeout_s)
        driver.get(Path(html_path).resolve().as_uri())
        WebDriverWait(driver, timeout_s).until(
            lambda d: (
                d.execute_script("return document.readyState") == "complete"
                and d.execute_script("return Array.from(document.images).every(i => i.complete)")
            )
        )
        probe = driver.execute_script(_PROBE)
        height = min(int(probe["height"]), max_height)
        shot = _capture(driver, {"x": 0, "y": 0, "width": width, "height": height})
        for name, (selector, path) in (elements or {}).items():
            box = driver.execute_script(_BOX, selector)
            if box is None:
                raise ValueError(f"report has no element {selector!r} for screenshot {name!r}")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(base64.b64decode(_capture(driver, box)["data"]))
    finally:
        driver.quit()
        profile.cleanup()

    png = base64.b64decode(shot["data"])
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    if screenshot is not None:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(screenshot).write_bytes(png)
    return {
        "images": int(probe["images"]),
        "broken": list(probe["broken"]),
        "external": list(probe["external"]),
        "page_height": int(probe["height"]),
        "screenshot_std": float(grey.std()),
        "nonwhite_fraction": float((grey < 245).mean()),
        "screenshot": str(screenshot) if screenshot is not None else None,
        "verdicts": dict(probe["verdicts"]),
        "diffmap_limits": [[float(v) for v in s.split(",") if v] for s in probe["limits"]],
    }


def print_pdf(html_path: Path, pdf_path: Path | None = None, timeout_s: float = 180.0) -> Path:
    """Print the report to PDF with headless Chromium (--print-to-pdf); returns the PDF path."""
    chromium = find_chromium()
    if chromium is None:
        raise BrowserUnavailableError(
            "PDF needs Chromium (apt-get install chromium); HTML is written"
        )
    html_path = Path(html_path).resolve()
    pdf_path = Path(pdf_path or html_path.with_suffix(".pdf")).resolve()
    pdf_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctrobust-chromium-") as profile:
        subprocess.run(
            [
                chromium,
                *_FLAGS,
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--print-to-pdf={pdf_path}",
                html_path.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise RuntimeError(f"Chromium did not write {pdf_path}")
    return pdf_path


def pdf_page_fill(pdf_path: Path, dpi: int = 30) -> list[float]:
    """Per PDF page, the fraction of pixel rows holding any ink (pdftoppm renders the pages).

    A page near 0 is mostly blank. Raises :class:`BrowserUnavailableError` without pdftoppm.
    """
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise BrowserUnavailableError("pdftoppm not found (apt-get install poppler-utils)")
    with tempfile.TemporaryDirectory(prefix="ctrobust-pages-") as folder:
        prefix = Path(folder) / "page"
        subprocess.run(
            [pdftoppm, "-r", str(dpi), "-png", str(pdf_path), str(prefix)],
            check=True,
            capture_output=True,
        )
        fills = []
        for page in sorted(Path(folder).glob("page*.png")):
            grey = np.asarray(Image.open(page).convert("L"))
            fills.append(float((grey < 240).any(axis=1).mean()))
    return fills


#: What ``ctrobust report --screenshots`` captures: name -> CSS selector of the report.
SCREENSHOTS = {
    "verdict": "#verdict",
    "slice_windows": "#slices .slice figure",
    "slice_differences": "#slices figure.diffmap",
}


def report_screenshots(html_path: Path, out_dir: Path) -> dict[str, Path]:
    """PNG screenshots of the verdict section and of the first slice's panels (its soft-tissue
    window grid and difference maps) in ``out_dir``; only the parts the report has."""
    html = Path(html_path).read_text()
    present = {
        "verdict": 'id="verdict"' in html,
        "slice_windows": 'class="slice"' in html,
        "slice_differences": 'class="diffmap"' in html,
    }
    shots = {
        name: (selector, Path(out_dir) / f"{name}.png")
        for name, selector in SCREENSHOTS.items()
        if present[name]
    }
    browser_check(html_path, elements=shots)
    return {name: path for name, (_, path) in shots.items()}

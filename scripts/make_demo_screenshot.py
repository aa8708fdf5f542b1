"""Screenshot the live demo in a headless Chromium: the page after clicking a CamVid example.

    python scripts/make_demo_screenshot.py --weights lrformer_t_camvid              # docs/images/demo.png
    python scripts/make_demo_screenshot.py --weights tiny_model --note "Untrained weights: ..."

Serves ``lrsa-seg demo``'s app on 127.0.0.1 (a free port), opens it in Debian's ``chromium``
(``/usr/bin/chromium`` with ``/usr/bin/chromedriver``; ``apt-get install chromium chromium-driver``),
clicks an example, waits for the overlay and saves the page. ``tests/cli/test_demo.py`` drives the
browser with the same functions. Needs the ``[demo]`` and ``[docs]`` extras (Gradio, Selenium).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
    "--hide-scrollbars",
]


def browser_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` executables, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chromium(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium under Selenium, with a fresh profile and no network of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = browser_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver not found (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in [*CHROMIUM_FLAGS, f"--window-size={width},{height}"]:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='lrsa-seg-chromium-')}")
    return webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))


def segment_example(driver: Any, url: str, index: int = 0, timeout: float = 120.0) -> Any:
    """Open the demo at ``url``, click example ``index`` and wait for its overlay; returns the overlay ``<img>``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    examples = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".gallery-item, button.gallery-item"))
    examples[index].click()

    def overlay_loaded(d: Any) -> Any:
        images = d.find_elements(By.CSS_SELECTOR, "#overlay img")
        loaded = [i for i in images if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)]
        return loaded[0] if loaded else False

    overlay = wait.until(overlay_loaded)
    wait.until(lambda d: "ms" in d.find_element(By.ID, "timing").text)  # the timing line is the last output
    return overlay


def drawn_box(driver: Any, image: Any) -> tuple[int, int, int, int]:
    """Where ``image``'s pixels are drawn on the page: ``(left, top, right, bottom)`` (object-fit contain)."""
    box = driver.execute_script(
        """
        const img = arguments[0], r = img.getBoundingClientRect();
        const fit = getComputedStyle(img).objectFit;
        let w = r.width, h = r.height;
        if (fit === 'contain' || fit === 'scale-down') {
            const cap = fit === 'scale-down' ? 1 : 1e9;
            const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, cap);
            w = img.naturalWidth * s; h = img.naturalHeight * s;
        }
        return [r.left + (r.width - w) / 2, r.top + (r.height - h) / 2, w, h];
        """,
        image,
    )
    left, top, width, height = (float(v) for v in box)
    return round(left), round(top), round(left + width), round(top + height)


def serve(weights: str, model: str | None, note: str | None) -> tuple[Any, str]:
    """The demo app with the bundled examples, launched on 127.0.0.1 in this process; ``(app, url)``."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from lrsa_seg.cli.demo import BUNDLED_EXAMPLES, example_images
    from lrsa_seg.demo import build_app, theme
    from lrsa_seg.inference import Segmenter

    app = build_app(Segmenter.from_pretrained(weights, model), example_images(BUNDLED_EXAMPLES, 4), note=note)
    port = free_port()
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        allowed_paths=[str(BUNDLED_EXAMPLES)],
        theme=theme(),
        footer_links=["api"],
    )
    return app, f"http://127.0.0.1:{port}/"


def main() -> None:
    """Serve the demo, click an example in Chromium, and write the page's screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a saved model, Hub repository, weights file or URL")
    parser.add_argument("--model", default=None, help="variant, only where the file does not say")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "images" / "demo.png", help="PNG to write")
    parser.add_argument("--example", type=int, default=1, help="which example to click (0-based)")
    parser.add_argument("--note", default=None, help="a line under the page's heading, e.g. that weights are untrained")
    parser.add_argument("--width", type=int, default=1200, help="browser window width")
    parser.add_argument("--height", type=int, default=900, help="browser window height")
    args = parser.parse_args()
    app, url = serve(args.weights, args.model, args.note)
    driver = chromium(args.width, args.height)
    try:
        segment_example(driver, url, args.example)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(args.width, min(height + 200, 2400))  # the window, not just the page, grows
        driver.execute_script("window.scrollTo(0, 0)")
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shot.crop((0, 0, shot.width, min(height, shot.height))).save(args.output, optimize=True)
    finally:
        driver.quit()
        app.close()
    print(f"wrote {args.output} ({url}, example {args.example})")


if __name__ == "__main__":
    main()

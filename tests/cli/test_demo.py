"""``lrsa-seg demo``: served on 127.0.0.1, the same label map as ``Segmenter`` over the API, the overlay in Chromium.

The app runs in this process, started by the command itself (``lrsa_seg.cli.main``) with Gradio's
final wait replaced, so the tests can query it and then close it. The model is the tiny
``lrformer_test`` with random weights and the CamVid classes, saved as ``save_pretrained`` writes.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lrsa_seg.cli import main
from lrsa_seg.cli.demo import BUNDLED_EXAMPLES, INSTALL_HINT
from lrsa_seg.demo import class_areas, spread
from lrsa_seg.inference import Segmenter
from lrsa_seg.labels import CAMVID_CLASSES, CAMVID_PALETTE
from lrsa_seg.models import create_model
from lrsa_seg.models.pretrained import inference_metadata

from ..conftest import TESTS

REPO = TESTS.parent
IMAGE = BUNDLED_EXAMPLES / "0001TP_008550.jpg"


def load_screenshot_script() -> Any:
    """``scripts/make_demo_screenshot.py`` as a module: the browser steps the docs' screenshot takes."""
    spec = importlib.util.spec_from_file_location("make_demo_screenshot", REPO / "scripts" / "make_demo_screenshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_screenshot_script()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("demo") / "tiny_camvid"
    metadata = inference_metadata(11, CAMVID_CLASSES, CAMVID_PALETTE, dataset="CamVid")
    return create_model("lrformer_test", num_classes=11).save_pretrained(folder, metadata=metadata)


@pytest.fixture(scope="module")
def server(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``lrsa-seg demo --weights ... --port P --host 127.0.0.1`` serving in this process; its URL."""
    gradio = pytest.importorskip("gradio", reason="the demo extra is not installed (make test installs it)")
    apps: list[Any] = []
    port = SCRIPT.free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("elsewhere"))  # the bundled examples are served from any folder
        patch.setattr(gradio.Blocks, "block_thread", lambda app: apps.append(app))  # return instead of serving on
        assert main(["demo", "--weights", str(weights), "--port", str(port), "--host", "127.0.0.1"]) == 0
    assert len(apps) == 1
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        apps[0].close()


def test_without_gradio_one_error_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["demo", "--weights", "anything"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {INSTALL_HINT}\n"
    assert "pip install -e '.[demo]'" in err


def test_class_areas_and_spread() -> None:
    labels = np.array([[0, 0, 2, 2], [2, 2, 2, 10]])
    assert class_areas(labels, [str(k) for k in range(11)]) == [["2", 5, 62.5], ["0", 2, 25.0], ["10", 1, 12.5]]
    assert spread([Path(f"{k}.jpg") for k in range(9, -1, -1)], 3) == [Path("0.jpg"), Path("4.jpg"), Path("9.jpg")]


def test_serves_on_localhost(server: str) -> None:
    assert server.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server, timeout=30) as response:
        assert response.status == 200
        assert "gradio" in response.read().decode().lower()


def test_client_gets_the_label_map_segmenter_computes(server: str, weights: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    assert "/segment" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    overlay_path, areas, timing, label_path = client.predict(handle_file(str(IMAGE)), api_name="/segment")
    segmenter = Segmenter.from_pretrained(weights)
    expected = segmenter(IMAGE)
    labels = np.asarray(Image.open(label_path))
    assert labels.shape == tuple(expected.shape)
    assert np.array_equal(labels, expected.numpy())  # every pixel
    assert np.array_equal(np.asarray(Image.open(overlay_path).convert("RGB")), segmenter.overlay(IMAGE, expected))
    assert areas["headers"] == ["class", "pixels", "area (%)"]
    rows = [[name, int(pixels), float(area)] for name, pixels, area in areas["data"]]
    assert rows == class_areas(expected, list(CAMVID_CLASSES))
    assert abs(sum(area for *_, area in rows) - 100) < 0.1
    assert timing.startswith("Inference: **") and " ms** for 180 x 240 pixels (fused model, CPU)" in timing


@pytest.mark.slow  # starts Chromium: about 15 s on 2 cores
def test_chromium_shows_the_overlay_of_a_clicked_example(server: str, weights: Path) -> None:
    if SCRIPT.browser_paths() is None:
        pytest.skip("chromium and chromedriver are not installed (make test-all installs Debian's chromium)")
    pytest.importorskip("selenium", reason="the docs extra is not installed (make test installs it)")
    driver = SCRIPT.chromium(1200, 900)
    try:
        image = SCRIPT.segment_example(driver, server, index=0)
        left, top, right, bottom = SCRIPT.drawn_box(driver, image)
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        natural = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    finally:
        driver.quit()
    first = spread([p for p in BUNDLED_EXAMPLES.iterdir() if p.suffix == ".jpg"], 4)[0]
    segmenter = Segmenter.from_pretrained(weights)
    expected = segmenter.overlay(first, segmenter(first))
    assert natural == [expected.shape[1], expected.shape[0]]  # the overlay with its legend, at full size
    shown = np.asarray(shot.crop((left, top, right, bottom)), dtype=np.float32)
    reference = np.asarray(Image.fromarray(expected).resize((right - left, bottom - top), Image.BILINEAR), np.float32)
    blank = np.abs(reference - reference.mean(axis=(0, 1))).mean()
    error = np.abs(shown - reference).mean()
    assert error < 12 and error < blank / 3, f"the screenshot's overlay differs by {error:.1f} grey levels"

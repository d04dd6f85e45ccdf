"""The HTML report: its files and JSON, and the page opened in a real browser (Debian's chromium,
headless): one table row per class, every image loads, no script errors, the table sorts."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_detections import random_dataset

from sppnet.evaluation import evaluate_voc, write_report

CLASSES = ["cat", "dog", "bird & <fish>"]  # a name that needs escaping


def _data(seed=0, num_images=14):
    predictions, targets = random_dataset(seed, num_images=num_images, num_classes=3)
    for i, t in enumerate(targets):
        t["image_id"] = f"img{i:03d}"
    return predictions, targets


def _loader(index):
    g = torch.Generator().manual_seed(index)
    return torch.randint(0, 256, (3, 300, 540), generator=g, dtype=torch.uint8)


RUN_INFO = {
    "model": "tiny test detector",
    "data": "synthetic",
    "scales": [480],
    "settings": {"nms": 0.3, "proposals": {"max": 2000}},
    "seconds": {"conv": 1.5, "pool_fc_nms": 0.75, "evaluation": np.float64(0.25)},
    "weights": Path("runs/model"),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    predictions, targets = _data()
    out = tmp_path_factory.mktemp("report")
    index = write_report(out, predictions, targets, CLASSES, _loader, RUN_INFO, num_worst=4)
    return index, predictions, targets


def test_report_files_and_json(report):
    index, predictions, targets = report
    doc = json.loads((index.parent / "report.json").read_text())
    assert doc["format"] == "sppnet-report" and doc["version"] == 1
    assert doc["run"]["seconds"] == {"conv": 1.5, "pool_fc_nms": 0.75, "evaluation": 0.25}
    assert doc["run"]["weights"] == "runs/model"
    voc = evaluate_voc(predictions, targets, CLASSES)
    assert doc["results"]["voc07"]["mAP"] == pytest.approx(voc.map("voc07"))
    assert doc["results"]["coco"] is not None
    assert set(doc["errors"]["per_class"]) == set(CLASSES)
    worst = doc["gallery"]["worst"]
    per_image = doc["errors"]["per_image"]
    errors = [m + f for m, f in zip(per_image["missed"], per_image["false_positives"], strict=True)]
    assert [w["index"] for w in worst] == sorted(range(len(errors)), key=lambda i: -errors[i])[:4]
    assert len(doc["gallery"]["random"]) == 8
    shown = {w["index"] for w in worst} | {r["index"] for r in doc["gallery"]["random"]}
    assert len(shown) == 12  # the sample does not repeat the worst images
    for figure in worst + doc["gallery"]["random"]:
        assert (index.parent / figure["file"]).stat().st_size > 1000
    page = index.read_text()
    assert "bird &amp; &lt;fish&gt;" in page and "<fish>" not in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    body = page.split('id="per-class"')[1].split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == len(CLASSES)


def test_random_sample_follows_the_seed(report):
    index, predictions, targets = report

    def sample(name, seed):
        out = index.parent / name
        write_report(
            out,
            predictions,
            targets,
            CLASSES,
            _loader,
            RUN_INFO,
            num_worst=2,
            num_random=4,
            seed=seed,
        )
        doc = json.loads((out / "report.json").read_text())
        return [f["index"] for f in doc["gallery"]["random"]]

    first = sample("seed0", 0)
    assert first == sample("seed0-again", 0)
    assert first != sample("seed1", 1)


def test_report_refuses_bad_images(tmp_path):
    predictions, targets = _data(num_images=3)
    with pytest.raises(TypeError, match="uint8 Tensor"):
        write_report(
            tmp_path, predictions, targets, CLASSES, lambda i: torch.zeros(3, 4, 4), RUN_INFO
        )


def _chromium() -> str:
    """The chromium binary, installed with apt where missing when that is possible."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "chromium is not installed and cannot be (apt-get needs root); "
            "install it with `apt-get install chromium` to run the browser test"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            pytest.skip(f"could not install chromium ({' '.join(command)}): {done.stderr[-300:]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed no chromium binary")


# Injected into a copy of the page, first in <head>: records script errors, failed resource
# loads and console.error calls, then after the load event checks every image, clicks the VOC07
# heading twice (descending) and writes the results into the DOM for --dump-dom.
CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e));
}, true);
var __consoleError = console.error;
console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " "));
  __consoleError.apply(console, arguments);
};
window.addEventListener("load", function () {
  var images = document.images, broken = [];
  for (var i = 0; i < images.length; i++) {
    if (!(images[i].complete && images[i].naturalWidth > 0)) broken.push(images[i].src);
  }
  var th = document.querySelector("#per-class thead th:nth-child(2)");
  th.click(); th.click();
  var rows = document.querySelectorAll("#per-class tbody tr");
  var order = [];
  for (var j = 0; j < rows.length; j++) order.push(rows[j].cells[1].getAttribute("data-value"));
  var out = document.createElement("pre");
  out.id = "check-result";
  out.textContent = JSON.stringify({images: images.length, broken: broken,
    errors: window.__errors, rows: rows.length, sorted: order,
    sort: th.getAttribute("aria-sort"), svgs: document.querySelectorAll("svg").length});
  document.body.appendChild(out);
});
</script>"""


def _check_in_chromium(binary, page, profile):
    """Open ``page`` with :data:`CHECK_SCRIPT` injected; the dict it wrote into the DOM."""
    check = page.parent / f"check-{page.name}"
    check.write_text(page.read_text().replace("<head>", "<head>" + CHECK_SCRIPT, 1))
    done = _run_chromium(
        binary, profile, "--virtual-time-budget=5000", "--dump-dom", check.as_uri()
    )
    found = re.search(r'<pre id="check-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no check result in the DOM; chromium said: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def _run_chromium(binary, profile, *args):
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_in_chromium(report, tmp_path):
    binary = _chromium()
    index, _, _ = report
    result = _check_in_chromium(binary, index, tmp_path / "profile")
    assert result["errors"] == []
    assert result["rows"] == len(CLASSES)
    assert result["images"] == 12 and result["broken"] == []
    assert result["svgs"] >= len(CLASSES) + 4
    assert result["sort"] == "descending"
    values = [float(v) for v in result["sorted"]]
    assert values == sorted(values, reverse=True)

    # The check can fail: a missing image and a script error are both caught.
    broken = index.parent / "broken.html"
    page = index.read_text().replace('src="images/', 'src="images/missing-', 1)
    broken.write_text(page.replace("</body>", "<script>notDefined();</script></body>"))
    result = _check_in_chromium(binary, broken, tmp_path / "profile")
    assert len(result["broken"]) == 1 and "missing-" in result["broken"][0]
    assert any("notDefined" in e for e in result["errors"])

    screenshot = tmp_path / "report.png"
    done = _run_chromium(
        binary,
        tmp_path / "profile",
        "--enable-logging=stderr",
        "--window-size=1280,1600",
        f"--screenshot={screenshot}",
        index.as_uri(),
    )
    assert screenshot.is_file(), done.stderr[-2000:]
    assert "Uncaught" not in done.stderr
    from PIL import Image

    with Image.open(screenshot) as shot:
        assert shot.size == (1280, 1600)
        # Not a blank page: the pixels vary.
        assert len(np.unique(np.asarray(shot.convert("L")))) > 10

"""The interactive path in a real browser (issue 25): JupyterLab started on localhost, a headless Chromium driven by
Playwright, notebooks 00 and 06 opened and run through the UI (Run > Run All Cells) as a workshop attendee runs them
(01-05 in between by the runner, at the smoke preset's sizes, so that 06 has adapters to score).
Checked: every code cell ran (an execution count, no error output), figures rendered as images, progress bars as
widgets (no raw terminal escape codes), and a screenshot of each is saved under ``outputs/browser/``.

Needs a Chromium (Debian: ``apt-get install chromium``) and Playwright (``pip install -e '.[browser]'``); run with
``make browser-test``, which also copies the last screenshots to ``docs/browser/``. Not part of ``make test``
(marker ``browser``): CI machines have no browser.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import pipeline
from tests.conftest import ROOT

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
TOKEN = "browser-test"


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free localhost port, serving a copy of notebooks/ (the UI autosaves: the repository's
    notebooks stay untouched), its kernels writing to a temporary outputs folder; its own config and workspace."""
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    pytest.importorskip("playwright")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HELPERS_OUTPUTS": str(tmp_path / "outputs"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}",
                               f"--ServerApp.root_dir={tmp_path / 'notebooks'}"]
                              + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
                              env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
        yield url, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def run_all(page, url: str, notebook: str, timeout_s: float = 300) -> dict:
    """Open ``notebook`` in JupyterLab, Run All Cells from the menu, wait until every code cell has its execution
    count and the kernel is idle; what rendered."""
    space = notebook.split("_")[0]  # a workspace of its own: no tab restored from the notebook before
    page.goto(f"{url}/lab/workspaces/nb{space}/tree/{notebook}?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
    idle = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
    page.wait_for_selector(idle, state="attached", timeout=120_000)  # the kernel is up
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.click()  # focus this notebook
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function("""() => {
        const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
        return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
    }""", timeout=timeout_s * 1000)
    page.wait_for_selector(idle, state="attached", timeout=60_000)
    page.wait_for_timeout(1000)  # the last outputs and widgets render
    def texts(selector):  # textContent: cells scrolled out of view render no innerText (JupyterLab's windowing)
        return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")

    return {"prompts": texts(".jp-Notebook .jp-CodeCell .jp-InputPrompt"),
            "errors": texts(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"),
            "images": page.locator(".jp-OutputArea-output img").count(),
            "broken_images": page.eval_on_selector_all(  # an image whose file did not load: a broken link
                ".jp-Notebook img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.alt)"),
            "widgets": page.locator(".jp-OutputArea-output .widget-hprogress").count(),  # ipywidgets' bars
            "text": "\n".join(texts(".jp-OutputArea-output"))}


def test_notebooks_run_all_in_jupyterlab_in_a_real_browser(lab, monkeypatch):
    from playwright.sync_api import sync_playwright

    url, tmp = lab
    shots = ROOT / "outputs" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for notebook in ("00_lab_world.ipynb", "06_evaluation.ipynb"):
            if notebook.startswith("06"):  # what 06 reads, made quickly: 01-05 at the smoke preset's sizes
                monkeypatch.setenv("HELPERS_OUTPUTS", str(tmp / "outputs"))
                pipeline.run(ROOT / "presets" / "smoke.yaml", ["run_name=lab", "ablation=false", "sdft=false",
                                                                 "sweep_shares=[]", "arms=[]"],
                             only=["01", "02", "03", "04", "05"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a fresh tab per notebook
            try:
                got = run_all(page, url, notebook)
            finally:  # what the attendee would see, also when it failed
                page.screenshot(path=str(shots / notebook.replace(".ipynb", ".png")))
            code_cells = [t.strip() for t in got["prompts"]]
            print(notebook, {k: v for k, v in got.items() if k != "text"})
            assert code_cells and all(re.fullmatch(r"\[\d+\]:", t) for t in code_cells), \
                (notebook, code_cells)  # every code cell ran: "[n]:", none still "[*]:" or never run "[ ]:"
            assert not got["errors"], (notebook, got["errors"][:2])
            assert got["images"] >= 1, notebook  # its figures rendered as images
            assert not got["broken_images"], (notebook, got["broken_images"])
            assert "\x1b[" not in got["text"], notebook  # no raw terminal escape codes
            assert got["widgets"] >= 1, notebook  # tqdm's bars rendered as widgets
            page.close()
        browser.close()
    assert (tmp / "outputs" / "lab" / "06_evaluation" / "results.json").exists()  # the run really happened

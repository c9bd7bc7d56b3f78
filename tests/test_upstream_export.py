"""``nips-plugin export-upstream``: the models written into a copy of neuraloperator pass their
tests there with ``nips_plugin`` unimportable, and break none of neuraloperator's own tests."""

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import neuralop
import pytest

from nips_plugin.cli import main
from nips_plugin.upstream import export_upstream
from nips_plugin.upstream.export import API_RST, CONFIG_MODELS, TESTS, ExportError

NEW_TESTS = sorted(TESTS.values())


def copy_neuralop(root):
    """A copy of the installed neuralop package as ``root/neuralop`` (a tree to export into)."""
    shutil.copytree(Path(neuralop.__file__).parent, root / "neuralop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def start_pytest(root, paths):
    """Start pytest on ``paths`` inside ``root`` in a fresh interpreter in which ``neuralop`` is
    the copy and ``import nips_plugin`` fails (one thread: these tests' tensors are tiny, and
    on two cores a second thread makes them about three times slower)."""
    script = (
        "import sys; sys.modules['nips_plugin'] = None\n"
        "import neuralop\n"
        f"assert neuralop.__file__.startswith({str(root)!r}), neuralop.__file__\n"
        "import pytest\n"
        "sys.exit(pytest.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", script, "-q", "-p", "no:cacheprovider", f"--rootdir={root}",
         f"--junitxml={root / 'junit.xml'}", *paths],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_pytest(root, proc, timeout):
    """Wait for :func:`start_pytest`; returns ``(counts, failed test ids, output)``."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    junit = root / "junit.xml"
    if not junit.exists():
        raise AssertionError(f"pytest did not run (rc {proc.returncode}):\n{output[-3000:]}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        counts["tests"] += 1
        outcome = {child.tag for child in case}
        if outcome & {"failure", "error"}:
            counts["failures" if "failure" in outcome else "errors"] += 1
            failed.add(f"{case.get('classname')}::{case.get('name')}")
        elif "skipped" in outcome:
            counts["skipped"] += 1
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts, failed, output


def run_pytest(root, paths, timeout):
    return finish_pytest(root, start_pytest(root, paths), timeout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = copy_neuralop(tmp_path_factory.mktemp("tree"))
    return root, export_upstream(root)


def test_export_writes_the_models_without_nips_plugin(exported):
    root, summary = exported
    paths = {f["path"] for f in summary["files"]}
    for rel in ["neuralop/models/nips.py", "neuralop/models/nao.py",
                "neuralop/layers/nonlocal_attention.py", "neuralop/layers/incontext_layout.py",
                "neuralop/layers/shared_spectral_filter.py", "neuralop/models/__init__.py",
                *NEW_TESTS]:
        assert rel in paths
    assert all(f["status"] in ("written", "updated") for f in summary["files"])
    for f in summary["files"]:
        data = (root / f["path"]).read_bytes()
        assert b"nips_plugin" not in data, f["path"]
    for rel in root.rglob("*"):   # nothing else in the tree does either
        if rel.is_file():
            assert b"nips_plugin" not in rel.read_bytes(), rel
    # the installed wheel's copy has no docs or configs: skipped, and said so
    assert summary["optional"][API_RST].startswith("skipped")
    assert summary["optional"][CONFIG_MODELS].startswith("skipped")
    assert summary["lines_added"] > 1000
    # reference data: small, plain, loadable as the tests load it
    data = [f for f in summary["files"] if f["kind"] == "test data"]
    assert len(data) == 4 and all(f["bytes"] < 100_000 for f in data)


def test_export_is_idempotent(exported):
    root, _ = exported
    again = export_upstream(root)
    assert all(f["status"] == "unchanged" for f in again["files"]) and again["lines_added"] == 0
    init = (root / "neuralop/models/__init__.py").read_text().splitlines()
    assert init.count("from .nips import NIPS") == 1
    assert init.count("from .nao import NAO, LinearNAO") == 1


def test_exported_tests_pass_without_nips_plugin(exported):
    root, _ = exported
    counts, failed, output = run_pytest(root, NEW_TESTS, timeout=300)
    assert counts["failures"] == counts["errors"] == 0, f"{sorted(failed)}\n{output[-4000:]}"
    assert counts["passed"] >= 10, counts


def test_optional_docs_and_config_are_updated_once(tmp_path):
    """In a source checkout (doc/ and config/ present) api.rst and config/models.py gain entries."""
    (tmp_path / "neuralop/models").mkdir(parents=True)
    (tmp_path / "neuralop/models/__init__.py").write_text("from .fno import FNO\n")
    api = tmp_path / API_RST
    api.parent.mkdir(parents=True)
    api.write_text(
        "Models\n======\n\n.. _codano_api:\n\nCODANO\n------\n\n~~~~~~\n\n.. raw:: html\n\n"
        "   <hr>\n\n.. _neuralop_layers_ref:\n\n======\nLayers\n======\n\n"
        "Channel MLP\n-----------\n\nChannelMLP\n")
    config = tmp_path / CONFIG_MODELS
    config.parent.mkdir()
    config.write_text("from typing import List\nfrom zencfg import ConfigBase\n\n\n"
                      "class ModelConfig(ConfigBase):\n    arch: str\n")
    summary = export_upstream(tmp_path)
    assert summary["optional"] == {API_RST: "updated: models, layers",
                                   CONFIG_MODELS: "updated: NIPSConfig, NAOConfig, LinearNAOConfig"}
    text = api.read_text()
    assert text.index(".. _nips_api:") < text.index(".. raw:: html") < text.index("_nonlocal_attention_api")
    assert text.index("_nonlocal_attention_api") < text.index("Channel MLP")
    configs = config.read_text()
    assert "from typing import Any, List, Optional" in configs
    assert 'class NIPSConfig(ModelConfig):\n    model_arch: str = "nips"\n    data_channels: int' in configs
    assert "class LinearNAOConfig(NAOConfig):" in configs
    compile(configs, str(config), "exec")
    again = export_upstream(tmp_path)
    assert set(again["optional"].values()) == {"already present"}
    assert api.read_text() == text and config.read_text() == configs


def test_export_refuses_to_overwrite_neuralop_files(tmp_path):
    (tmp_path / "neuralop/models").mkdir(parents=True)
    (tmp_path / "neuralop/models/__init__.py").write_text("")
    (tmp_path / "neuralop/layers").mkdir()
    (tmp_path / "neuralop/layers/cosine_field.py").write_text("def something_else():\n    pass\n")
    with pytest.raises(ExportError, match="would overwrite"):
        export_upstream(tmp_path)
    assert not (tmp_path / "neuralop/models/nips.py").exists()   # nothing written


def test_command(tmp_path, capsys, exported):
    assert main(["export-upstream", str(tmp_path)]) == 2
    assert "no neuralop/models/__init__.py" in capsys.readouterr().err
    root, _ = exported
    assert main(["export-upstream", str(root)]) == 0
    out = capsys.readouterr().out
    assert "neuralop/models/nips.py" in out and "lines added" in out and "skipped" in out


@pytest.mark.slow
def test_neuraloperator_tests_still_pass(tmp_path):
    """neuraloperator's own model and layer tests: none that passes in an unmodified copy fails
    after the export (the new tests run too)."""
    suites = ["neuralop/models/tests", "neuralop/layers/tests"]
    before_root = copy_neuralop(tmp_path / "before")
    root = copy_neuralop(tmp_path / "after")
    export_upstream(root)
    start = time.perf_counter()
    runs = [(before_root, start_pytest(before_root, suites)), (root, start_pytest(root, suites))]
    (before_counts, before, _), (after_counts, after, _) = [
        finish_pytest(r, proc, timeout=5400) for r, proc in runs]   # both copies at once
    print(f"\nbefore: {before_counts}\nafter:  {after_counts}\n"
          f"failing before: {sorted(before)}\nwall: {time.perf_counter() - start:.0f} s")
    assert not after - before, f"tests that fail only after the export: {sorted(after - before)}"
    assert after_counts["passed"] >= before_counts["passed"] + 10

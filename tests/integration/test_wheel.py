"""The built wheel, installed into a fresh virtual environment and run from another directory.

Proves that the distribution holds everything the product needs (code under the `personagraph`
namespace only, and the shipped data as package data), with no help from the repository.
The fresh environment gets its third-party dependencies from the project's .venv through a path
entry (the same pinned versions, no second multi-GB install), but not the editable install of the
project itself: that one lives in a .pth file, which a plain path entry does not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the files git would commit: no stale build/ folder, no local state."""
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("personagraph-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_wheel_holds_one_namespace_and_the_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"personagraph"}, tops
    for shipped in (
        "personagraph/data/personas/stella_yuna/persona.yaml",
        "personagraph/data/safety/rules.yaml",
        "personagraph/data/crm/products.json",
        "personagraph/data/twin2k/personas.csv",
        "personagraph/data/surveys/tam_en.yaml",
        "personagraph/graphs/persona_chat.py",
        "personagraph/services/chat.py",
    ):
        assert shipped in names, shipped
    assert not any(name.startswith(("personagraph/tests/", "personagraph/evals/")) for name in names)


def _run(bin_dir: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(bin_dir / "personagraph"), *args], cwd=cwd, env={**clean, **env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_installed_wheel_runs_from_another_directory(
    installed: Path, tmp_path: Path, real_model_env: dict[str, str]
) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import personagraph.serving.settings as s; print(s.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(installed.parent) in where and str(REPO_ROOT) not in where, where

    catalog = _run(installed, tmp_path, real_model_env, "crm", "--list")
    assert catalog.returncode == 0, catalog.stderr
    assert "lumiere" in catalog.stdout.lower()

    chat = _run(installed, tmp_path, {**real_model_env, "PERSONAGRAPH_HOME": str(tmp_path / "home")},
                "chat", "--message", "hi")  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip()

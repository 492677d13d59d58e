"""Make build/typing/personagraph/<folder> links to the package folders, for mypy.

Installed (or editable), the folders at the repository root are the `personagraph.*` packages through
setuptools package-dir mappings; mypy cannot follow the editable install's import hook, so it reads the
package through this tree of links instead. Usage: python scripts/typing_tree.py build/typing
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(target: str) -> int:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    root = Path(target).resolve() / "personagraph"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for package, folder in mapping.items():
        parts = package.split(".")[1:]
        if len(parts) != 1:  # nested packages come with their parent's link
            continue
        (root / parts[0]).symlink_to(REPO / folder, target_is_directory=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "build/typing"))

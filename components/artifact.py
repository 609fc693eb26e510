"""The router's Lambda artifact, built reproducibly from the data-plane package.

Same sources give the same bytes (sorted entries, fixed timestamps, no
bytecode), so `pulumi up` only updates the function when code changed.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "llm_router"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def build(out: Path | None = None) -> tuple[Path, str]:
    """Write the zip; return its path and base64 SHA-256 (Lambda's code hash)."""
    out = out or PROJECT_DIR / "build" / "router.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    src = PROJECT_DIR / PACKAGE
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _sources(src):
            info = zipfile.ZipInfo(str(path.relative_to(PROJECT_DIR)), date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    digest = hashlib.sha256(out.read_bytes()).digest()
    return out, base64.b64encode(digest).decode()

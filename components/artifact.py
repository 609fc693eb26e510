"""The router's Lambda artifact: the data-plane package plus its pinned dependencies.

Same inputs give the same bytes (sorted entries, fixed timestamps, no bytecode),
so `pulumi up` only updates the function when code or dependencies changed.
The dependencies (requirements-lambda.txt, arm64 / Python 3.13 wheels) are
installed into build/lambda-deps by `./run`; nothing is downloaded here.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "llm_router"
DEPS_DIR = PROJECT_DIR / "build" / "lambda-deps"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP = ("__pycache__", "bin")


class ArtifactError(RuntimeError):
    pass


def _files(root: Path, base: Path) -> list[tuple[str, Path]]:
    return sorted((str(p.relative_to(base)), p) for p in root.rglob("*")
                  if p.is_file() and not set(p.relative_to(base).parts) & set(SKIP) and p.suffix != ".pyc")


def build(out: Path | None = None, deps: Path = DEPS_DIR) -> tuple[Path, str]:
    """Write the zip; return its path and base64 SHA-256 (Lambda's code hash)."""
    if not (deps / "aws_lambda_powertools").is_dir():
        raise ArtifactError(f"{deps} has no Lambda dependencies: run `./run plan …` once (it installs them), "
                            "or: pip install --target build/lambda-deps --platform manylinux2014_aarch64 "
                            "--python-version 3.13 --implementation cp --only-binary=:all: --no-deps "
                            "-r requirements-lambda.txt")
    out = out or PROJECT_DIR / "build" / "router.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = _files(PROJECT_DIR / PACKAGE, PROJECT_DIR) + _files(deps, deps)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    digest = hashlib.sha256(out.read_bytes()).digest()
    return out, base64.b64encode(digest).decode()

"""The router's Lambda artifact: the data-plane package plus its pinned dependencies.

Same inputs give the same bytes (sorted entries, fixed timestamps and modes, no
bytecode), so `pulumi up` only updates the function when code or dependencies
changed. Shell scripts (`*.sh`, such as the start script Lambda Web Adapter runs
as the handler) are stored executable; everything else read-only.
The dependencies (requirements-lambda.txt, arm64 / Python 3.13 wheels) are
installed into build/lambda-deps by `./run`; nothing is downloaded here.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

#: The repository root: the Pulumi project (Pulumi.yaml, __main__.py, stacks/).
PROJECT_DIR = Path(__file__).resolve().parents[1]
PACKAGE = "llm_router"
DEPS_DIR = PROJECT_DIR / "build" / "lambda-deps"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP = ("__pycache__", "bin")
#: Entries stored executable: the handler Lambda Web Adapter execs must be.
EXECUTABLE_SUFFIXES = (".sh",)


class ArtifactError(RuntimeError):
    pass


def _files(root: Path, base: Path) -> list[tuple[str, Path]]:
    return sorted((str(p.relative_to(base)), p) for p in root.rglob("*")
                  if p.is_file() and not set(p.relative_to(base).parts) & set(SKIP) and p.suffix != ".pyc")


def mode(name: str) -> int:
    """The Unix mode an entry is stored with."""
    return 0o755 if name.endswith(EXECUTABLE_SUFFIXES) else 0o644


def build(out: Path | None = None, deps: Path = DEPS_DIR, package: Path = PROJECT_DIR / PACKAGE) -> tuple[Path, str]:
    """Write the zip; return its path and base64 SHA-256 (Lambda's code hash)."""
    if not (deps / "aws_lambda_powertools").is_dir():
        raise ArtifactError(f"{deps} has no Lambda dependencies: run `./run plan …` once (it installs them), "
                            "or: pip install --target build/lambda-deps --platform manylinux2014_aarch64 "
                            "--python-version 3.13 --implementation cp --only-binary=:all: --no-deps "
                            "-r requirements-lambda.txt")
    out = out or PROJECT_DIR / "build" / "router.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = _files(package, package.parent) + _files(deps, deps)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = (0o100000 | mode(name)) << 16  # a regular file with its permissions
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    digest = hashlib.sha256(out.read_bytes()).digest()
    return out, base64.b64encode(digest).decode()

"""The code asset every lakelog function runs: ``lakelog/`` and ``functions/``, no Docker.

Dependencies (pyarrow, pydantic, Powertools) come from managed layers (see
docs/adr/0007-lambda-packaging.md), so the asset is pure Python: a copy of ``lib/lakelog``
and ``functions/`` into a staging directory inside the cloud assembly's output directory.
Copying in Python needs neither Docker nor a bundling image, and the asset hash depends on
file contents only, so an unchanged tree never redeploys.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Final

__all__ = [
    "FUNCTIONS_DIR",
    "GATEWAY_DOCKERFILE",
    "GATEWAY_STAGING_DIR_NAME",
    "LIB_PACKAGE",
    "REPO_ROOT",
    "STAGING_DIR_NAME",
    "PackagingError",
    "stage_code",
    "stage_gateway_image",
    "validate_handler",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
LIB_PACKAGE: Final = REPO_ROOT / "lib" / "lakelog"
FUNCTIONS_DIR: Final = REPO_ROOT / "functions"
STAGING_DIR_NAME: Final = ".lakelog-code"
"""Directory, inside the assembly output directory, that the asset is staged in."""
GATEWAY_DOCKERFILE: Final = REPO_ROOT / "docker" / "kafka-gateway" / "Dockerfile"
"""The Kafka gateway's image (``pip install .[kafka]``; entry point ``lakelog kafka``)."""
GATEWAY_STAGING_DIR_NAME: Final = ".lakelog-gateway"
"""Directory, inside the assembly output directory, that the image's context is staged in."""
_PROJECT_FILES: Final = ("pyproject.toml", "README.md")

_IGNORE: Final = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".DS_Store"
)
_STAGED: dict[Path, Path] = {}


class PackagingError(ValueError):
    """The code asset cannot be built, or a handler does not exist in it."""


def stage_code(
    outdir: Path, *, lib_package: Path = LIB_PACKAGE, functions_dir: Path = FUNCTIONS_DIR
) -> Path:
    """Copy the lakelog package and the function handlers into ``outdir``; return the copy.

    The copy is made once per output directory and process, whatever number of functions
    use it: CDK turns one directory into one asset, uploaded once.

    Parameters
    ----------
    outdir
        The cloud assembly's output directory (``cdk.out`` for the CLI).
    lib_package, functions_dir
        Sources of the copy (the repository's ``lib/lakelog`` and ``functions``).

    Raises
    ------
    PackagingError
        If ``lib_package`` does not exist.
    """
    key = outdir.resolve()
    if key in _STAGED and _STAGED[key].is_dir():
        return _STAGED[key]
    if not (lib_package / "__init__.py").is_file():
        raise PackagingError(f"{lib_package} is not a Python package")
    target = key / STAGING_DIR_NAME
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copytree(lib_package, target / lib_package.name, ignore=_IGNORE)
    if functions_dir.is_dir():
        shutil.copytree(functions_dir, target / functions_dir.name, ignore=_IGNORE)
    _STAGED[key] = target
    return target


def stage_gateway_image(
    outdir: Path, *, repo_root: Path = REPO_ROOT, dockerfile: Path = GATEWAY_DOCKERFILE
) -> Path:
    """Copy what the gateway's image is built from into ``outdir``; return the copy.

    The build context holds the Dockerfile, ``pyproject.toml``, ``README.md`` (the
    project's metadata names it) and ``lib/lakelog``, nothing else of the repository: the
    image's asset hash changes only with them, and synthesis needs no Docker (CDK builds
    the image when it publishes the asset, at deploy time).

    Raises
    ------
    PackagingError
        If the Dockerfile or a project file is missing.
    """
    sources = [dockerfile, *(repo_root / name for name in _PROJECT_FILES)]
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        raise PackagingError(f"the gateway image needs {', '.join(missing)}")
    target = outdir.resolve() / GATEWAY_STAGING_DIR_NAME
    if target.exists():
        shutil.rmtree(target)
    (target / "lib").mkdir(parents=True)
    for source in sources:
        shutil.copy2(source, target / source.name)
    shutil.copytree(repo_root / "lib" / "lakelog", target / "lib" / "lakelog", ignore=_IGNORE)
    return target


def validate_handler(code_root: Path, handler: str) -> None:
    """Check that ``handler`` (``package.module.function``) is defined in ``code_root``.

    A typo in a handler string otherwise surfaces only when the deployed function is first
    invoked (``Runtime.ImportModuleError``); this fails the synth instead.

    Raises
    ------
    PackagingError
        If the module file is missing or does not define the function at top level.
    """
    module, _, attribute = handler.rpartition(".")
    if not module or not attribute:
        raise PackagingError(f"handler {handler!r} must look like 'package.module.function'")
    relative = Path(*module.split("."))
    candidates = (code_root / relative.with_suffix(".py"), code_root / relative / "__init__.py")
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        raise PackagingError(f"handler {handler!r}: module {module!r} is not in the code asset")
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    if attribute not in _top_level_names(tree):
        raise PackagingError(f"handler {handler!r}: {source.name} defines no {attribute!r}")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names

"""The import contract: what each package may import, read from the source of every module.

A module's folder says what it may import (README, "Layout"): the dependency between the apps
goes one way (`calls` uses `telephony`; `telephony` reports through `telephony.observer`, and
the setting LINE_OBSERVER names the implementation), and the 20 ms path, the figures and the
process helpers never import Django. Imports are read from the syntax tree, so one hidden in a
function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DJANGO_WORLD = ("django", "channels", "daphne", "calls", "project")

# For each package of telephony: the other parts of telephony it may import. The root modules
# (entry points and one call's wiring) may import any package; a package never imports them,
# but for `telephony.registry` (engines by name: a leaf that imports no other part).
ALLOWED = {
    "telephony.process": set(),
    "telephony.metrics": {"telephony.turns.transcript"},
    "telephony.media": {"telephony.process", "telephony.metrics"},
    "telephony.turns": {"telephony.media", "telephony.stt.base"},
    "telephony.stt": {"telephony.media", "telephony.process"},  # process: OS thread names
    "telephony.tts": {"telephony.media"},
    "telephony.recording": {"telephony.media", "telephony.process"},
    "telephony.security": set(),
}
LEAVES = {"telephony.registry"}
WITHOUT_DJANGO = (
    "telephony.media",
    "telephony.metrics",
    "telephony.process",
    "telephony.recording",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[str]:
    """Every module `path` imports, at any depth (relative imports are not used here)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the house style is absolute)"
            yield node.module or ""


def modules(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).rglob("*.py"))


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_telephony_never_imports_calls() -> None:
    offenders = [
        f"{module_name(p)} imports {name}"
        for p in modules("telephony")
        for name in imports_of(p)
        if within(name, "calls")
    ]
    assert offenders == []


@pytest.mark.parametrize("package", WITHOUT_DJANGO)
def test_the_audio_path_figures_and_process_helpers_import_no_django(package: str) -> None:
    offenders = [
        f"{module_name(p)} imports {name}"
        for p in modules(package)
        for name in imports_of(p)
        if any(within(name, world) for world in DJANGO_WORLD)
    ]
    assert offenders == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_parts_below_it(package: str) -> None:
    allowed = ALLOWED[package] | LEAVES | {package}
    offenders = [
        f"{module_name(p)} imports {name}"
        for p in modules(package)
        for name in imports_of(p)
        if within(name, "telephony") and not any(within(name, ok) for ok in allowed)
    ]
    assert offenders == []


def test_the_leaves_import_no_other_part_of_telephony() -> None:
    offenders = [
        f"{leaf} imports {name}"
        for leaf in sorted(LEAVES)
        for name in imports_of(REPO / (leaf.replace(".", "/") + ".py"))
        if within(name, "telephony")
    ]
    assert offenders == []


def test_the_audio_path_loads_without_django_installed_or_configured() -> None:
    """Import every media, metrics and process module with Django made unimportable."""
    names = [module_name(p) for package in WITHOUT_DJANGO for p in modules(package)]
    program = (
        "import sys\n"
        "for blocked in ('django', 'channels', 'calls'):\n"
        "    sys.modules[blocked] = None  # any import of it now raises ImportError\n"
        f"for name in {names!r}:\n"
        "    __import__(name)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_observer_seam_is_configured_not_imported() -> None:
    """The one way from telephony to calls is the setting that names the implementation."""
    from django.conf import settings

    from calls.observer import LineReports
    from telephony.observer import LineObserver, get_line_observer

    assert settings.LINE_OBSERVER == "calls.observer.LineReports"
    assert isinstance(get_line_observer(), LineReports)
    assert issubclass(LineReports, LineObserver)


def test_no_test_module_imports_another() -> None:
    """What test modules share lives in a helper module (tests/helpers, a package's helpers)."""
    offenders = [
        f"{module_name(p)} imports {name}"
        for p in sorted((REPO / "tests").rglob("*.py"))
        for name in imports_of(p)
        if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert offenders == []

"""The import contracts in pyproject.toml hold for the code, and fail when an import breaks
them: ``lint-imports`` runs on a copy of the packages with one offending module added."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "pipelines", "hooks")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_copy(tmp_path: Path, offending: dict[str, str]) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts on a copy of its packages, each file that
    ``offending`` names (path: source) created or added to."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for path, source in offending.items():
        with open(tmp_path / path, "a") as module:
            module.write(source)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_contract(tmp_path):
    done = lint_copy(tmp_path, {})
    assert done.returncode == 0, done.stdout + done.stderr
    assert " BROKEN" not in done.stdout


@pytest.mark.parametrize(
    ("offending", "contract", "named"),
    [
        (
            {"pipelines/leak.py": "from hooks.models import Hook\n"},
            "pipelines never imports hooks",
            "pipelines.leak -> hooks.models",
        ),
        (
            # The variable declaration rules, under the models, reaching up to the signals.
            {"pipelines/variables.py": "\nfrom pipelines import signals  # noqa: F401\n"},
            "pipelines: the edges (API, admin, commands) over the services over the models",
            "pipelines.variables -> pipelines.signals",
        ),
        (
            {
                "config/first.py": "from config import second\n",
                "config/second.py": "from config import first\n",
            },
            "No import cycles between sibling modules or packages, at any depth",
            "No cycles are allowed in config.",
        ),
    ],
    ids=["pipelines-imports-hooks", "a-layer-imports-up", "a-cycle"],
)
def test_an_import_that_breaks_a_contract_fails_the_check(tmp_path, offending, contract, named):
    done = lint_copy(tmp_path, offending)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and named in broken, done.stdout

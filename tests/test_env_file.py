"""``PIPEHOOK_ENV_FILE``: a file of settings is read only when named, the real environment
wins over it, and a named file that is not there stops the start with a clear error."""

import subprocess
import sys

from tests.test_serve import ROOT, embedded_defaults_env

SHOW_SETTINGS = (
    "import django; django.setup(); from django.conf import settings;"
    " print(settings.HOOKS_BATCH_SIZE, settings.HOOKS_SEND_CONCURRENCY)"
)


def start_settings(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Production's settings loaded in a fresh process with ``env`` on top."""
    environment = {
        k: v
        for k, v in embedded_defaults_env().items()
        if k not in ("PIPEHOOK_ENV_FILE", "HOOKS_BATCH_SIZE", "HOOKS_SEND_CONCURRENCY")
    }
    environment |= {"PIPEHOOK_VAR_DIR": str(tmp_path / "var"), **env}
    return subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        cwd=ROOT,
        env=environment | {"DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_named_file_is_read_and_the_environment_wins_over_it(tmp_path):
    env_file = tmp_path / "pipehook.env"
    env_file.write_text("HOOKS_BATCH_SIZE=7\nHOOKS_SEND_CONCURRENCY=3\n")

    assert start_settings(tmp_path).stdout.split() == ["50", "10"]
    named = start_settings(tmp_path, PIPEHOOK_ENV_FILE=str(env_file))
    assert named.stdout.split() == ["7", "3"], named.stderr
    both = start_settings(tmp_path, PIPEHOOK_ENV_FILE=str(env_file), HOOKS_BATCH_SIZE="9")
    assert both.stdout.split() == ["9", "3"], both.stderr


def test_a_named_file_that_is_missing_is_refused(tmp_path):
    missing = tmp_path / "nowhere.env"
    done = start_settings(tmp_path, PIPEHOOK_ENV_FILE=str(missing))
    assert done.returncode != 0
    assert f"PIPEHOOK_ENV_FILE: there is no file {missing}" in done.stderr

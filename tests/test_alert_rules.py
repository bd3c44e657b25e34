"""deploy/prometheus/alerts.yml: valid for Prometheus, each alert firing when it should, and
every metric it reads one that /metrics exports."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

RULES_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
# Series names of each type as they appear in a scrape.
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (Debian's package has it)"
    return subprocess.run(
        [path, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_finds_the_rules_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_each_alert_fires_on_its_case_and_not_on_a_healthy_instance():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.django_db
def test_the_rules_read_only_metrics_that_metrics_exports(client, settings):
    settings.PIPEHOOK_METRICS_TOKEN = "t" * 32
    scrape = client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "t" * 32)
    assert scrape.status_code == 200
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(scrape.content.decode())
        for suffix in SUFFIXES[family.type]
    }
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    read = {name for expr in expressions for name in re.findall(r"\bpipehook_\w+", expr)}
    assert read, expressions
    assert read <= exported, read - exported

"""The receiver the README shows works against real deliveries, as written there."""

import re
import sys
import threading
import time
from pathlib import Path

import pytest

from hooks import delivery, signing
from hooks.models import Delivery, Hook
from hooks.services import resend_delivery, rotate_signing_token
from pipelines import services
from tests.factories import HookFactory, ProjectFactory

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def readme_receiver(monkeypatch):
    """Run the README's receiver code, up to its blocking last line, on a free port."""
    code = re.search(r"## Receiving hooks.*?```python\n(.*?)```", README.read_text(), re.S)[1]
    setup, last_line = code.rstrip().rsplit("\n", 1)
    assert last_line.startswith("HTTPServer(")
    monkeypatch.setitem(sys.modules, "signing", signing)  # "copy it next to your receiver"
    namespace: dict = {}
    exec(setup, namespace)  # noqa: S102 - the README's own code is what is under test
    server = namespace["HTTPServer"](("127.0.0.1", 0), namespace["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield namespace["SECRETS"], f"http://127.0.0.1:{server.server_address[1]}/", namespace
    server.shutdown()


@pytest.mark.parametrize(("matching_secret", "expected_status"), [(True, 204), (False, 401)])
def test_readme_receiver_accepts_only_our_signature(
    db, readme_receiver, matching_secret, expected_status
):
    [secret], url, _ = readme_receiver
    project = ProjectFactory()
    HookFactory(
        project=project,
        url=url,
        signing_token=secret if matching_secret else signing.generate_signing_secret(),
    )
    services.create_pipeline(project, ref="main", sha="a" * 40)
    attempt = delivery.deliver(Delivery.objects.get().pk)
    assert attempt.response_status == expected_status


def test_readme_receiver_handles_both_kinds_in_order_and_skips_repeats(db, readme_receiver):
    [secret], url, namespace = readme_receiver
    project = ProjectFactory()
    hook = HookFactory(
        project=project, url=url, signing_token=secret, pipeline_events=True, job_events=True
    )
    pipeline = services.create_pipeline(project, ref="main", sha="a" * 40)
    job = services.create_job(pipeline, name="build", status="pending")
    services.update_job(job, status="success")
    deliveries = list(Delivery.objects.order_by("pk"))
    kinds = {d.event.object_kind for d in deliveries}
    assert kinds == {"build", "pipeline"}
    delivery.deliver(deliveries[0].pk)  # the task follows its pipeline: every one goes out
    assert not Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).exists()
    assert namespace["last"] == {pipeline.pk: len(deliveries)}
    assert namespace["handled"] == {str(d.idempotency_key) for d in deliveries}
    # A resend repeats a key: acknowledged, and nothing is handled twice.
    resent = resend_delivery(deliveries[1])
    assert resent.response_status == 204
    assert namespace["last"] == {pipeline.pk: len(deliveries)}
    assert hook.attempts.filter(response_status=204).count() == len(deliveries) + 1


def deliver_one(project) -> int:
    services.create_pipeline(project, ref="main", sha=f"{time.time_ns():040x}"[-40:])
    first = Delivery.objects.filter(status="pending").earliest("pk")
    status = delivery.deliver(first.pk).response_status
    Delivery.objects.filter(status="pending").delete()  # the pipeline's later ones: not needed
    return status


def test_readme_receiver_follows_a_rotation_without_missing_a_delivery(db, readme_receiver):
    """The README's steps: rotate; the receiver, still on the old secret, accepts; it adds
    the new one and drops the old; it accepts throughout, and after the grace too. A
    receiver that never switched is refused once the grace is over."""
    secrets, url, _ = readme_receiver
    old = secrets[0]
    project = ProjectFactory()
    hook = HookFactory(project=project, url=url, signing_token=old)

    new = rotate_signing_token(hook).secret
    assert deliver_one(project) == 204  # the receiver still holds only the old secret
    secrets.insert(0, new)
    assert deliver_one(project) == 204  # both
    secrets.remove(old)
    assert deliver_one(project) == 204  # only the new one, still in the grace

    secrets[:] = [old]  # a receiver that never switched, once the grace is over
    hook.refresh_from_db()
    hook.previous_signing_tokens = [
        {**entry, "expires_at": time.time() - 1} for entry in hook.previous_signing_tokens
    ]
    hook.save(update_fields=["previous_signing_tokens"])
    assert deliver_one(project) == 401
    secrets[:] = [new]
    assert deliver_one(project) == 204
    assert Hook.objects.get().signing_token.reveal() == new

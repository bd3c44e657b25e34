"""The admin for people who register hooks: the project page's hooks, the hook page with its
health, deliveries and buttons, and the delivery log. Requests go through Django's test
client with a signed-in user; deliveries go to a real receiver on 127.0.0.1."""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from hooks.forms import HookForm
from hooks.models import Delivery, DeliveryAttempt, Hook
from hooks.validators import SECRET_MASK
from pipelines import services
from tests.clients import api_client_with
from tests.factories import DeliveryFactory, UserFactory
from tests.hooks.receiver import Reply

SECRET_TOKEN = "admin-form-secret"
SIGNING_TOKEN = "whsec_" + base64.b64encode(b"s" * 32).decode()
HEADER_SECRET = "Bearer header-value-xyz"


def form_data(response) -> dict:
    """The POST a browser would send for an admin change form as rendered (no edits)."""
    data = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        data[name] = value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for sub in formset.forms:
            for name in sub.fields:
                value = sub[name].value()
                if value is None or value is False:
                    continue
                data[sub.add_prefix(name)] = value
    return {key: ("on" if value is True else value) for key, value in data.items()}


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def make_hook(project, **fields) -> Hook:
    fields.setdefault("url", "http://127.0.0.1:9/hook")
    return Hook.objects.create(project=project, **fields)


def make_delivery(hook: Hook, *, status=Delivery.Status.SUCCEEDED, event_status="success", **kw):
    """A delivery of a finished pipeline's event; all of one hook's in one order."""
    return DeliveryFactory(hook=hook, event__status=event_status, order_key=1, status=status, **kw)


# --- The project page -------------------------------------------------------------------


def test_project_page_adds_a_hook_with_secrets_that_never_come_back(admin_client, project):
    page = reverse("admin:pipelines_project_change", args=[project.pk])
    data = form_data(admin_client.get(page))
    data.update(
        {
            "hooks-TOTAL_FORMS": "1",
            "hooks-0-name": "deploy bot",
            "hooks-0-url": "http://127.0.0.1:8080/ci",
            "hooks-0-pipeline_events": "on",
            "hooks-0-ref_filter_strategy": "wildcard",
            "hooks-0-ref_filter": "release/*",
            "hooks-0-status_filter": ["failed", "success"],
            "hooks-0-enable_ssl_verification": "on",
            "hooks-0-token": SECRET_TOKEN,
            "hooks-0-signing_token": SIGNING_TOKEN,
            "hooks-0-custom_headers": f"Authorization: {HEADER_SECRET}\nX-Team: platform",
        }
    )

    response = admin_client.post(page, data, follow=True)

    assert response.status_code == 200
    hook = Hook.objects.get()
    assert (hook.name, hook.url, hook.ref_filter_strategy, hook.ref_filter) == (
        "deploy bot",
        "http://127.0.0.1:8080/ci",
        "wildcard",
        "release/*",
    )
    assert hook.status_filter == ["failed", "success"]
    assert hook.token == SECRET_TOKEN
    assert hook.signing_token == SIGNING_TOKEN
    assert hook.custom_headers == {"Authorization": HEADER_SECRET, "X-Team": "platform"}

    again = admin_client.get(page).content.decode()
    assert "deploy bot" in again
    assert "set — leave blank to keep" in again
    for secret in (SECRET_TOKEN, SIGNING_TOKEN, HEADER_SECRET, "platform"):
        assert secret not in again
    assert f"Authorization: {SECRET_MASK}" in again


def test_project_page_refuses_a_loopback_hook_without_allow_list(admin_client, project, settings):
    settings.HOOKS_ALLOWED_NETWORKS = []
    page = reverse("admin:pipelines_project_change", args=[project.pk])
    data = form_data(admin_client.get(page))
    data.update(
        {
            "hooks-TOTAL_FORMS": "1",
            "hooks-0-url": "http://127.0.0.1:8080/ci",
            "hooks-0-pipeline_events": "on",
            "hooks-0-ref_filter_strategy": "all_branches",
        }
    )

    response = admin_client.post(page, data)

    assert response.status_code == 200  # the form again, with the reason
    assert "loopback address" in response.content.decode()
    assert not Hook.objects.exists()


def test_project_page_keeps_secrets_left_blank_and_uses_stored_header_values(admin_client, project):
    hook = make_hook(
        project,
        token=SECRET_TOKEN,
        signing_token=SIGNING_TOKEN,
        custom_headers={"Authorization": HEADER_SECRET},
    )
    page = reverse("admin:pipelines_project_change", args=[project.pk])
    data = form_data(admin_client.get(page))
    assert data["hooks-0-custom_headers"] == f"Authorization: {SECRET_MASK}"
    data["hooks-0-name"] = "renamed"
    data["hooks-0-custom_headers"] += "\nX-Extra: 1"

    admin_client.post(page, data, follow=True)

    hook.refresh_from_db()
    assert hook.name == "renamed"
    assert hook.token == SECRET_TOKEN
    assert hook.signing_token == SIGNING_TOKEN
    assert hook.custom_headers == {"Authorization": HEADER_SECRET, "X-Extra": "1"}


CREDENTIALS_URL = "http://ci:url-password@127.0.0.1:8080/ci?token=query-secret"
SHOWN_URL = "http://*****:*****@127.0.0.1:8080/ci?token=[FILTERED]"


@pytest.mark.parametrize("where", ["project page", "hook page"])
def test_hook_url_credentials_show_masked_and_are_kept_on_save(admin_client, project, where):
    hook = make_hook(project, url=CREDENTIALS_URL)
    prefix = "hooks-0-" if where == "project page" else ""
    page = (
        reverse("admin:pipelines_project_change", args=[project.pk])
        if where == "project page"
        else reverse("admin:hooks_hook_change", args=[hook.pk])
    )
    shown = admin_client.get(page)
    assert "url-password" not in shown.content.decode()
    assert "query-secret" not in shown.content.decode()
    data = form_data(shown)
    assert data[f"{prefix}url"] == SHOWN_URL
    data[f"{prefix}name"] = "renamed"

    saved = admin_client.post(page, data, follow=True)

    assert saved.status_code == 200
    hook.refresh_from_db()
    assert (hook.name, hook.url) == ("renamed", CREDENTIALS_URL)
    # Masked parts taken to another host are refused, not stored as asterisks.
    data[f"{prefix}url"] = SHOWN_URL.replace("127.0.0.1", "127.0.0.2")
    refused = admin_client.post(page, data)
    assert "masked parts" in refused.content.decode()
    hook.refresh_from_db()
    assert hook.url == CREDENTIALS_URL


def test_hook_form_moved_to_another_receiver_keeps_no_secret_it_would_send(admin_client, project):
    hook = make_hook(project, token=SECRET_TOKEN, custom_headers={"Authorization": HEADER_SECRET})
    page = reverse("admin:hooks_hook_change", args=[hook.pk])
    data = form_data(admin_client.get(page))
    data.pop("token")  # not rendered, so not sent back
    data["url"] = "http://127.0.0.2:8080/elsewhere"

    refused = admin_client.post(page, data)
    assert "does not get the stored header values" in refused.content.decode()
    hook.refresh_from_db()
    assert hook.url == "http://127.0.0.1:9/hook"

    data["custom_headers"] = "X-Team: ops"
    admin_client.post(page, data, follow=True)
    hook.refresh_from_db()
    assert hook.url == "http://127.0.0.2:8080/elsewhere"
    assert (hook.token, hook.custom_headers) == ("", {"X-Team": "ops"})


def test_hook_lists_and_pages_never_show_url_credentials(admin_client, project):
    hook = make_hook(project, url=CREDENTIALS_URL)
    delivery = make_delivery(hook)
    attempt = DeliveryAttempt.objects.create(hook=hook, delivery=delivery, url=hook.url)
    pages = [
        reverse("admin:hooks_hook_changelist"),
        reverse("admin:hooks_hook_change", args=[hook.pk]),
        reverse("admin:hooks_delivery_changelist"),
        reverse("admin:hooks_delivery_change", args=[delivery.pk]),
        reverse("admin:hooks_deliveryattempt_changelist"),
        reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk]),
        reverse("admin:hooks_hook_redeliver", args=[hook.pk]),
    ]
    for page in pages:
        text = admin_client.get(page).content.decode()
        assert "127.0.0.1:8080/ci" in text, page  # the URL is there...
        assert "url-password" not in text and "query-secret" not in text, page  # ...masked
    # Searching by URL would spell the password out letter by letter: it finds nothing.
    found = admin_client.get(reverse("admin:hooks_hook_changelist"), {"q": "url-pass"})
    assert found.context["cl"].result_count == 0


# --- The hook form ------------------------------------------------------------------------


def hook_page(hook: Hook) -> str:
    return reverse("admin:hooks_hook_change", args=[hook.pk])


def test_hook_form_removes_and_generates_secrets(admin_client, project):
    hook = make_hook(project, token=SECRET_TOKEN, signing_token=SIGNING_TOKEN)
    data = form_data(admin_client.get(hook_page(hook)))
    data["remove_token"] = "on"
    data["generate_signing_token"] = "on"

    response = admin_client.post(hook_page(hook), data, follow=True)

    hook.refresh_from_db()
    assert hook.token == ""
    assert hook.signing_token.startswith("whsec_") and hook.signing_token != SIGNING_TOKEN
    assert len(base64.b64decode(hook.signing_token[len("whsec_") :])) == 32
    shown = [m for m in messages_of(response) if "signing secret" in m]
    assert len(shown) == 1 and hook.signing_token in shown[0]
    # Shown once: the next page does not hold it.
    assert hook.signing_token not in admin_client.get(hook_page(hook)).content.decode()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("signing_token", "whsec_nope!", "not valid base64"),
        ("custom_headers", "X-Gitlab-Token: mine", "cannot be replaced by a custom header"),
        ("custom_headers", "no colon here", "write each header as"),
        ("custom_headers", f"X-New: {SECRET_MASK}", "X-New has no stored value"),
        ("ref_filter", "(", "not a valid regular expression"),
    ],
)
def test_hook_form_refuses_bad_settings_and_changes_nothing(
    admin_client, project, field, value, error
):
    hook = make_hook(project, name="before", ref_filter_strategy="regex", ref_filter="^main$")
    data = form_data(admin_client.get(hook_page(hook)))
    data["name"] = "after"
    data[field] = value

    response = admin_client.post(hook_page(hook), data)

    assert response.status_code == 200
    assert error in response.content.decode()
    hook.refresh_from_db()
    assert (hook.name, hook.ref_filter) == ("before", "^main$")


def test_add_hook_page_creates_a_hook_for_the_chosen_project(admin_client, project):
    response = admin_client.post(
        reverse("admin:hooks_hook_add"),
        {
            "project": project.pk,
            "url": "http://127.0.0.1:8080/ci",
            "pipeline_events": "on",
            "ref_filter_strategy": "all_branches",
            "enable_ssl_verification": "on",
        },
    )

    assert response.status_code == 302
    assert Hook.objects.get().project == project


# --- The hook page: health, deliveries, buttons ----------------------------------------


def test_hook_page_shows_health_and_recent_deliveries(admin_client, project):
    hook = make_hook(
        project, recent_failures=5, disabled_until=timezone.now() + timedelta(minutes=2)
    )
    ok = make_delivery(hook, attempt_count=1, last_response_status=200)
    failing = make_delivery(
        hook,
        status=Delivery.Status.PENDING,
        event_status="failed",
        attempt_count=3,
        last_response_status=503,
    )

    page = admin_client.get(hook_page(hook)).content.decode()

    assert "temporarily disabled" in page
    assert "Consecutive failures</dt><dd>5</dd>" in page
    assert f'data-delivery="{ok.pk}"' in page and f'data-delivery="{failing.pk}"' in page
    assert "→ failed" in page and ">503<" in page and ">succeeded<" in page
    assert "Send test event" in page and "Re-enable" in page and "Redeliver all failed" in page


def test_send_test_event_without_pipeline_says_there_is_none(admin_client, project, receiver):
    hook = make_hook(project, url=receiver.url)

    response = admin_client.post(reverse("admin:hooks_hook_test", args=[hook.pk]), follow=True)

    assert any("this project has no pipeline yet" in m for m in messages_of(response))
    assert receiver.requests == []
    assert not DeliveryAttempt.objects.exists()


def test_send_test_event_delivers_the_newest_pipeline(admin_client, project, receiver):
    services.create_pipeline(project, ref="main", sha="d" * 40)
    hook = make_hook(project, url=receiver.url, recent_failures=40, permanently_disabled=True)

    response = admin_client.post(reverse("admin:hooks_hook_test", args=[hook.pk]), follow=True)

    (request,) = receiver.wait_for(1)
    assert request.header("X-Gitlab-Event") == "Pipeline Hook"
    assert any("Test event delivered: HTTP 200" in m for m in messages_of(response))
    hook.refresh_from_db()
    assert hook.alert_status == Hook.AlertStatus.EXECUTABLE  # a successful test re-enables
    assert "Recent test events" in response.content.decode()


def test_send_test_event_that_fails_says_how(admin_client, project, receiver):
    services.create_pipeline(project, ref="main", sha="d" * 40)
    hook = make_hook(project, url=receiver.url)
    receiver.script(Reply(502))

    response = admin_client.post(reverse("admin:hooks_hook_test", args=[hook.pk]), follow=True)

    assert any("Test event failed: HTTP 502" in m for m in messages_of(response))


def test_actions_need_post(admin_client, project, receiver):
    services.create_pipeline(project, ref="main", sha="d" * 40)
    hook = make_hook(project, url=receiver.url)

    response = admin_client.get(reverse("admin:hooks_hook_test", args=[hook.pk]))

    assert response.status_code == 302
    assert receiver.requests == []


def test_reenable_clears_a_disabled_hook(admin_client, project):
    hook = make_hook(project, recent_failures=40, permanently_disabled=True)

    response = admin_client.post(reverse("admin:hooks_hook_reenable", args=[hook.pk]), follow=True)

    hook.refresh_from_db()
    assert (hook.permanently_disabled, hook.recent_failures) == (False, 0)
    assert any("enabled again" in m for m in messages_of(response))


def test_redeliver_failed_since_queues_only_failures_after_the_time(admin_client, project):
    hook = make_hook(project)
    old = make_delivery(hook, status=Delivery.Status.FAILED)
    Delivery.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    recent = make_delivery(hook, status=Delivery.Status.FAILED)
    fine = make_delivery(hook, status=Delivery.Status.SUCCEEDED)
    url = reverse("admin:hooks_hook_redeliver", args=[hook.pk])
    assert "2 failed deliveries" in admin_client.get(url).content.decode()
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    response = admin_client.post(url, {"since": since}, follow=True)

    assert any("1 failed delivery since" in m for m in messages_of(response))
    statuses = dict(Delivery.objects.values_list("pk", "status"))
    assert statuses == {old.pk: "failed", recent.pk: "pending", fine.pk: "succeeded"}


def test_redeliver_refuses_a_time_in_the_future(admin_client, project):
    hook = make_hook(project)
    make_delivery(hook, status=Delivery.Status.FAILED)
    since = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")

    response = admin_client.post(
        reverse("admin:hooks_hook_redeliver", args=[hook.pk]), {"since": since}
    )

    assert "This time is in the future." in response.content.decode()
    assert Delivery.objects.get().status == Delivery.Status.FAILED


# --- Deliveries and the log -------------------------------------------------------------


def test_delivery_page_shows_request_and_response_with_secrets_masked(admin_client, project):
    hook = make_hook(project, token=SECRET_TOKEN, custom_headers={"Authorization": "x"})
    delivery = make_delivery(hook, attempt_count=1, last_response_status=500)
    DeliveryAttempt.objects.create(
        hook=hook,
        delivery=delivery,
        url=hook.url,
        request_headers={"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": SECRET_TOKEN},
        response_status=500,
        response_headers={"Content-Type": "application/json"},
        response_body='{"error":"boom"}',
        duration_ms=87,
    )

    page = admin_client.get(
        reverse("admin:hooks_delivery_change", args=[delivery.pk])
    ).content.decode()

    assert SECRET_TOKEN not in page
    assert "X-Gitlab-Token: [REDACTED]" in page
    assert "X-Gitlab-Event: Pipeline Hook" in page
    assert "&quot;error&quot;: &quot;boom&quot;" in page  # the response, pretty-printed
    assert "&quot;object_kind&quot;: &quot;pipeline&quot;" in page  # the payload
    assert "87 ms" in page


def test_resend_from_the_delivery_page_sends_it_again(admin_client, project, receiver):
    hook = make_hook(project, url=receiver.url)
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempt_count=8)

    response = admin_client.post(
        reverse("admin:hooks_delivery_resend", args=[delivery.pk]), follow=True
    )

    (request,) = receiver.wait_for(1)
    assert request.header("Idempotency-Key") == str(delivery.idempotency_key)
    assert any(f"Delivery {delivery.pk} resent: HTTP 200" in m for m in messages_of(response))
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.attempts.get().trigger == DeliveryAttempt.Trigger.MANUAL


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_resend_never_redirects_off_the_site(admin_client, project, receiver, target):
    hook = make_hook(project, url=receiver.url)
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempt_count=8)

    response = admin_client.post(
        reverse("admin:hooks_delivery_resend", args=[delivery.pk]), {"next": target}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:hooks_delivery_change", args=[delivery.pk])


def test_resend_returns_to_the_page_it_came_from(admin_client, project, receiver):
    hook = make_hook(project, url=receiver.url)
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempt_count=8)
    back = reverse("admin:hooks_hook_change", args=[hook.pk])

    response = admin_client.post(
        reverse("admin:hooks_delivery_resend", args=[delivery.pk]), {"next": back}
    )

    assert response["Location"] == back


def test_delivery_list_filters_by_status_and_response(admin_client, project):
    hook = make_hook(project)
    ok = make_delivery(hook, attempt_count=1, last_response_status=200)
    failed = make_delivery(
        hook, status=Delivery.Status.FAILED, attempt_count=8, last_response_status=404
    )
    changelist = reverse("admin:hooks_delivery_changelist")

    by_status = admin_client.get(changelist, {"status__exact": "failed"})
    by_response = admin_client.get(changelist, {"response": "successful"})

    assert [d.pk for d in by_status.context["cl"].result_list] == [failed.pk]
    assert [d.pk for d in by_response.context["cl"].result_list] == [ok.pk]


@pytest.mark.parametrize("auto_disable", [True, False])
def test_hook_list_filters_by_the_health_its_badges_show(
    admin_client, project, settings, auto_disable
):
    settings.HOOKS_AUTO_DISABLE = auto_disable
    healthy = make_hook(project)
    resting = make_hook(project, disabled_until=timezone.now() + timedelta(hours=1))
    disabled = make_hook(project, permanently_disabled=True, recent_failures=40)
    changelist = reverse("admin:hooks_hook_changelist")

    hooks = (healthy, resting, disabled)
    listed = {
        health: {
            h.pk for h in admin_client.get(changelist, {"health": health}).context["cl"].result_list
        }
        for health in Hook.AlertStatus.values
    }

    assert listed == {
        health: {hook.pk for hook in hooks if hook.alert_status == health}
        for health in Hook.AlertStatus.values
    }
    if not auto_disable:  # nothing is held back: every hook is active, as its badge says
        assert listed[Hook.AlertStatus.EXECUTABLE] == {hook.pk for hook in hooks}


def test_attempt_page_shows_a_test_requests_body(admin_client, project):
    hook = make_hook(project)
    attempt = DeliveryAttempt.objects.create(
        hook=hook,
        url=hook.url,
        trigger=DeliveryAttempt.Trigger.TEST,
        request_body='{"object_kind":"pipeline","marker":"test-body"}',
        response_status=None,
        error="connection refused by 127.0.0.1",
    )

    page = admin_client.get(
        reverse("admin:hooks_deliveryattempt_change", args=[attempt.pk])
    ).content.decode()

    assert "&quot;marker&quot;: &quot;test-body&quot;" in page
    assert "connection refused by 127.0.0.1" in page
    assert "no response" in page


# --- Who may -------------------------------------------------------------------------------


def staff_with(client, *codenames: str):
    user = UserFactory(username="hook-keeper", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def test_manage_hooks_permission_opens_the_hooks_admin(client, project, receiver):
    services.create_pipeline(project, ref="main", sha="d" * 40)
    hook = make_hook(project, url=receiver.url)
    staff_with(client, "manage_hooks")

    assert client.get(reverse("admin:hooks_hook_changelist")).status_code == 200
    assert client.get(hook_page(hook)).status_code == 200
    response = client.post(reverse("admin:hooks_hook_test", args=[hook.pk]))

    assert response.status_code == 302
    receiver.wait_for(1)


def test_staff_without_hook_rights_cannot_send_or_see(client, project, receiver):
    hook = make_hook(project, url=receiver.url)
    staff_with(client, "view_project")

    assert client.get(hook_page(hook)).status_code == 403
    assert client.post(reverse("admin:hooks_hook_test", args=[hook.pk])).status_code == 403
    assert client.post(reverse("admin:hooks_hook_reenable", args=[hook.pk])).status_code == 403
    delivery = make_delivery(hook, status=Delivery.Status.FAILED)
    assert (
        client.post(reverse("admin:hooks_delivery_resend", args=[delivery.pk])).status_code == 403
    )
    assert receiver.requests == []


def test_view_only_staff_sees_the_hook_page_without_buttons(client, project, receiver):
    services.create_pipeline(project, ref="main", sha="d" * 40)
    hook = make_hook(project, url=receiver.url)
    make_delivery(hook, status=Delivery.Status.FAILED)
    staff_with(client, "view_hook", "view_delivery")

    page = client.get(hook_page(hook))

    assert page.status_code == 200
    assert "Recent deliveries" in page.content.decode()
    assert "Send test event" not in page.content.decode()
    assert "resend-delivery" not in page.content.decode()
    assert client.post(reverse("admin:hooks_hook_test", args=[hook.pk])).status_code == 403
    assert receiver.requests == []


# --- One rule for hook URLs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/ci",
        "http://[::ffff:127.0.0.1]:8080/ci",
        "http://ci_receiver.invalid:8080/hook",  # Django's URLValidator refuses the underscore
        "http://[::1:8080]/hook",  # the address ::1:8080, reserved
        "http://[::1]:0/hook",
        "http://[zzz]/hook",
        "ftp://127.0.0.1/hook",
        "127.0.0.1:8080/ci",
    ],
)
def test_the_admin_form_and_the_api_take_the_same_hook_urls(project, make_token, url):
    form = HookForm(
        data={
            "project": project.pk,
            "url": url,
            "ref_filter_strategy": "all_branches",
            "pipeline_events": "on",
            "enable_ssl_verification": "on",
        }
    )
    api = api_client_with(make_token())
    response = api.post(f"/api/v4/projects/{project.pk}/hooks", {"url": url}, format="json")
    assert response.status_code in (201, 422), response.content
    assert form.is_valid() == (response.status_code == 201), (form.errors, response.json())
    if not form.is_valid():
        assert response.json()["message"] == f"Invalid url given: {form.errors['url'][0]}"


@pytest.mark.parametrize("hooks", [1, 12])
def test_hook_lists_read_each_hooks_last_delivery_in_the_lists_query(
    admin_client, project, django_assert_max_num_queries, hooks
):
    for _ in range(hooks):
        make_delivery(make_hook(project))
    pages = {
        reverse("admin:hooks_hook_changelist"): 6,
        reverse("admin:pipelines_project_change", args=[project.pk]): 5,
    }

    for page, queries in pages.items():
        admin_client.get(page)  # the session and the permissions, read once
        # As many queries for twelve hooks as for one: none a row.
        with django_assert_max_num_queries(queries):
            response = admin_client.get(page)
        assert response.status_code == 200
        assert response.content.decode().count('class="hook-badge"') >= 2 * hooks

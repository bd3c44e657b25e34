"""GitLab's limits on hooks: 100 per project (``project_hooks``), and the test and resend
buttons at 5 a minute per user and project (``web_hook_test``, ``web_hook_event_resend``),
through the hooks API and the admin. Rate limits are counted in a real Redis."""

import logging
import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from hooks.limits import RATE_LIMITED_MESSAGE
from hooks.models import Delivery, DeliveryAttempt, Hook
from pipelines import services
from tests.clients import api_client_with
from tests.factories import DeliveryFactory, ProjectFactory, UserFactory
from tests.hooks.test_admin import form_data

GITLAB_429 = {"message": {"error": RATE_LIMITED_MESSAGE}}


def hooks_url(project, suffix: str = "") -> str:
    return f"/api/v4/projects/{project.pk}/hooks{suffix}"


def fill_with_hooks(project, count: int) -> None:
    Hook.objects.bulk_create(
        Hook(project=project, url=f"https://hooks.example.com/{number}") for number in range(count)
    )


def make_delivery(hook: Hook) -> Delivery:
    return DeliveryFactory(hook=hook, event__status="failed", status=Delivery.Status.FAILED)


def assert_sixth_refused(api: APIClient, url: str) -> None:
    """Five POSTs go through; the sixth gets GitLab's 429 with a Retry-After."""
    for _ in range(5):
        assert api.post(url).status_code == 201
    refused = api.post(url)
    assert refused.status_code == 429
    assert refused.json() == GITLAB_429
    assert 1 <= int(refused["Retry-After"]) <= 60


@pytest.fixture
def shared_rate_limits(settings, redis_url):
    """Rate limits in a real Redis, as the web processes share them; a fresh key prefix."""
    settings.CACHES = {
        **settings.CACHES,
        "rate_limits": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url.replace("redis+socket://", "unix://", 1),
            "KEY_PREFIX": uuid.uuid4().hex,
        },
    }


# --- Hooks per project ----------------------------------------------------------------


def test_the_101st_hook_is_refused_with_gitlabs_error(make_token, project):
    fill_with_hooks(project, 100)
    api = api_client_with(make_token())

    response = api.post(hooks_url(project), {"url": "https://hooks.example.com/one-more"})

    assert response.status_code == 422
    assert response.json() == {
        "message": {"base": ["Maximum number of project hooks (100) exceeded"]}
    }
    assert Hook.objects.filter(project=project).count() == 100

    Hook.objects.filter(project=project).first().delete()
    response = api.post(hooks_url(project), {"url": "https://hooks.example.com/one-more"})
    assert response.status_code == 201, response.content
    assert Hook.objects.filter(project=project).count() == 100


def test_the_hook_limit_is_per_project_and_a_setting(make_token, project, settings):
    settings.HOOKS_MAX_PER_PROJECT = 2
    api = api_client_with(make_token())
    fill_with_hooks(project, 2)

    refused = api.post(hooks_url(project), {"url": "https://hooks.example.com/3"})
    assert refused.json() == {"message": {"base": ["Maximum number of project hooks (2) exceeded"]}}
    other = ProjectFactory()
    assert api.post(hooks_url(other), {"url": "https://hooks.example.com/a"}).status_code == 201
    # Editing a hook of a full project is no addition.
    hook = Hook.objects.filter(project=project).first()
    edited = api.put(hooks_url(project, f"/{hook.pk}"), {"name": "renamed"})
    assert edited.status_code == 200, edited.content

    settings.HOOKS_MAX_PER_PROJECT = 0  # no limit
    assert api.post(hooks_url(project), {"url": "https://hooks.example.com/3"}).status_code == 201


def test_the_admin_refuses_a_hook_beyond_the_limit(admin_client, project, settings):
    settings.HOOKS_MAX_PER_PROJECT = 3
    fill_with_hooks(project, 3)

    response = admin_client.post(
        reverse("admin:hooks_hook_add"),
        {"project": project.pk, "url": "https://hooks.example.com/4", "pipeline_events": "on",
         "ref_filter_strategy": "all_branches", "enable_ssl_verification": "on"},
    )  # fmt: skip

    assert response.status_code == 200  # the form again, with the error
    assert "Maximum number of project hooks (3) exceeded" in response.content.decode()
    assert Hook.objects.filter(project=project).count() == 3
    # Moving a hook into the full project is adding one to it.
    elsewhere = Hook.objects.create(project=ProjectFactory(), url="https://hooks.example.com/x")
    moved = admin_client.post(
        reverse("admin:hooks_hook_change", args=[elsewhere.pk]),
        {"project": project.pk, "url": elsewhere.url, "pipeline_events": "on",
         "ref_filter_strategy": "all_branches", "enable_ssl_verification": "on"},
    )  # fmt: skip
    assert "Maximum number of project hooks (3) exceeded" in moved.content.decode()
    elsewhere.refresh_from_db()
    assert elsewhere.project_id != project.pk


def project_page_post(admin_client, page: str, new_urls: list[str], delete=()) -> dict:
    """The project page's form as rendered, with hooks added and some ticked for deletion."""
    data = form_data(admin_client.get(page))
    prefix = "hooks"
    existing = int(data[f"{prefix}-TOTAL_FORMS"])
    for number in range(existing):
        if int(data.get(f"{prefix}-{number}-id") or 0) in delete:
            data[f"{prefix}-{number}-DELETE"] = "on"
    for offset, url in enumerate(new_urls):
        number = existing + offset
        data.update(
            {
                f"{prefix}-{number}-url": url,
                f"{prefix}-{number}-pipeline_events": "on",
                f"{prefix}-{number}-ref_filter_strategy": "all_branches",
                f"{prefix}-{number}-enable_ssl_verification": "on",
            }
        )
    data[f"{prefix}-TOTAL_FORMS"] = str(existing + len(new_urls))
    return data


def test_the_project_page_counts_every_hook_it_adds(admin_client, project, settings):
    settings.HOOKS_MAX_PER_PROJECT = 3
    fill_with_hooks(project, 2)
    existing = list(Hook.objects.filter(project=project))
    page = reverse("admin:pipelines_project_change", args=[project.pk])
    urls = ["https://hooks.example.com/new-1", "https://hooks.example.com/new-2"]

    response = admin_client.post(page, project_page_post(admin_client, page, urls))

    assert response.status_code == 200
    assert "Maximum number of project hooks (3) exceeded" in response.content.decode()
    assert Hook.objects.filter(project=project).count() == 2

    # Removing one while adding two keeps within the limit.
    response = admin_client.post(
        page, project_page_post(admin_client, page, urls, delete=[existing[0].pk])
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert sorted(Hook.objects.filter(project=project).values_list("url", flat=True)) == sorted(
        [existing[1].url, *urls]
    )


# --- Test and resend, 5 a minute per user and project ---------------------------------


def test_the_sixth_test_in_a_minute_is_refused(make_token, project, receiver, shared_rate_limits):
    hook = Hook.objects.create(project=project, url=receiver.url)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    receiver.requests.clear()
    owner = UserFactory()
    api = api_client_with(make_token(owner))
    url = hooks_url(project, f"/{hook.pk}/test/pipeline_events")

    assert_sixth_refused(api, url)
    assert len(receiver.requests) == 5  # the sixth was never sent
    assert DeliveryAttempt.objects.filter(trigger=DeliveryAttempt.Trigger.TEST).count() == 5
    # Per user and project: another person, or another project, is not held back.
    assert api_client_with(make_token()).post(url).status_code == 201
    other = ProjectFactory()
    other_hook = Hook.objects.create(project=other, url=receiver.url)
    services.create_pipeline(other, ref="main", sha="b" * 40)
    other_url = hooks_url(other, f"/{other_hook.pk}/test/pipeline_events")
    assert api.post(other_url).status_code == 201


def test_the_sixth_resend_in_a_minute_is_refused(make_token, project, receiver, shared_rate_limits):
    hook = Hook.objects.create(project=project, url=receiver.url)
    delivery = make_delivery(hook)
    logged = DeliveryAttempt.objects.create(
        hook=hook, delivery=delivery, url=hook.url, response_status=500
    )
    api = api_client_with(make_token())
    url = hooks_url(project, f"/{hook.pk}/events/{logged.pk}/resend")

    assert_sixth_refused(api, url)
    assert len(receiver.requests) == 5


def test_the_admins_sixth_test_click_is_refused(
    admin_client, project, receiver, shared_rate_limits
):
    hook = Hook.objects.create(project=project, url=receiver.url)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    receiver.requests.clear()
    button = reverse("admin:hooks_hook_test", args=[hook.pk])

    for _ in range(5):
        assert admin_client.post(button).status_code == 302
    refused = admin_client.post(button)

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    page = refused.content.decode()
    assert RATE_LIMITED_MESSAGE in page
    assert "At most 5 test events a minute" in page
    assert reverse("admin:hooks_hook_change", args=[hook.pk]) in page
    assert len(receiver.requests) == 5


def test_the_admins_resends_count_against_the_same_limit(
    admin_client, project, receiver, shared_rate_limits
):
    hook = Hook.objects.create(project=project, url=receiver.url)
    deliveries = [make_delivery(hook) for _ in range(7)]

    for delivery in deliveries[:3]:
        button = reverse("admin:hooks_delivery_resend", args=[delivery.pk])
        assert admin_client.post(button).status_code == 302
    # "Resend selected" on the other four: two more fit in the minute.
    response = admin_client.post(
        reverse("admin:hooks_delivery_changelist"),
        {"action": "resend_selected", "_selected_action": [d.pk for d in deliveries[3:]]},
        follow=True,
    )

    assert len(receiver.requests) == 5
    notes = [str(message) for message in response.context["messages"]]
    refused = f"Not resent: deliveries {deliveries[5].pk}, {deliveries[6].pk}."
    assert any(note.startswith(refused) for note in notes), notes
    single = admin_client.post(reverse("admin:hooks_delivery_resend", args=[deliveries[6].pk]))
    assert single.status_code == 429
    assert len(receiver.requests) == 5


def test_without_a_reachable_cache_tests_go_ahead(
    make_token, project, receiver, settings, closed_port, caplog
):
    settings.CACHES = {
        **settings.CACHES,
        "rate_limits": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        },
    }
    hook = Hook.objects.create(project=project, url=receiver.url)
    services.create_pipeline(project, ref="main", sha="a" * 40)
    api = api_client_with(make_token())

    with caplog.at_level(logging.WARNING, logger="hooks.limits"):
        response = api.post(hooks_url(project, f"/{hook.pk}/test/pipeline_events"))

    assert response.status_code == 201
    assert "not rate-limited: the rate limit cache failed" in caplog.text

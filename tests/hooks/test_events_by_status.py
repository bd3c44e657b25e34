"""The events API's status filter, and the admin's response filter on one hook, read
through the (hook, status, id) index (hooks.log_pages): the same entries, order and GitLab
pagination headers as filtering the log in Python, when the matches are few (all counted:
X-Total and a last link) and when they are more than the count limit (GitLab's headers
without counts), wherever in the log the matches lie."""

from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse

from hooks.admin import common
from hooks.admin.delivery_admin import DeliveryAttemptAdmin
from hooks.models import DeliveryAttempt, Hook
from pipelines.api.gitlab import pagination

# Statuses in the order written: every class, a 3xx (in none), no response, and runs of one
# status so that the streams of a class interleave when merged.
STATUSES = [200, 503, None, 404, 201, 500, 500, 302, 204, 200, None, 429, 502, 200, 503, 201]
CLASSES = {
    "successful": lambda s: s is not None and 200 <= s < 300,
    "client_failure": lambda s: s is not None and 400 <= s < 500,
    "server_failure": lambda s: s is None or 500 <= s < 600,
}
FILTERS = [
    "successful",
    "client_failure",
    "server_failure",
    "200",
    "302",
    "599",
    "404,503",
    "201,successful",
    "500,server_failure",
    "client_failure,server_failure",
    "successful,client_failure,server_failure,302",
]


def matches(status_filter: str):
    tests = []
    for value in status_filter.split(","):
        if value in CLASSES:
            tests.append(CLASSES[value])
        else:
            tests.append(lambda s, code=int(value): s == code)
    return lambda status: any(test(status) for test in tests)


def write_log(hook: Hook, statuses: list) -> None:
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(hook=hook, url=hook.url, response_status=status) for status in statuses
    )


@pytest.fixture
def hook(project):
    hook = Hook.objects.create(project=project, name="mixed", url="http://127.0.0.1:9/a")
    other = Hook.objects.create(project=project, name="other", url="http://127.0.0.1:9/b")
    # Another hook's entries in between, of every status: never listed.
    for status in STATUSES:
        write_log(hook, [status])
        write_log(other, [status, 500])
    return hook


def expected_ids(hook: Hook, status_filter: str) -> list[int]:
    test = matches(status_filter)
    rows = DeliveryAttempt.objects.filter(hook=hook).values_list("id", "response_status")
    return sorted((pk for pk, status in rows if test(status)), reverse=True)


def get_events(api_client, hook: Hook, **params):
    url = f"/api/v4/projects/{hook.project_id}/hooks/{hook.pk}/events"
    response = api_client.get(url, params)
    assert response.status_code == 200, response.content[:300]
    return response


def links(response) -> dict[str, int]:
    """The Link header as {relation: page}."""
    found = {}
    for part in response.headers["Link"].split(", "):
        target, relation = part.split("; ")
        query = parse_qs(urlparse(target.strip("<>")).query)
        found[relation.removeprefix('rel="').removesuffix('"')] = int(query["page"][0])
    return found


def read_all_pages(api_client, hook: Hook, status_filter: str, per_page: int) -> list:
    """Every page up to the first past the end, each with its headers."""
    pages = []
    for page in range(1, 100):
        response = get_events(api_client, hook, status=status_filter, per_page=per_page, page=page)
        pages.append(response)
        if not response.json():
            return pages
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("status_filter", FILTERS)
def test_few_matches_are_counted_and_paged_as_a_plain_filter_would(api_client, hook, status_filter):
    expected = expected_ids(hook, status_filter)
    per_page = 2
    total_pages = max(1, -(-len(expected) // per_page))

    pages = read_all_pages(api_client, hook, status_filter, per_page)

    listed = [entry["id"] for response in pages for entry in response.json()]
    assert listed == expected
    for number, response in enumerate(pages, start=1):
        assert [e["id"] for e in response.json()] == expected[
            (number - 1) * per_page : number * per_page
        ]
        headers = response.headers
        assert headers["X-Total"] == str(len(expected))
        assert headers["X-Total-Pages"] == str(total_pages)
        assert headers["X-Page"] == str(number)
        assert links(response)["first"] == 1 and links(response)["last"] == total_pages
        if number <= total_pages:
            assert headers["X-Next-Page"] == (str(number + 1) if number < total_pages else "")
            assert headers["X-Prev-Page"] == (str(number - 1) if number > 1 else "")
        else:  # past the end, as Kaminari: neither a next nor a previous page
            assert headers["X-Next-Page"] == "" and headers["X-Prev-Page"] == ""


@pytest.mark.parametrize("status_filter", FILTERS)
def test_more_matches_than_counted_are_paged_without_counts_as_gitlab_does(
    api_client, hook, monkeypatch, status_filter
):
    expected = expected_ids(hook, status_filter)
    limit = 2
    monkeypatch.setattr(pagination, "MAX_COUNT_LIMIT", limit)
    per_page = 2

    pages = read_all_pages(api_client, hook, status_filter, per_page)

    listed = [entry["id"] for response in pages for entry in response.json()]
    assert listed == expected
    for number, response in enumerate(pages, start=1):
        headers = response.headers
        shown = response.json()
        if len(expected) > limit:
            assert "X-Total" not in headers and "X-Total-Pages" not in headers
            assert "last" not in links(response)
            more = number * per_page < len(expected)
            assert headers["X-Next-Page"] == (str(number + 1) if more else "")
            assert headers["X-Prev-Page"] == (str(number - 1) if shown and number > 1 else "")
            assert ("next" in links(response)) == more
        else:
            assert headers["X-Total"] == str(len(expected))


def test_matches_far_back_in_a_long_log_are_found(api_client, project, monkeypatch):
    """Many matches, all older than everything else: the page still has them (the streams
    start at the newest match, not at the newest entry)."""
    monkeypatch.setattr(pagination, "MAX_COUNT_LIMIT", 3)
    hook = Hook.objects.create(project=project, name="recovered", url="http://127.0.0.1:9/r")
    write_log(hook, [503, None, 500, 503, 502, None])
    write_log(hook, [200] * 30)

    first = get_events(api_client, hook, status="server_failure", per_page=4)
    second = get_events(api_client, hook, status="server_failure", per_page=4, page=2)

    expected = expected_ids(hook, "server_failure")
    assert len(expected) == 6
    assert [e["id"] for e in first.json()] == expected[:4]
    assert [e["id"] for e in second.json()] == expected[4:]
    assert first.headers["X-Next-Page"] == "2" and second.headers["X-Next-Page"] == ""
    assert "X-Total" not in first.headers


def test_the_entries_are_the_full_ones(api_client, hook):
    """Rows fetched by id carry what the unfiltered list shows."""
    unfiltered = {e["id"]: e for e in get_events(api_client, hook, per_page=20).json()}
    filtered = get_events(api_client, hook, status="server_failure", per_page=20).json()
    assert filtered
    for entry in filtered:
        assert entry == unfiltered[entry["id"]]


@pytest.mark.parametrize("response_class", ["successful", "client_failure", "server_failure"])
@pytest.mark.parametrize("count_limit", [100, 3])
def test_admin_attempts_of_a_hook_by_response_class_as_a_plain_filter_would(
    admin_client, hook, monkeypatch, response_class, count_limit
):
    monkeypatch.setattr(common, "COUNT_LIMIT", count_limit)
    monkeypatch.setattr(DeliveryAttemptAdmin, "list_per_page", 2)
    # The admin's server failures are the 5xx only; "no response" is a filter of its own.
    test = {**CLASSES, "server_failure": lambda s: s is not None and 500 <= s < 600}
    rows = DeliveryAttempt.objects.filter(hook=hook).values_list("id", "response_status")
    expected = sorted((pk for pk, status in rows if test[response_class](status)), reverse=True)
    url = reverse("admin:hooks_deliveryattempt_changelist")

    # A capped list offers the pages up to the count limit (one row past it), as unfiltered.
    pages = -(-min(len(expected), count_limit + 1) // 2)
    listed = []
    for page in range(1, pages + 1):
        response = admin_client.get(
            url, {"hook__id__exact": hook.pk, "response": response_class, "p": page}
        )
        assert response.status_code == 200
        listed += [row.pk for row in response.context["cl"].result_list]
        shown = "more than 3" if len(expected) > count_limit else f"{len(expected)}"
        assert response.context["cl"].paginator.shown_count == shown
    assert listed == expected[: pages * 2]

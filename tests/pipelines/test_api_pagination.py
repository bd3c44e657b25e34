"""GitLab's offset pagination on the API lists: page, per_page, X-* headers and Link."""

import re

import pytest
from rest_framework.test import APIClient

from tests.factories import JobFactory, PipelineFactory

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


@pytest.fixture
def api_token(make_token):
    """The lists only read: a read_api token pages through them."""
    return make_token(scopes=["read_api"])


@pytest.fixture
def pipelines(project):
    made = [PipelineFactory(project=project, iid=n + 1, ref="main") for n in range(45)]
    return list(reversed(made))  # the API lists newest first


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(response["Link"])}


def test_first_page_headers(api_client, project, pipelines):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines")
    assert [p["id"] for p in response.json()] == [p.pk for p in pipelines[:20]]
    base = f"http://testserver/api/v4/projects/{project.pk}/pipelines"
    assert {name: response[name] for name in ("X-Total", "X-Total-Pages", "X-Page")} == {
        "X-Total": "45",
        "X-Total-Pages": "3",
        "X-Page": "1",
    }
    assert (response["X-Per-Page"], response["X-Next-Page"], response["X-Prev-Page"]) == (
        "20",
        "2",
        "",
    )
    assert response["Link"] == (
        f'<{base}?page=2&per_page=20>; rel="next", '
        f'<{base}?page=1&per_page=20>; rel="first", '
        f'<{base}?page=3&per_page=20>; rel="last"'
    )


def test_middle_page_links_prev_next_first_last_in_gitlab_order(api_client, project, pipelines):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines?page=2&per_page=10")
    assert [rel for _, rel in LINK.findall(response["Link"])] == ["prev", "next", "first", "last"]
    assert (response["X-Prev-Page"], response["X-Next-Page"]) == ("1", "3")
    assert response["X-Total-Pages"] == "5"
    assert [p["id"] for p in response.json()] == [p.pk for p in pipelines[10:20]]


def test_following_next_links_walks_every_item_once(api_client, project, pipelines):
    url = f"/api/v4/projects/{project.pk}/pipelines?per_page=7&ref=main"
    seen, pages = [], 0
    while url:
        response = api_client.get(url)
        seen += [p["id"] for p in response.json()]
        pages += 1
        # Filters stay in the links, keys sorted as Rails' to_query writes them.
        assert "per_page=7&ref=main" in response["Link"]
        url = links(response).get("next")
    assert seen == [p.pk for p in pipelines]
    assert pages == 7
    assert response["X-Next-Page"] == ""


def test_page_past_the_end_is_empty_without_next_or_prev(api_client, project, pipelines):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines?page=9")
    assert response.status_code == 200
    assert response.json() == []
    assert (response["X-Page"], response["X-Next-Page"], response["X-Prev-Page"]) == ("9", "", "")
    assert set(links(response)) == {"first", "last"}


@pytest.mark.parametrize(
    ("query", "page", "per_page", "count"),
    [("?per_page=500", "1", "100", 45), ("?per_page=0", "1", "20", 20), ("?page=0", "1", "20", 20)],
)
def test_page_and_per_page_are_clamped(
    api_client, project, pipelines, query, page, per_page, count
):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines{query}")
    assert (response["X-Page"], response["X-Per-Page"]) == (page, per_page)
    assert len(response.json()) == count


@pytest.mark.parametrize("query", ["?page=first", "?per_page=1.5"])
def test_non_numeric_page_is_400(api_client, project, pipelines, query):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines{query}")
    assert response.status_code == 400
    assert response.json()["error"] in ("page is invalid", "per_page is invalid")


def test_empty_list_has_one_page(api_client, project):
    response = api_client.get(f"/api/v4/projects/{project.pk}/pipelines")
    assert response.json() == []
    assert (response["X-Total"], response["X-Total-Pages"]) == ("0", "1")
    assert set(links(response)) == {"first", "last"}


def test_links_keep_array_filters_and_drop_query_tokens(api_token, project):
    pipeline = PipelineFactory(project=project)
    for n in range(3):
        JobFactory(pipeline=pipeline, status="pending", name=f"job-{n}")
    response = APIClient().get(
        f"/api/v4/projects/{project.pk}/pipelines/{pipeline.pk}/jobs"
        f"?scope[]=pending&scope[]=running&per_page=2&private_token={api_token}"
    )
    assert response.status_code == 200
    next_link = links(response)["next"]
    assert next_link.endswith("?page=2&per_page=2&scope%5B%5D=pending&scope%5B%5D=running")
    assert api_token not in response["Link"]


def test_other_lists_are_paginated_too(api_client, project):
    pipeline = PipelineFactory(project=project, sha="a" * 40)
    for n in range(3):
        JobFactory(pipeline=pipeline, name=f"job-{n}")
    for path in (
        "/api/v4/projects",
        f"/api/v4/projects/{project.pk}/pipelines/{pipeline.pk}/jobs",
        f"/api/v4/projects/{project.pk}/repository/commits/{'a' * 40}/statuses",
    ):
        response = api_client.get(f"{path}?per_page=1")
        assert response.status_code == 200, path
        assert len(response.json()) == 1, path
        assert response["X-Per-Page"] == "1", path
        assert "X-Total" in response and 'rel="last"' in response["Link"], path

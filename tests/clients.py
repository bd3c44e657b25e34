"""The API client the tests call the service with, as CI systems and scripts do."""

from rest_framework.test import APIClient


def api_client_with(raw_token: str | None = None, **headers: str) -> APIClient:
    """An API client sending ``raw_token`` as GitLab's clients do (``PRIVATE-TOKEN``), or
    other credentials as request headers (``HTTP_AUTHORIZATION="Bearer …"``)."""
    api = APIClient()
    if raw_token is not None:
        headers["HTTP_PRIVATE_TOKEN"] = raw_token
    api.credentials(**headers)
    return api

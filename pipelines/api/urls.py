"""Routes of the GitLab v4-compatible API (mounted at /api/v4/)."""

urlpatterns: list = []

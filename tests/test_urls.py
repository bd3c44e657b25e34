def test_unknown_api_route_gets_gitlab_json_404(client):
    response = client.get("/api/v4/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"message": "404 Not Found"}


def test_unknown_page_gets_html_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")

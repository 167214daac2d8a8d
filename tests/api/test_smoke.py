def test_a_created_ticket_can_be_listed_and_read(client, tenant):
    created = client.post(tenant.url("tickets/"), json={"priority": "high"}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["ticket_number"] == 1 and body["status"] == "new" and body["channel_detail"] == "widget_api"
    listed = client.get(tenant.url("tickets"), headers=tenant.headers).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert client.get(tenant.url(f"tickets/{body['ticket_number']}"), headers=tenant.headers).json()["id"] == body["id"]

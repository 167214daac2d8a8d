"""The MCP server driven by a real MCP client (the `mcp` package) over stdio: list, read, search,
reply and update tickets as a personal API key, limited by its scopes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from core.settings import ROOT
from tests.conftest import TEST_SECRET
from tests.factories import make_key, make_ticket


def server_params(db: str, key: str, tmp_path: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "api.mcp_server", "stdio"],
        cwd=str(ROOT),
        env={"DATABASE_URL": db, "TICKETWIRE_SECRET_KEY": TEST_SECRET, "TICKETWIRE_VAR_DIR": str(tmp_path / "var"),
             "TICKETWIRE_API_KEY": key, "PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", ""), **env},
    )


def payload(result: Any) -> Any:
    """A tool result's JSON (its structured content, else its text)."""
    structured = getattr(result, "structured_content", None)
    if structured is not None:
        return structured.get("result", structured) if set(structured) == {"result"} else structured
    return json.loads(result.content[0].text)


def error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(block.text for block in result.content)


def test_an_mcp_client_lists_reads_searches_replies_and_updates_over_stdio(db, tenant, tmp_path):
    first = make_ticket(tenant.project_id, message="My invoice shows the wrong VAT number", customer_name="Carla")
    make_ticket(tenant.project_id, message="The export button does nothing")

    async def session() -> dict[str, Any]:
        async with Client(server_params(db, tenant.api_key, tmp_path)) as client:
            tools = await client.list_tools()
            listed = payload(await client.call_tool("list_tickets", {"status": "new"}))
            read = payload(await client.call_tool("read_ticket", {"ticket": str(first["ticket_number"])}))
            found = payload(await client.call_tool("search_tickets", {"query": "VAT number"}))
            replied = payload(await client.call_tool(
                "reply_to_ticket", {"ticket": first["id"], "message": "We corrected your invoice."}))
            updated = payload(await client.call_tool(
                "update_ticket", {"ticket": first["id"], "status": "pending", "tags": ["Billing"]}))
            missing = await client.call_tool("read_ticket", {"ticket": "999"})
            return {"tools": sorted(t.name for t in tools.tools), "listed": listed, "read": read, "found": found,
                    "replied": replied, "updated": updated, "missing": error_text(missing)}

    out = anyio.run(session)
    assert out["tools"] == ["list_tickets", "read_ticket", "reply_to_ticket", "search_tickets", "update_ticket"]
    assert out["listed"]["count"] == 2 and {t["ticket_number"] for t in out["listed"]["tickets"]} == {1, 2}
    assert out["read"]["customer_name"] == "Carla"
    assert [m["content"] for m in out["read"]["messages"]] == ["My invoice shows the wrong VAT number"]
    assert [t["ticket_number"] for t in out["found"]["tickets"]] == [1]
    reply = out["replied"]["message"]
    assert reply["content"] == "We corrected your invoice." and reply["author_type"] == "support"
    assert reply["delivery_status"] == "pending" and reply["is_private"] is False
    assert out["updated"]["status"] == "pending" and out["updated"]["tags"] == ["billing"]
    assert "Not found" in out["missing"]


def test_a_read_only_key_can_read_but_cannot_reply_or_update(db, tenant, tmp_path, client):
    ticket = make_ticket(tenant.project_id, message="Hello?")
    read_only = make_key(tenant, ["ticket:read"])

    async def session() -> tuple[Any, str, str]:
        async with Client(server_params(db, read_only, tmp_path)) as mcp_client:
            listed = payload(await mcp_client.call_tool("list_tickets", {}))
            reply = await mcp_client.call_tool("reply_to_ticket", {"ticket": ticket["id"], "message": "Hi!"})
            update = await mcp_client.call_tool("update_ticket", {"ticket": ticket["id"], "status": "resolved"})
            return listed, error_text(reply), error_text(update)

    listed, reply_error, update_error = anyio.run(session)
    assert listed["count"] == 1
    assert "ticket:write" in reply_error and "ticket:write" in update_error
    messages = client.get(tenant.url(f"tickets/{ticket['id']}/messages"), headers=tenant.headers).json()
    assert [m["content"] for m in messages["results"]] == ["Hello?"]


def test_an_invalid_key_or_a_conversation_only_key_gets_no_tickets(db, tenant, tmp_path):
    make_ticket(tenant.project_id, message="secret")
    conversation_only = make_key(tenant, ["conversation:write"])

    async def session(key: str) -> str:
        async with Client(server_params(db, key, tmp_path)) as mcp_client:
            return error_text(await mcp_client.call_tool("list_tickets", {}))

    assert "Invalid personal API key" in anyio.run(session, "phx_not-a-key")
    assert "ticket:read" in anyio.run(session, conversation_only)


def test_over_http_each_request_is_authenticated_by_its_bearer_key(db, tenant, other_tenant):
    from starlette.testclient import TestClient

    from api.mcp_server import build_server

    make_ticket(tenant.project_id, message="over http")
    app = build_server().streamable_http_app(stateless_http=True, json_response=True)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_tickets", "arguments": {"project_id": tenant.project_id}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-06-18"}
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        mine = http.post("/mcp", json=call, headers={**headers, "Authorization": f"Bearer {tenant.api_key}"})
        theirs = http.post("/mcp", json=call,
                           headers={**headers, "Authorization": f"Bearer {other_tenant.api_key}"})
    assert mine.status_code == 200, mine.text
    assert mine.json()["result"]["structuredContent"]["count"] == 1
    assert theirs.json()["result"]["isError"] is True and "not found" in theirs.text.lower()

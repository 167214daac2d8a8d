"""Create the demo project and print its API key with a curl example (used by `make run`)."""

from __future__ import annotations

from core.db import session_scope
from core.settings import get_settings
from services import accounts


def main() -> None:
    with session_scope() as session:
        data = accounts.bootstrap(session=session, project_name="Demo", email="admin@example.com")
    base = get_settings().public_url
    print(
        f"""
ticketwire demo project is ready
  project id:   {data['project_id']}
  API key:      {data['api_key']}
  widget token: {data['widget_token']}
  API docs:     {base}/docs
  widget demo:  {base}/widget/demo

Try it:
  curl -H "Authorization: Bearer {data['api_key']}" {base}/api/projects/{data['project_id']}/conversations/tickets/
"""
    )


if __name__ == "__main__":
    main()

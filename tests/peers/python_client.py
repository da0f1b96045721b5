"""Drives the Python client package (clients/python, installed with pip) as
an application would, against the server at argv[1] with the key argv[2],
and prints what it saw as one JSON object.

argv[3] is the scenario: "tour" sends, follows, reads, pages and makes the
API refuse twice; "rate" sends until the key's rate limit refuses."""

import json
import sys

from posthorn import Client, PosthornError
from posthorn.v1 import email_pb2

target, key, scenario = sys.argv[1:4]
seen = {}


def refused(call):
    try:
        call()
    except PosthornError as error:
        return {
            "code": error.code.name,
            "reason": error.reason,
            "fields": [name for name, _ in error.field_violations],
            "retry_after": error.retry_after,
            "text": str(error),
        }
    return None


with Client(target, key=key) as posthorn:
    if scenario == "tour":
        first = posthorn.send_email(
            from_email="app@acme.example",
            to=["ada@example.com"],
            template="password-reset",
            variables={"reset_url": "https://acme.example/r/1", "user": {"first_name": "Ada"}},
        )
        others = [
            posthorn.send_email(from_email="app@acme.example", to=[f"p{i}@example.com"], subject="Hi", text="x")
            for i in range(2)
        ]
        events = []
        for event in posthorn.watch(message_id=first.id, timeout=30):
            events.append(email_pb2.EventType.Name(event.type))
            if event.status == email_pb2.MESSAGE_STATUS_DELIVERED:
                break
        message = posthorn.get_message(first.id)
        seen = {
            "sent": [first.id] + [m.id for m in others],
            "watched": events,
            "status": email_pb2.MessageStatus.Name(message.status),
            "template": message.template,
            "timeline": [email_pb2.EventType.Name(e.type) for e in message.events],
            "listed": [m.id for m in posthorn.list_messages(page_size=2)],
            "auth_templates": sorted(t.slug for t in posthorn.list_templates(page_size=3, category="auth")),
            "unverified": refused(
                lambda: posthorn.send_email(from_email="x@globex.example", to=["a@example.com"], subject="Hi", text="x")
            ),
            "invalid": refused(
                lambda: posthorn.send_email(from_email="app@acme.example", to=[], subject="Hi\r\nBcc: x", text="x")
            ),
        }
    elif scenario == "rate":
        outcomes = []
        for _ in range(3):
            error = refused(
                lambda: posthorn.send_email(from_email="app@acme.example", to=["a@example.com"], subject="Hi", text="x")
            )
            outcomes.append(error)
        seen = {"outcomes": outcomes}

print(json.dumps(seen))

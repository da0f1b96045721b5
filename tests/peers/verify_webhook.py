"""Verifies a webhook request with the reference Standard Webhooks library.

Reads one JSON object from standard input: {"secret": "whsec_...",
"body": "<the raw body>", "headers": {"webhook-id": ..., ...}}. Exits 0
and prints "verified" when the library accepts it; prints the library's
error and exits 1 otherwise."""

import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
try:
    Webhook(request["secret"]).verify(request["body"], request["headers"])
except Exception as error:  # the library raises its own verification error
    print(f"refused: {error}")
    sys.exit(1)
print("verified")

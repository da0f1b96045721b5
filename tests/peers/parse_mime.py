"""Parses the message in the file given as the first argument with
Python's own email package (the modern policy) and prints what a mail
client would see, as JSON: the headers, every part's content type and
decoded content, and every defect the parser found."""

import email
import email.policy
import json
import sys

raw = open(sys.argv[1], "rb").read()
message = email.message_from_bytes(raw, policy=email.policy.default)
defects = [type(d).__name__ for d in message.defects]
parts = []
for part in message.walk():
    defects += [type(d).__name__ for d in part.defects]
    if part.is_multipart():
        parts.append({"content_type": part.get_content_type()})
        continue
    parts.append(
        {
            "content_type": part.get_content_type(),
            "filename": part.get_filename(),
            "content_id": part.get("Content-ID"),
            "content": part.get_content()
            if part.get_content_maintype() == "text"
            else part.get_content().hex(),
        }
    )
print(
    json.dumps(
        {
            "subject": str(message["Subject"]),
            "from": str(message["From"]),
            "to": str(message["To"]),
            "cc": str(message["Cc"]),
            "bcc": message["Bcc"],
            "reply_to": message["Reply-To"] and str(message["Reply-To"]),
            "message_id": str(message["Message-ID"]),
            "date": str(message["Date"]),
            "x_order": message["X-Order"],
            "parts": parts,
            "defects": defects,
        }
    )
)

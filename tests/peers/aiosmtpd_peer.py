"""An independent SMTP server for the delivery tests: aiosmtpd on a free
loopback port, storing each message it accepts as N.eml (the bytes as
received, dot-stuffing undone) with N.json (envelope sender and
recipients) in the directory given as the first argument. Prints
"listening PORT" once it accepts connections; runs until killed.

With `starttls CERT KEY` after the directory it offers STARTTLS with that
certificate and refuses mail before it; with `smtps CERT KEY` it speaks
TLS from the first byte."""

import asyncio
import json
import pathlib
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = self.directory / str(self.count)
        # Written under a temporary name first: the test reads files whose
        # JSON exists.
        base.with_suffix(".eml").write_bytes(envelope.original_content)
        envelope_json = {"from": envelope.mail_from, "to": envelope.rcpt_tos}
        tmp = base.with_suffix(".tmp")
        tmp.write_text(json.dumps(envelope_json))
        tmp.rename(base.with_suffix(".json"))
        return "250 2.0.0 stored by aiosmtpd"


async def main():
    store = Store(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "plain"
    context = None
    if mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    loop = asyncio.get_running_loop()
    if mode == "starttls":
        factory = lambda: SMTP(
            store, hostname="aiosmtpd.test", tls_context=context, require_starttls=True
        )
        server = await loop.create_server(factory, "127.0.0.1", 0)
    elif mode == "smtps":
        factory = lambda: SMTP(store, hostname="aiosmtpd.test")
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=context)
    else:
        factory = lambda: SMTP(store, hostname="aiosmtpd.test")
        server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    await server.serve_forever()


asyncio.run(main())

"""An MCP client for the MCP tests: the official Python SDK (`mcp`) over
streamable HTTP. Reads a plan as JSON on stdin:

    {"url": ..., "headers": {...}, "mode": "legacy" | "auto",
     "steps": [{"list_tools": true},
               {"call": NAME, "arguments": {...}, "progress": true}, ...]}

connects (the initialize handshake in legacy mode; discovery first in
auto mode), runs the steps in order, and prints one JSON object on stdout:

    {"server": {"name": ..., "instructions": ...},
     "results": [...one per step...]}

A tools listing gives {"tools": [{name, description, inputSchema,
outputSchema, annotations}]}; a call gives {"is_error", "text": [...],
"structured", "progress": [{progress, message}]} or, when the SDK raised
(a protocol error), {"raised": "<type>: <message>"}. The SDK itself
validates each successful call's structured content against the tool's
output schema."""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def call(client, step):
    seen = []

    async def on_progress(progress, total, message):
        seen.append({"progress": progress, "message": message})

    try:
        result = await client.call_tool(
            step["call"],
            step.get("arguments", {}),
            progress_callback=on_progress if step.get("progress") else None,
        )
    except Exception as error:  # the test asserts on what was raised
        return {"raised": f"{type(error).__name__}: {error}"}
    return {
        "is_error": bool(result.is_error),
        "text": [block.text for block in result.content if block.type == "text"],
        "structured": result.structured_content,
        "progress": seen,
    }


async def main():
    plan = json.load(sys.stdin)
    http = create_mcp_http_client(headers=plan.get("headers", {}))
    transport = streamable_http_client(plan["url"], http_client=http)
    results = []
    async with http:
        async with Client(transport, mode=plan.get("mode", "legacy"), cache=None) as client:
            info = {
                "name": client.server_info.name if client.server_info else None,
                "instructions": client.instructions,
                "protocol": client.protocol_version,
            }
            for step in plan["steps"]:
                if step.get("list_tools"):
                    listed = await client.list_tools()
                    results.append(
                        {
                            "tools": [
                                tool.model_dump(mode="json", by_alias=True, exclude_none=True)
                                for tool in listed.tools
                            ]
                        }
                    )
                else:
                    results.append(await call(client, step))
    print(json.dumps({"server": info, "results": results}))


asyncio.run(main())

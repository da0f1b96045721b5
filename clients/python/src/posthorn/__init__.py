"""Posthorn's Python client: the generated stubs under `posthorn.v1`, and
`Client`, which sets the key, raises `PosthornError` with the API's error
details, pages through lists and iterates WatchMessages."""

from posthorn.client import Client, PosthornError

__all__ = ["Client", "PosthornError"]

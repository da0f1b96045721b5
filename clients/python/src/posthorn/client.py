"""A small client over Posthorn's generated gRPC stubs: the key on every
call, the API's errors as one exception with their details, paging, and
WatchMessages as an iterator. Everything it returns is a generated message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Tuple

import grpc
from google.rpc import error_details_pb2, status_pb2

from posthorn.v1 import (
    contacts_pb2_grpc,
    email_pb2,
    messages_pb2,
    messages_pb2_grpc,
    send_pb2,
    send_pb2_grpc,
    suppressions_pb2_grpc,
    templates_pb2,
    templates_pb2_grpc,
    webhooks_pb2_grpc,
)


@dataclass
class PosthornError(Exception):
    """A call Posthorn refused: the gRPC code and message, and the
    `google.rpc` details it carried."""

    code: grpc.StatusCode
    message: str
    #: The machine-readable cause (google.rpc.ErrorInfo), e.g. "SENDER_NOT_VERIFIED".
    reason: str = ""
    #: Each invalid field and what is wrong with it (google.rpc.BadRequest).
    field_violations: list[Tuple[str, str]] = field(default_factory=list)
    #: Seconds to wait before retrying (google.rpc.RetryInfo), for rate limits and quotas.
    retry_after: Optional[float] = None

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" (reason {self.reason})"
        for name, description in self.field_violations:
            text += f"\n- {name}: {description}"
        return text

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "PosthornError":
        """Reads the status and its details off a failed call."""
        result = cls(code=error.code(), message=error.details() or "")
        for key, value in error.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                bad = error_details_pb2.BadRequest()
                retry = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    result.reason = info.reason
                elif detail.Unpack(bad):
                    result.field_violations = [(v.field, v.description) for v in bad.field_violations]
                elif detail.Unpack(retry):
                    result.retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        return result


class _Key(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the API key to every call's metadata."""

    def __init__(self, key: str):
        self._pair = ("authorization", f"Bearer {key}")

    def _with_key(self, details):
        metadata = list(details.metadata or ())
        metadata.append(self._pair)
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_key(details), requests)


class Client:
    """Posthorn over gRPC. `target` is host:port; `key` an API key."""

    def __init__(
        self,
        target: str = "localhost:7070",
        key: Optional[str] = None,
        *,
        secure: bool = False,
        credentials: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = 30.0,
    ):
        if secure or credentials is not None:
            channel = grpc.secure_channel(target, credentials or grpc.ssl_channel_credentials())
        else:
            channel = grpc.insecure_channel(target)
        self._raw = channel
        self.channel = grpc.intercept_channel(channel, _Key(key)) if key else channel
        self.timeout = timeout
        self.send = send_pb2_grpc.SendServiceStub(self.channel)
        self.messages = messages_pb2_grpc.MessagesServiceStub(self.channel)
        self.templates = templates_pb2_grpc.TemplatesServiceStub(self.channel)
        self.contacts = contacts_pb2_grpc.ContactsServiceStub(self.channel)
        self.suppressions = suppressions_pb2_grpc.SuppressionsServiceStub(self.channel)
        self.webhooks = webhooks_pb2_grpc.WebhooksServiceStub(self.channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        self._raw.close()

    def _call(self, method, request, **kwargs):
        try:
            return method(request, timeout=self.timeout, **kwargs)
        except grpc.RpcError as error:
            raise PosthornError.from_rpc_error(error) from None

    def send_email(self, idempotency_key: str = "", **fields) -> send_pb2.SendEmailResponse:
        """Sends one email; `fields` are SendEmailRequest's (e.g. from_email, to,
        subject, html, text, template, variables)."""
        request = send_pb2.SendEmailRequest(idempotency_key=idempotency_key, **_struct(fields))
        return self._call(self.send.SendEmail, request)

    def get_message(self, id: str) -> email_pb2.Message:
        """The message with its recipients and event timeline."""
        return self._call(self.messages.GetMessage, messages_pb2.GetMessageRequest(id=id)).message

    def cancel_message(self, id: str) -> email_pb2.Message:
        return self._call(self.messages.CancelMessage, messages_pb2.CancelMessageRequest(id=id)).message

    def list_messages(self, page_size: int = 50, **filters) -> Iterator[email_pb2.Message]:
        """Every message matching `filters` (ListMessagesRequest's), page after page."""

        def page(token):
            request = messages_pb2.ListMessagesRequest(page_size=page_size, page_token=token, **filters)
            response = self._call(self.messages.ListMessages, request)
            return response.messages, response.next_page_token

        return _pages(page)

    def list_templates(self, page_size: int = 100, **filters) -> Iterator[templates_pb2.Template]:
        """Every template matching `filters` (e.g. category="auth"), page after page."""

        def page(token):
            request = templates_pb2.ListTemplatesRequest(page_size=page_size, page_token=token, **filters)
            response = self._call(self.templates.ListTemplates, request)
            return response.templates, response.next_page_token

        return _pages(page)

    def render_template(self, slug: str, variables: Optional[dict] = None) -> templates_pb2.RenderTemplateResponse:
        request = templates_pb2.RenderTemplateRequest(slug=slug, **_struct({"variables": variables or {}}))
        return self._call(self.templates.RenderTemplate, request)

    def watch(
        self,
        message_id: str = "",
        after_cursor: int = 0,
        types: Sequence[int] = (),
        timeout: Optional[float] = None,
    ) -> Iterator[email_pb2.MessageEvent]:
        """The account's events (or one message's, replayed from its start),
        as they happen; pass an event's cursor as after_cursor to resume.
        Runs until the caller stops iterating or `timeout` seconds pass."""
        request = messages_pb2.WatchMessagesRequest(
            message_id=message_id, after_cursor=after_cursor, types=list(types)
        )
        stream = self.messages.WatchMessages(request, timeout=timeout)
        try:
            for response in stream:
                yield response.event
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            raise PosthornError.from_rpc_error(error) from None
        finally:
            stream.cancel()


def _pages(page) -> Iterator:
    token = ""
    while True:
        items, token = page(token)
        yield from items
        if not token:
            return


def _struct(fields: dict) -> dict:
    """`variables` given as a dict becomes a google.protobuf.Struct."""
    variables = fields.get("variables")
    if isinstance(variables, dict):
        from google.protobuf import struct_pb2

        struct = struct_pb2.Struct()
        struct.update(variables)
        fields = {**fields, "variables": struct}
    return fields


__all__ = ["Client", "PosthornError"]

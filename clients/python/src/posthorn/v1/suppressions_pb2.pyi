import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from posthorn.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SuppressionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPRESSION_REASON_UNSPECIFIED: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_UNSUBSCRIBED: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_BOUNCED: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_COMPLAINED: _ClassVar[SuppressionReason]
    SUPPRESSION_REASON_OTHER: _ClassVar[SuppressionReason]

class SuppressionOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPPRESSION_ORIGIN_UNSPECIFIED: _ClassVar[SuppressionOrigin]
    SUPPRESSION_ORIGIN_API: _ClassVar[SuppressionOrigin]
    SUPPRESSION_ORIGIN_BOUNCE: _ClassVar[SuppressionOrigin]
    SUPPRESSION_ORIGIN_COMPLAINT: _ClassVar[SuppressionOrigin]
    SUPPRESSION_ORIGIN_UNSUBSCRIBE_LINK: _ClassVar[SuppressionOrigin]
SUPPRESSION_REASON_UNSPECIFIED: SuppressionReason
SUPPRESSION_REASON_UNSUBSCRIBED: SuppressionReason
SUPPRESSION_REASON_BOUNCED: SuppressionReason
SUPPRESSION_REASON_COMPLAINED: SuppressionReason
SUPPRESSION_REASON_OTHER: SuppressionReason
SUPPRESSION_ORIGIN_UNSPECIFIED: SuppressionOrigin
SUPPRESSION_ORIGIN_API: SuppressionOrigin
SUPPRESSION_ORIGIN_BOUNCE: SuppressionOrigin
SUPPRESSION_ORIGIN_COMPLAINT: SuppressionOrigin
SUPPRESSION_ORIGIN_UNSUBSCRIBE_LINK: SuppressionOrigin

class Suppression(_message.Message):
    __slots__ = ("email", "reason", "origin", "created_at", "expires_at", "message_id")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    email: str
    reason: SuppressionReason
    origin: SuppressionOrigin
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    message_id: str
    def __init__(self, email: _Optional[str] = ..., reason: _Optional[_Union[SuppressionReason, str]] = ..., origin: _Optional[_Union[SuppressionOrigin, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message_id: _Optional[str] = ...) -> None: ...

class CreateSuppressionRequest(_message.Message):
    __slots__ = ("email", "reason", "expires_at")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    email: str
    reason: SuppressionReason
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, email: _Optional[str] = ..., reason: _Optional[_Union[SuppressionReason, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSuppressionResponse(_message.Message):
    __slots__ = ("suppression",)
    SUPPRESSION_FIELD_NUMBER: _ClassVar[int]
    suppression: Suppression
    def __init__(self, suppression: _Optional[_Union[Suppression, _Mapping]] = ...) -> None: ...

class GetSuppressionRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class GetSuppressionResponse(_message.Message):
    __slots__ = ("suppression",)
    SUPPRESSION_FIELD_NUMBER: _ClassVar[int]
    suppression: Suppression
    def __init__(self, suppression: _Optional[_Union[Suppression, _Mapping]] = ...) -> None: ...

class ListSuppressionsRequest(_message.Message):
    __slots__ = ("reason", "page_size", "page_token")
    REASON_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    reason: SuppressionReason
    page_size: int
    page_token: str
    def __init__(self, reason: _Optional[_Union[SuppressionReason, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSuppressionsResponse(_message.Message):
    __slots__ = ("suppressions", "next_page_token")
    SUPPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    suppressions: _containers.RepeatedCompositeFieldContainer[Suppression]
    next_page_token: str
    def __init__(self, suppressions: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSuppressionRequest(_message.Message):
    __slots__ = ("email",)
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    email: str
    def __init__(self, email: _Optional[str] = ...) -> None: ...

class DeleteSuppressionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

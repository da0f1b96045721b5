import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_STATUS_UNSPECIFIED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_QUEUED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SCHEDULED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SENT: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DELIVERED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_DEFERRED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_BOUNCED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_FAILED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_CANCELLED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_SUPPRESSED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_OPENED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_CLICKED: _ClassVar[MessageStatus]
    MESSAGE_STATUS_COMPLAINED: _ClassVar[MessageStatus]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_QUEUED: _ClassVar[EventType]
    EVENT_TYPE_SCHEDULED: _ClassVar[EventType]
    EVENT_TYPE_SENT: _ClassVar[EventType]
    EVENT_TYPE_DELIVERED: _ClassVar[EventType]
    EVENT_TYPE_DEFERRED: _ClassVar[EventType]
    EVENT_TYPE_BOUNCED: _ClassVar[EventType]
    EVENT_TYPE_COMPLAINED: _ClassVar[EventType]
    EVENT_TYPE_OPENED: _ClassVar[EventType]
    EVENT_TYPE_CLICKED: _ClassVar[EventType]
    EVENT_TYPE_FAILED: _ClassVar[EventType]
    EVENT_TYPE_SUPPRESSED: _ClassVar[EventType]
    EVENT_TYPE_UNSUBSCRIBED: _ClassVar[EventType]
    EVENT_TYPE_CANCELLED: _ClassVar[EventType]
    EVENT_TYPE_RESCHEDULED: _ClassVar[EventType]

class RecipientKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECIPIENT_KIND_UNSPECIFIED: _ClassVar[RecipientKind]
    RECIPIENT_KIND_TO: _ClassVar[RecipientKind]
    RECIPIENT_KIND_CC: _ClassVar[RecipientKind]
    RECIPIENT_KIND_BCC: _ClassVar[RecipientKind]
MESSAGE_STATUS_UNSPECIFIED: MessageStatus
MESSAGE_STATUS_QUEUED: MessageStatus
MESSAGE_STATUS_SCHEDULED: MessageStatus
MESSAGE_STATUS_SENT: MessageStatus
MESSAGE_STATUS_DELIVERED: MessageStatus
MESSAGE_STATUS_DEFERRED: MessageStatus
MESSAGE_STATUS_BOUNCED: MessageStatus
MESSAGE_STATUS_FAILED: MessageStatus
MESSAGE_STATUS_CANCELLED: MessageStatus
MESSAGE_STATUS_SUPPRESSED: MessageStatus
MESSAGE_STATUS_OPENED: MessageStatus
MESSAGE_STATUS_CLICKED: MessageStatus
MESSAGE_STATUS_COMPLAINED: MessageStatus
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_QUEUED: EventType
EVENT_TYPE_SCHEDULED: EventType
EVENT_TYPE_SENT: EventType
EVENT_TYPE_DELIVERED: EventType
EVENT_TYPE_DEFERRED: EventType
EVENT_TYPE_BOUNCED: EventType
EVENT_TYPE_COMPLAINED: EventType
EVENT_TYPE_OPENED: EventType
EVENT_TYPE_CLICKED: EventType
EVENT_TYPE_FAILED: EventType
EVENT_TYPE_SUPPRESSED: EventType
EVENT_TYPE_UNSUBSCRIBED: EventType
EVENT_TYPE_CANCELLED: EventType
EVENT_TYPE_RESCHEDULED: EventType
RECIPIENT_KIND_UNSPECIFIED: RecipientKind
RECIPIENT_KIND_TO: RecipientKind
RECIPIENT_KIND_CC: RecipientKind
RECIPIENT_KIND_BCC: RecipientKind

class Attachment(_message.Message):
    __slots__ = ("filename", "content_type", "content", "content_id")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    content: bytes
    content_id: str
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., content: _Optional[bytes] = ..., content_id: _Optional[str] = ...) -> None: ...

class AttachmentInfo(_message.Message):
    __slots__ = ("filename", "content_type", "size_bytes", "content_id")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ID_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    size_bytes: int
    content_id: str
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., content_id: _Optional[str] = ...) -> None: ...

class Recipient(_message.Message):
    __slots__ = ("email", "name", "kind", "status", "attempts", "last_response", "next_attempt_at", "updated_at", "first_opened_at", "open_count", "first_clicked_at", "click_count")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    OPEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_CLICKED_AT_FIELD_NUMBER: _ClassVar[int]
    CLICK_COUNT_FIELD_NUMBER: _ClassVar[int]
    email: str
    name: str
    kind: RecipientKind
    status: MessageStatus
    attempts: int
    last_response: str
    next_attempt_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    first_opened_at: _timestamp_pb2.Timestamp
    open_count: int
    first_clicked_at: _timestamp_pb2.Timestamp
    click_count: int
    def __init__(self, email: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[RecipientKind, str]] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., attempts: _Optional[int] = ..., last_response: _Optional[str] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., first_opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open_count: _Optional[int] = ..., first_clicked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., click_count: _Optional[int] = ...) -> None: ...

class EventDetails(_message.Message):
    __slots__ = ("smtp_code", "enhanced_code", "smtp_reply", "remote_mta", "user_agent", "ip", "url", "reason")
    SMTP_CODE_FIELD_NUMBER: _ClassVar[int]
    ENHANCED_CODE_FIELD_NUMBER: _ClassVar[int]
    SMTP_REPLY_FIELD_NUMBER: _ClassVar[int]
    REMOTE_MTA_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    smtp_code: int
    enhanced_code: str
    smtp_reply: str
    remote_mta: str
    user_agent: str
    ip: str
    url: str
    reason: str
    def __init__(self, smtp_code: _Optional[int] = ..., enhanced_code: _Optional[str] = ..., smtp_reply: _Optional[str] = ..., remote_mta: _Optional[str] = ..., user_agent: _Optional[str] = ..., ip: _Optional[str] = ..., url: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("cursor", "message_id", "recipient", "type", "status", "occurred_at", "details")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    message_id: str
    recipient: str
    type: EventType
    status: MessageStatus
    occurred_at: _timestamp_pb2.Timestamp
    details: EventDetails
    def __init__(self, cursor: _Optional[int] = ..., message_id: _Optional[str] = ..., recipient: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Union[EventDetails, _Mapping]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "status", "from_email", "from_name", "to", "cc", "bcc", "reply_to", "subject", "template", "template_version", "tags", "metadata", "message_id_header", "track_opens", "track_clicks", "attachments", "recipients", "events", "created_at", "scheduled_at", "resent_from", "test_mode", "variables")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FROM_EMAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_NAME_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    CC_FIELD_NUMBER: _ClassVar[int]
    BCC_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_HEADER_FIELD_NUMBER: _ClassVar[int]
    TRACK_OPENS_FIELD_NUMBER: _ClassVar[int]
    TRACK_CLICKS_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    RESENT_FROM_FIELD_NUMBER: _ClassVar[int]
    TEST_MODE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: MessageStatus
    from_email: str
    from_name: str
    to: _containers.RepeatedScalarFieldContainer[str]
    cc: _containers.RepeatedScalarFieldContainer[str]
    bcc: _containers.RepeatedScalarFieldContainer[str]
    reply_to: _containers.RepeatedScalarFieldContainer[str]
    subject: str
    template: str
    template_version: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    message_id_header: str
    track_opens: bool
    track_clicks: bool
    attachments: _containers.RepeatedCompositeFieldContainer[AttachmentInfo]
    recipients: _containers.RepeatedCompositeFieldContainer[Recipient]
    events: _containers.RepeatedCompositeFieldContainer[MessageEvent]
    created_at: _timestamp_pb2.Timestamp
    scheduled_at: _timestamp_pb2.Timestamp
    resent_from: str
    test_mode: bool
    variables: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[MessageStatus, str]] = ..., from_email: _Optional[str] = ..., from_name: _Optional[str] = ..., to: _Optional[_Iterable[str]] = ..., cc: _Optional[_Iterable[str]] = ..., bcc: _Optional[_Iterable[str]] = ..., reply_to: _Optional[_Iterable[str]] = ..., subject: _Optional[str] = ..., template: _Optional[str] = ..., template_version: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., message_id_header: _Optional[str] = ..., track_opens: _Optional[bool] = ..., track_clicks: _Optional[bool] = ..., attachments: _Optional[_Iterable[_Union[AttachmentInfo, _Mapping]]] = ..., recipients: _Optional[_Iterable[_Union[Recipient, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[MessageEvent, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resent_from: _Optional[str] = ..., test_mode: _Optional[bool] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

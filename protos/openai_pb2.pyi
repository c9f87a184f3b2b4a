from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("tenant", "value")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    value: int
    def __init__(self, tenant: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class GetChatCompletionsRequest(_message.Message):
    __slots__ = ("tenant", "conversation")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    conversation: _containers.RepeatedCompositeFieldContainer[GrpcMessage]
    def __init__(self, tenant: _Optional[str] = ..., conversation: _Optional[_Iterable[_Union[GrpcMessage, _Mapping]]] = ...) -> None: ...

class GetChatCompletionsResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: str
    def __init__(self, result: _Optional[str] = ...) -> None: ...

class GetChatCompletionsStreamingRequest(_message.Message):
    __slots__ = ("tenant", "conversation")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    conversation: _containers.RepeatedCompositeFieldContainer[GrpcMessage]
    def __init__(self, tenant: _Optional[str] = ..., conversation: _Optional[_Iterable[_Union[GrpcMessage, _Mapping]]] = ...) -> None: ...

class GetChatCompletionsStreamingResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class GrpcMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

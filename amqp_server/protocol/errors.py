"""Protocol exceptions, split as RabbitMQ splits them.

A ChannelError closes one channel (channel.close); a ConnectionError closes the whole
connection (connection.close). Each carries the AMQP reply code and RabbitMQ's reply text,
e.g. ``ChannelError(NOT_FOUND, "no queue 'x' in vhost '/'")`` is sent as
``404 NOT_FOUND - no queue 'x' in vhost '/'``.
"""

from __future__ import annotations

CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


class AMQPError(Exception):
    """A protocol exception with RabbitMQ's reply code and explanation."""

    def __init__(self, code: int, explanation: str, method: tuple[int, int] = (0, 0)) -> None:
        super().__init__(explanation)
        self.code = code
        self.explanation = explanation
        # (class_id, method_id) of the method that failed, echoed in the close method.
        self.method = method

    @property
    def reply_text(self) -> str:
        """The text RabbitMQ sends: ``NOT_FOUND - no queue 'x' in vhost '/'``."""
        name = REPLY_NAMES.get(self.code, "ERROR")
        text = f"{name} - {self.explanation}" if self.explanation else name
        # Octets of a client's that are not UTF-8 are surrogates here (field_types.text) and go
        # back out as they came, as in RabbitMQ's texts.
        raw = text.encode("utf-8", "surrogateescape")
        if len(raw) <= 255:
            return text
        # reply-text is a shortstr: RabbitMQ cuts it to 252 bytes and appends "...".
        return raw[:252].decode("utf-8", "surrogateescape") + "..."


class ChannelError(AMQPError):
    """Closes the channel it happened on."""


class ConnectionError(AMQPError):  # noqa: A001 - AMQP's own name for it
    """Closes the connection."""


class FatalFrameError(ConnectionError):
    """The byte stream is out of sync (frame too large, bad frame-end): RabbitMQ's
    ``fatal_frame_error``, after which nothing more is read from the socket."""


class UnknownMethodError(ConnectionError):
    """A class/method id RabbitMQ does not know: its reader drops the socket without a close."""

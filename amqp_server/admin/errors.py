"""The error every administrative operation refuses with."""


class AdminError(Exception):
    """A refused administrative operation; the message is what rabbitmqctl would print."""

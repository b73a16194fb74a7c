"""The states of a connection, named as RabbitMQ's rabbit_reader names them.

``handshake`` (waiting for the protocol header), ``starting`` (start sent), ``tuning`` (tune
sent), ``opening`` (tune-ok received), ``running``, ``blocked`` (a resource alarm stopped
reading after a publish), ``closing`` (the connection ends, by connection.close or an error,
once its channels have finished the commands they already took; nothing more is taken
meanwhile), ``closed`` (connection.close was sent or answered; the socket stays open until the
client closes it, sends close-ok, or the closing timeout passes) and ``dead`` (we stopped
reading; the socket closes after RabbitMQ's silent-close delay: a failed handshake, a fatal
frame error).
"""

HANDSHAKE, STARTING, TUNING, OPENING = "handshake", "starting", "tuning", "opening"
RUNNING, BLOCKED, CLOSING, CLOSED, DEAD = "running", "blocked", "closing", "closed", "dead"
# Before connection.open-ok: no channel can be used yet.
HANDSHAKING = (HANDSHAKE, STARTING, TUNING, OPENING)

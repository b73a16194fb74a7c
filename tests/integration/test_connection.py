"""The connection layer through the wire, against RabbitMQ 3.10.8's recorded behaviour.

Every expected code and text below was recorded from a real RabbitMQ 3.10.8 (Erlang 25) with
the same client bytes. Where RabbitMQ hangs up without a word (a failed handshake before
tune-ok) it does so after its 3 s silent-close delay; the ``quick`` broker shortens that delay
(``silent_close_delay``) and the handshake timeout so these tests stay fast.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pika
import pika.exceptions
import pika.spec
import pytest
from conftest import BrokerHandle, start_broker
from helpers import connect_named, message_count, server_connection, wait_until
from pamqp import commands
from rawamqp import RawClient, amqplain, plain

from amqp_server.transport.handshake import is_loopback

HEADER_0_9_1 = b"AMQP\x00\x00\x09\x01"
LOGIN_REFUSED = (
    "ACCESS_REFUSED - Login was refused using authentication mechanism {}. For details see the broker logfile."
)


@pytest.fixture(scope="module")
def quick() -> Iterator[BrokerHandle]:
    """A broker whose silent close and handshake timeout take a fraction of a second."""
    handle = start_broker(silent_close_delay=0.2, handshake_timeout=1.0)
    yield handle
    handle.stop()


@pytest.fixture
def raw(broker: BrokerHandle) -> Iterator[RawClient]:
    client = RawClient(broker.port)
    yield client
    client.close()


# -- connection.start and connection.tune --------------------------------------------------------


def _table_layout(data: bytes, offset: int) -> tuple[list[tuple[str, str, object]], int]:
    """(key, type tag, value) of a field table in wire order, and the offset after it."""
    (size,) = struct.unpack_from(">I", data, offset)
    offset += 4
    end = offset + size
    items = []
    while offset < end:
        key = data[offset + 1 : offset + 1 + data[offset]].decode()
        offset += 1 + data[offset]
        tag = chr(data[offset])
        offset += 1
        if tag == "t":
            value: object = bool(data[offset])
            offset += 1
        elif tag == "S":
            (length,) = struct.unpack_from(">I", data, offset)
            value = data[offset + 4 : offset + 4 + length].decode()
            offset += 4 + length
        elif tag == "F":
            value, offset = _table_layout(data, offset)
        else:
            raise AssertionError(f"unexpected field type {tag}")
        items.append((key, tag, value))
    return items, end


def test_connection_start_has_rabbitmq_layout(raw):
    raw.send_raw(HEADER_0_9_1)
    got = raw.read()
    assert (got.type, got.channel, got.payload[:6]) == (1, 0, b"\x00\x0a\x00\x0a\x00\x09")  # start, 0-9
    properties, offset = _table_layout(got.payload, 6)
    # RabbitMQ's keys, in its (sorted) wire order, all longstr except the capabilities table.
    assert [(key, tag) for key, tag, _ in properties] == [
        ("capabilities", "F"),
        ("cluster_name", "S"),
        ("copyright", "S"),
        ("information", "S"),
        ("platform", "S"),
        ("product", "S"),
        ("version", "S"),
    ]
    # The capabilities table exactly as RabbitMQ 3.10 sends it, order included.
    assert properties[0][2] == [
        ("publisher_confirms", "t", True),
        ("exchange_exchange_bindings", "t", True),
        ("basic.nack", "t", True),
        ("consumer_cancel_notify", "t", True),
        ("connection.blocked", "t", True),
        ("consumer_priorities", "t", True),
        ("authentication_failure_close", "t", True),
        ("per_consumer_qos", "t", True),
        ("direct_reply_to", "t", True),
    ]
    assert got.payload[offset:] == b"\x00\x00\x00\x0eAMQPLAIN PLAIN\x00\x00\x00\x05en_US"
    assert (raw.start if raw.start else got.value).mechanisms == "AMQPLAIN PLAIN"


def test_tune_proposes_rabbitmq_defaults(raw):
    tune = raw.handshake(open_vhost=False)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


def test_client_values_are_negotiated(broker, unique):
    connection = connect_named(broker, unique, frame_max=4096, heartbeat=0, channel_max=10)
    try:
        server = server_connection(broker, unique)
        assert (server.frame_max, server.channel_max, server.heartbeat) == (4096, 10, 0)
        channel = connection.channel()
        channel.queue_declare(unique, auto_delete=True)
        channel.basic_publish("", unique, b"x" * 10_000)
    finally:
        connection.close()
    # The negotiated frame_max holds for what the broker sends: bodies split at 4096 - 8.
    client = RawClient(broker.port)
    try:
        assert isinstance(client.handshake(frame_max=4096), commands.Connection.OpenOk)
        client.open_channel(1)
        client.send(1, commands.Basic.Get(queue=unique, no_ack=True))
        client.expect(1, commands.Basic.GetOk)
        sizes = []
        while sum(sizes) < 10_000:
            got = client.read()
            if got.type == 3:
                sizes.append(len(got.payload))
        assert sizes == [4088, 4088, 1824]
    finally:
        client.close()


def test_frame_max_4096_is_the_smallest_accepted(raw):
    assert isinstance(raw.handshake(frame_max=4096), commands.Connection.OpenOk)


@pytest.mark.parametrize(
    ("channel_max", "frame_max"),
    [(2047, 1000), (2047, 4095), (2047, 0), (2047, 131073), (2047, 200000), (0, 131072), (5000, 131072)],
)
def test_tune_ok_outside_the_limits_is_refused_silently(quick, channel_max, frame_max):
    """RabbitMQ 3.10 answers a tune-ok outside [4096, 131072] / [1, 2047] (0 means "no
    limit", also refused) with nothing: the socket closes after the silent-close delay."""
    client = RawClient(quick.port)
    try:
        client.handshake(channel_max=channel_max, frame_max=frame_max, open_vhost=False)
        client.send(0, commands.Connection.Open(virtual_host="/"))
        assert client.read_raw(timeout=3) == b""
        assert client.eof
    finally:
        client.close()


# -- protocol header ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x00\x00\x09\x02",
        b"AMQP\x00\x01\x00\x00",  # AMQP 1.0
        b"AMQP\x03\x01\x00\x00",  # AMQP 1.0 SASL
        b"amqp\x00\x00\x09\x01",
        b"HTTP/1.1",
        b"GET / HTTP/1.1\r\n\r\n",
        b"XXXXXXXX",
    ],
)
def test_wrong_protocol_header_gets_ours_and_a_hang_up(broker, header):
    client = RawClient(broker.port)
    try:
        client.send_raw(header)
        assert client.read_raw(timeout=3) == HEADER_0_9_1
        assert client.eof
    finally:
        client.close()


def test_amqp_0_9_header_is_taken_as_0_9_1(raw):
    raw.send_raw(b"AMQP\x01\x01\x00\x09")
    start = raw.expect(0, commands.Connection.Start)
    assert (start.version_major, start.version_minor) == (0, 9)


def test_protocol_header_may_arrive_in_pieces(raw):
    raw.send_raw(b"AMQP")
    time.sleep(0.1)
    raw.send_raw(b"\x00\x00\x09\x01")
    raw.expect(0, commands.Connection.Start)


@pytest.mark.parametrize("sent", [b"", b"AMQP", HEADER_0_9_1])
def test_handshake_timeout_hangs_up_without_a_word(quick, sent):
    client = RawClient(quick.port)
    try:
        client.send_raw(sent)
        data = client.read_raw(timeout=4)
        assert client.eof
        if sent == HEADER_0_9_1:
            assert data[:11] == b"\x01\x00\x00" + data[3:7] + b"\x00\x0a\x00\x0a"  # connection.start only
            assert len(data) == struct.unpack_from(">I", data, 3)[0] + 8
        else:
            assert data == b""
    finally:
        client.close()


def test_handshake_timeout_does_not_apply_once_open(quick):
    client = RawClient(quick.port)
    try:
        assert isinstance(client.handshake(), commands.Connection.OpenOk)
        time.sleep(1.3)  # longer than the quick broker's 1 s handshake timeout
        assert isinstance(client.open_channel(1), commands.Channel.OpenOk)
    finally:
        client.close()


# -- authentication -----------------------------------------------------------------------------


def test_plain_login_with_pika(broker):
    connection = broker.connect()
    assert connection.is_open
    connection.close()


def test_amqplain_login(raw):
    assert isinstance(raw.handshake(mechanism="AMQPLAIN"), commands.Connection.OpenOk)


@pytest.mark.parametrize(("user", "password"), [("guest", "wrong"), ("nosuchuser", "x")])
def test_pika_login_refused_with_403(broker, user, password):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        broker.connect(user=user, password=password)
    assert str(caught.value) == f"ConnectionClosedByBroker: (403) '{LOGIN_REFUSED.format('PLAIN')}'"


@pytest.mark.parametrize("mechanism", ["PLAIN", "AMQPLAIN"])
def test_login_refused_with_authentication_failure_close(quick, mechanism):
    client = RawClient(quick.port)
    try:
        close = client.handshake(password="wrong", mechanism=mechanism)
        assert isinstance(close, commands.Connection.Close)
        assert (close.reply_code, close.reply_text) == (403, LOGIN_REFUSED.format(mechanism))
        assert (close.class_id, close.method_id) == (0, 0)
        assert client.wait_eof()
    finally:
        client.close()


@pytest.mark.parametrize("capabilities", [None, {}, {"authentication_failure_close": False}])
@pytest.mark.parametrize("user", ["guest", "nosuchuser"])
def test_login_refused_without_the_capability_just_hangs_up(quick, capabilities, user):
    client = RawClient(quick.port)
    try:
        assert client.handshake(user=user, password="wrong", capabilities=capabilities) is None
        assert client.eof
    finally:
        client.close()


@pytest.mark.parametrize(
    ("mechanism", "response"),
    [
        ("PLAIN", b"garbage"),
        ("PLAIN", b"guest\x00guest\x00guest"),  # RabbitMQ 3.10 takes no authorization identity
        ("AMQPLAIN", b"\x05LOGINSxx"),
        ("FOO", b"x"),
    ],
)
def test_malformed_login_just_hangs_up(quick, mechanism, response):
    client = RawClient(quick.port)
    try:
        assert client.handshake(mechanism=mechanism, response=response) is None
        assert client.eof
    finally:
        client.close()


def test_plain_response_is_nul_user_nul_password(raw):
    assert isinstance(raw.handshake(response=plain("guest", "guest")), commands.Connection.OpenOk)


def test_loopback_rule():
    """guest may only log in from a loopback address. Every test client connects over
    127.0.0.1, so the refusal cannot be driven through the wire here without pointing a
    client at a non-loopback address; the rule itself is checked instead."""
    for host in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "128.0.0.1"):
        assert not is_loopback(host), host


def test_loopback_user_logs_in_from_loopback(broker):
    assert "guest" in broker.broker.config.loopback_users
    raw = RawClient(broker.port)
    try:
        assert isinstance(raw.handshake(response=amqplain("guest", "guest"), mechanism="AMQPLAIN"), commands.Connection.OpenOk)
    finally:
        raw.close()


# -- vhost access -------------------------------------------------------------------------------


def test_unknown_vhost_with_pika(broker):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        broker.connect(vhost="nosuch")
    assert str(caught.value) == "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost nosuch not found'"


@pytest.mark.parametrize(("vhost", "text"), [("nosuch", "vhost nosuch not found"), ("", "vhost  not found")])
def test_unknown_vhost(raw, vhost, text):
    close = raw.handshake(vhost=vhost)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530,
        f"NOT_ALLOWED - {text}",
        10,
        40,
    )
    assert raw.wait_eof()


def test_vhost_without_permission(broker, unique):
    broker.run(broker.admin.add_user(unique, "pw"))
    broker.run(broker.admin.add_vhost(unique))
    try:
        for user, password, vhost in ((unique, "pw", "/"), ("guest", "guest", unique)):
            client = RawClient(broker.port)
            try:
                close = client.handshake(user=user, password=password, vhost=vhost)
                assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
                    530,
                    f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'",
                    10,
                    40,
                )
            finally:
                client.close()
    finally:
        broker.run(broker.admin.delete_user(unique))
        broker.run(broker.admin.delete_vhost(unique))


def test_refused_vhost_waits_for_close_ok(raw):
    raw.send_raw(HEADER_0_9_1)
    raw.expect(0, commands.Connection.Start)
    raw.send(0, commands.Connection.StartOk(client_properties={}, mechanism="PLAIN", response="\x00guest\x00guest"))
    raw.expect(0, commands.Connection.Tune)
    raw.send(0, commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
    raw.send(0, commands.Connection.Open(virtual_host="nosuch"))
    raw.expect_close(close_ok=False)
    assert raw.read(timeout=0.5) is None and not raw.eof  # the socket stays open...
    raw.send(0, commands.Connection.CloseOk())
    assert raw.wait_eof()  # ...until close-ok


# -- heartbeats ---------------------------------------------------------------------------------


def test_silent_client_is_dropped_after_missing_two_heartbeats(raw):
    assert isinstance(raw.handshake(heartbeat=1), commands.Connection.OpenOk)
    heartbeats = 0
    while True:
        got = raw.read(timeout=5)
        if got is None:
            break
        assert got.type == 8, got  # heartbeats only: no connection.close before the hang-up
        heartbeats += 1
    assert raw.eof
    assert heartbeats >= 2  # RabbitMQ sends one every half interval: 5 before it hangs up


def test_client_sending_heartbeats_stays_connected(broker, unique):
    connection = broker.connect(heartbeat=1)
    try:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)  # pika sends its heartbeats here
        channel = connection.channel()
        assert channel.queue_declare(unique, exclusive=True).method.queue == unique
    finally:
        connection.close()


def test_no_heartbeats_when_disabled(raw):
    assert isinstance(raw.handshake(heartbeat=0), commands.Connection.OpenOk)
    assert raw.read(timeout=1.5) is None and not raw.eof


def test_heartbeat_frames_are_accepted_on_channel_zero(raw):
    assert isinstance(raw.handshake(heartbeat=0), commands.Connection.OpenOk)
    raw.send_frame(8, 0, b"")
    assert isinstance(raw.open_channel(1), commands.Channel.OpenOk)


# -- connection.close ---------------------------------------------------------------------------


def test_client_close_gets_close_ok(broker, raw):
    raw.handshake()
    server = server_connection(broker, raw)
    raw.send(0, commands.Connection.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
    raw.expect(0, commands.Connection.CloseOk)
    raw.close()
    wait_until(None, lambda: not broker.call(lambda: server in broker.broker.connections), 3.0, "connection not gone")


def test_pika_close(broker):
    connection = broker.connect()
    connection.close()
    assert connection.is_closed


def test_server_close_waits_for_close_ok(raw):
    raw.handshake()
    raw.send_frame(9, 1, b"abc")
    close = raw.expect_close(close_ok=False)
    assert (close.reply_code, close.reply_text) == (501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame')
    # Until close-ok, methods are ignored and a connection.close is answered with close-ok.
    raw.send(1, commands.Channel.Open())
    raw.send(0, commands.Connection.Open(virtual_host="/"))
    raw.send(0, commands.Connection.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    raw.expect(0, commands.Connection.CloseOk)
    assert raw.read(timeout=0.3) is None and not raw.eof
    raw.send(0, commands.Connection.CloseOk())
    assert raw.wait_eof()


def test_server_close_gives_up_after_one_heartbeat_interval(raw):
    """Without close-ok the socket is closed after the heartbeat interval (30 s at most)."""
    raw.handshake(heartbeat=1)
    raw.send_frame(9, 1, b"abc")
    raw.expect_close(close_ok=False)
    assert raw.wait_eof(timeout=4)


def test_update_secret(broker):
    connection = broker.connect()
    try:
        connection.update_secret("guest", "rotation")
        assert connection.is_open
    finally:
        connection.close()


def test_update_secret_raw(raw):
    raw.handshake()
    raw.send(0, commands.Connection.UpdateSecret(new_secret="guest", reason="x"))
    raw.expect(0, commands.Connection.UpdateSecretOk)


# -- connection.blocked / unblocked -------------------------------------------------------------


def test_blocked_and_unblocked(broker, unique):
    connection = connect_named(broker, unique)
    events: list[object] = []
    connection.add_on_connection_blocked_callback(lambda _conn, frame: events.append(frame.method))
    connection.add_on_connection_unblocked_callback(lambda _conn, frame: events.append(frame.method))
    try:
        channel = connection.channel()
        channel.queue_declare(unique, auto_delete=True)
        server = server_connection(broker, unique)
        broker.call(server.block, "low on memory")
        # An alarm alone blocks nothing: RabbitMQ waits for the connection to publish.
        assert message_count(channel, unique) == 0
        assert events == []
        channel.basic_publish("", unique, b"one")
        channel.basic_publish("", unique, b"two")
        deadline = time.monotonic() + 3
        while not events and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
        assert isinstance(events[0], pika.spec.Connection.Blocked)
        assert events[0].reason == "low on memory"
        queue = broker.call(lambda: broker.broker.vhosts["/"].queues[unique])
        assert broker.call(lambda: queue.message_count) == 0  # nothing read past the first header
        broker.call(server.unblock)
        while len(events) < 2 and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
        assert isinstance(events[1], pika.spec.Connection.Unblocked)
        assert message_count(channel, unique) == 2
        channel.basic_publish("", unique, b"three")
        assert message_count(channel, unique) == 3
    finally:
        broker.call(server.unblock)  # a blocked connection reads nothing, not even close
        connection.close()


def test_alarm_does_not_block_a_consuming_connection(broker, unique):
    with broker.connect() as publisher:
        publisher.channel().queue_declare(unique, auto_delete=True)
        publisher.channel().basic_publish("", unique, b"m")
        consumer = connect_named(broker, unique)
        events: list[object] = []
        consumer.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
        try:
            server = server_connection(broker, unique)
            broker.call(server.block, "low on disk")
            channel = consumer.channel()
            method, _props, body = channel.basic_get(unique, auto_ack=True)
            assert body == b"m"
            consumer.process_data_events(time_limit=0.1)
            assert events == []
            broker.call(server.unblock)
        finally:
            consumer.close()


# -- channel_max --------------------------------------------------------------------------------


def _channel_max_close(count: int, channel_max: int) -> tuple[int, str, int, int]:
    return (
        530,
        f"NOT_ALLOWED - number of channels opened ({count}) has reached the negotiated channel_max ({channel_max})",
        0,
        0,
    )


def test_channel_max_counts_open_channels(raw):
    raw.handshake(channel_max=10)
    for number in (1, 2, 3, 4, 5, 6, 7, 8, 9, 500):  # numbers beyond channel_max are fine
        assert isinstance(raw.open_channel(number), commands.Channel.OpenOk), number
    close = raw.open_channel(11)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == _channel_max_close(10, 10)


def test_closed_channels_free_their_slot(raw):
    raw.handshake(channel_max=2)
    raw.open_channel(1)
    raw.open_channel(2)
    raw.send(2, commands.Channel.Close(reply_code=200, reply_text="", class_id=0, method_id=0))
    raw.expect(2, commands.Channel.CloseOk)
    assert isinstance(raw.open_channel(3), commands.Channel.OpenOk)
    close = raw.open_channel(4)
    assert (close.reply_code, close.reply_text) == _channel_max_close(2, 2)[:2]


def test_2047_channels(raw):
    raw.handshake()
    data = b"".join(
        pika_free_open for pika_free_open in (_channel_open_frame(number) for number in range(1, 2048))
    )
    raw.send_raw(data)
    opened = set()
    while len(opened) < 2047:
        got = raw.read()
        assert isinstance(got.value, commands.Channel.OpenOk), got
        opened.add(got.channel)
    assert opened == set(range(1, 2048))
    close = raw.open_channel(2048)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == _channel_max_close(2047, 2047)


def _channel_open_frame(number: int) -> bytes:
    return struct.pack(">BHI", 1, number, 5) + b"\x00\x14\x00\x0a\x00\xce"

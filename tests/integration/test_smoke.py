"""The broker's basic round trip with pika: declare, bind, publish, get, consume, ack."""

import pika


def test_publish_get_consume_ack(broker, channel, unique):
    queue = channel.queue_declare("", exclusive=True).method.queue
    assert queue.startswith("amq.gen-")
    channel.exchange_declare(unique, "topic")
    channel.queue_bind(queue, unique, "a.#")
    channel.confirm_delivery()
    for i in range(5):
        channel.basic_publish(unique, "a.b", b"m%d" % i, pika.BasicProperties(content_type="text/plain"))
    method, props, body = channel.basic_get(queue)
    assert (body, method.message_count, props.content_type) == (b"m0", 4, "text/plain")
    channel.basic_ack(method.delivery_tag)
    got = []

    def on_message(ch, method, props, body):
        got.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(got) == 4:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    assert got == [b"m1", b"m2", b"m3", b"m4"]
    assert broker.call(lambda: broker.broker.vhosts["/"].queues[queue].message_count) == 0

#!/usr/bin/env python3
"""RabbitMQ's tutorials, through pika, against a running Warren node.

Usage: pika_tutorials.py PORT
Each step prints one line; any failure raises and exits non-zero.
"""
import sys
import threading
import time

import pika

PORT = int(sys.argv[1])
PARAMS = pika.ConnectionParameters("127.0.0.1", PORT)


def step(name):
    print(f"pika: {name} ... ", end="", flush=True)


def ok():
    print("ok", flush=True)


def connect():
    return pika.BlockingConnection(PARAMS)


# 1. Hello world (tutorial one), verbatim in spirit.
step("hello world")
conn = connect()
ch = conn.channel()
ch.queue_declare(queue="hello")
ch.basic_publish(exchange="", routing_key="hello", body="Hello World!")
got = []


def on_hello(chan, method, props, body):
    got.append(body)
    chan.stop_consuming()


ch.basic_consume(queue="hello", on_message_callback=on_hello, auto_ack=True)
ch.start_consuming()
assert got == [b"Hello World!"], got
conn.close()
ok()

# 2. Work queues: durable queue, persistent messages, prefetch 1, manual ack, fair dispatch.
step("work queue with manual ack and prefetch")
conn = connect()
ch = conn.channel()
ch.queue_declare(queue="task_queue", durable=True)
for i in range(10):
    ch.basic_publish(
        exchange="",
        routing_key="task_queue",
        body=f"task {i}",
        properties=pika.BasicProperties(delivery_mode=2),
    )
ch.basic_qos(prefetch_count=1)
done = []


def on_task(chan, method, props, body):
    done.append(body.decode())
    chan.basic_ack(delivery_tag=method.delivery_tag)
    if len(done) == 10:
        chan.stop_consuming()


ch.basic_consume(queue="task_queue", on_message_callback=on_task)
ch.start_consuming()
assert done == [f"task {i}" for i in range(10)], done
# Redeclaring with a different durability is refused as RabbitMQ refuses it.
try:
    ch.queue_declare(queue="task_queue", durable=False)
    raise AssertionError("inequivalent redeclare was accepted")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 406, e
    assert "inequivalent arg 'durable'" in e.reply_text, e
conn.close()
ok()

# 3-5. Publish/subscribe, routing, topics, headers.
step("fanout, direct, topic and headers exchanges")
conn = connect()
ch = conn.channel()
ch.exchange_declare(exchange="logs", exchange_type="fanout")
ch.exchange_declare(exchange="direct_logs", exchange_type="direct")
ch.exchange_declare(exchange="topic_logs", exchange_type="topic")
ch.exchange_declare(exchange="hdr", exchange_type="headers")
q_f = ch.queue_declare(queue="", exclusive=True).method.queue
assert q_f.startswith("amq.gen-"), q_f
q_d = ch.queue_declare(queue="", exclusive=True).method.queue
q_t = ch.queue_declare(queue="", exclusive=True).method.queue
q_h = ch.queue_declare(queue="", exclusive=True).method.queue
ch.queue_bind(exchange="logs", queue=q_f)
ch.queue_bind(exchange="direct_logs", queue=q_d, routing_key="error")
ch.queue_bind(exchange="topic_logs", queue=q_t, routing_key="*.critical")
ch.queue_bind(exchange="hdr", queue=q_h, arguments={"x-match": "any", "a": "1", "b": "2"})
ch.basic_publish(exchange="logs", routing_key="", body="fan")
ch.basic_publish(exchange="direct_logs", routing_key="error", body="err")
ch.basic_publish(exchange="direct_logs", routing_key="info", body="info")
ch.basic_publish(exchange="topic_logs", routing_key="kern.critical", body="kc")
ch.basic_publish(exchange="topic_logs", routing_key="kern.info", body="ki")
ch.basic_publish(exchange="hdr", routing_key="", body="h1", properties=pika.BasicProperties(headers={"b": "2"}))
ch.basic_publish(exchange="hdr", routing_key="", body="h2", properties=pika.BasicProperties(headers={"c": "3"}))


def drain(q):
    out = []
    while True:
        m, p, b = ch.basic_get(queue=q, auto_ack=True)
        if m is None:
            return out
        out.append(b.decode())


assert drain(q_f) == ["fan"]
assert drain(q_d) == ["err"]
assert drain(q_t) == ["kc"]
assert drain(q_h) == ["h1"]
conn.close()
ok()

# 6. RPC pattern with reply_to and correlation_id (tutorial six) using a server-named queue.
step("rpc with reply_to and correlation_id")
conn = connect()
ch = conn.channel()
ch.queue_declare(queue="rpc_queue")
server_conn = connect()
sch = server_conn.channel()


def on_request(chan, method, props, body):
    n = int(body)
    chan.basic_publish(
        exchange="",
        routing_key=props.reply_to,
        properties=pika.BasicProperties(correlation_id=props.correlation_id),
        body=str(n * 2),
    )
    chan.basic_ack(delivery_tag=method.delivery_tag)
    chan.stop_consuming()


sch.basic_consume(queue="rpc_queue", on_message_callback=on_request)
callback_queue = ch.queue_declare(queue="", exclusive=True).method.queue
ch.basic_publish(
    exchange="",
    routing_key="rpc_queue",
    properties=pika.BasicProperties(reply_to=callback_queue, correlation_id="corr-1"),
    body="21",
)
t = threading.Thread(target=sch.start_consuming)
t.start()
t.join(10)
m, p, b = None, None, None
deadline = time.time() + 5
while m is None and time.time() < deadline:
    m, p, b = ch.basic_get(queue=callback_queue, auto_ack=True)
assert m is not None and p.correlation_id == "corr-1" and b == b"42", (m, p, b)
server_conn.close()
conn.close()
ok()

# 7. Publisher confirms and mandatory returns (tutorial seven).
step("publisher confirms and mandatory return")
conn = connect()
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(queue="confirmed")
for i in range(100):
    ch.basic_publish(exchange="", routing_key="confirmed", body=str(i))  # raises if nacked
try:
    ch.basic_publish(exchange="", routing_key="no-such-queue", body="x", mandatory=True)
    raise AssertionError("unroutable mandatory message was not returned")
except pika.exceptions.UnroutableError as e:
    assert e.messages[0].method.reply_code == 312, e
assert ch.queue_declare(queue="confirmed", passive=True).method.message_count == 100
conn.close()
ok()

# 8. Dead-letter queues (TTL, max-length, reject) as the tutorial's chapter 6 builds them.
step("dead-lettering via TTL, max-length and reject")
conn = connect()
ch = conn.channel()
ch.exchange_declare(exchange="dead_exchange", exchange_type="direct")
ch.queue_declare(queue="dead_queue")
ch.queue_bind(queue="dead_queue", exchange="dead_exchange", routing_key="lisi")
dl_args = {"x-dead-letter-exchange": "dead_exchange", "x-dead-letter-routing-key": "lisi"}
ch.queue_declare(queue="ttl_queue", arguments=dict(dl_args, **{"x-message-ttl": 100}))
ch.queue_declare(queue="short_queue", arguments=dict(dl_args, **{"x-max-length": 1}))
ch.queue_declare(queue="picky_queue", arguments=dl_args)
ch.basic_publish(exchange="", routing_key="ttl_queue", body="expired")
ch.basic_publish(exchange="", routing_key="short_queue", body="overflowed")
ch.basic_publish(exchange="", routing_key="short_queue", body="kept")
ch.basic_publish(exchange="", routing_key="picky_queue", body="rejected")
m, p, b = ch.basic_get(queue="picky_queue")
ch.basic_reject(delivery_tag=m.delivery_tag, requeue=False)
deadline = time.time() + 5
reasons = {}
while len(reasons) < 3 and time.time() < deadline:
    m, p, b = ch.basic_get(queue="dead_queue", auto_ack=True)
    if m is None:
        time.sleep(0.05)
        continue
    reasons[b.decode()] = p.headers["x-death"][0]["reason"]
assert reasons == {"expired": "expired", "overflowed": "maxlen", "rejected": "rejected"}, reasons
conn.close()
ok()

# 9. Direct reply-to RPC (amq.rabbitmq.reply-to).
step("rpc with direct reply-to")
conn = connect()
ch = conn.channel()
ch.queue_declare(queue="rpc_direct")
answers = []


def on_answer(chan, method, props, body):
    answers.append(body)
    chan.stop_consuming()


ch.basic_consume(queue="amq.rabbitmq.reply-to", on_message_callback=on_answer, auto_ack=True)
ch.basic_publish(exchange="", routing_key="rpc_direct", body="ping",
                 properties=pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
server_conn = connect()
sch = server_conn.channel()
m, p, b = sch.basic_get(queue="rpc_direct", auto_ack=True)
assert p.reply_to.startswith("amq.rabbitmq.reply-to."), p.reply_to
sch.basic_publish(exchange="", routing_key=p.reply_to, body="pong")
ch.start_consuming()
assert answers == [b"pong"], answers
server_conn.close()
conn.close()
ok()

# 10. The delayed-message exchange (chapter 7's plugin).
step("delayed exchange round trip")
conn = connect()
ch = conn.channel()
ch.exchange_declare(exchange="delayed.exchange", exchange_type="x-delayed-message",
                    arguments={"x-delayed-type": "direct"})
ch.queue_declare(queue="delayed.queue")
ch.queue_bind(queue="delayed.queue", exchange="delayed.exchange", routing_key="delayed.routingkey")
sent = time.time()
ch.basic_publish(exchange="delayed.exchange", routing_key="delayed.routingkey", body="later",
                 properties=pika.BasicProperties(headers={"x-delay": 300}))
m = None
while m is None and time.time() - sent < 5:
    m, p, b = ch.basic_get(queue="delayed.queue", auto_ack=True)
    if m is None:
        time.sleep(0.02)
waited = time.time() - sent
assert b == b"later" and waited >= 0.28, (b, waited)
conn.close()
ok()

print("pika: all tutorial steps passed")

"""amqp-perf: a PerfTest-style load tool for any AMQP 0-9-1 broker (see docs/amqp-perf.md).

Modules: ``cli`` (arguments, output), ``runner`` (the coordinating process), ``workers``
(producers, consumers, worker processes), ``client`` (minimal asyncio AMQP client), ``frames``
(pre-encoded frames, body layout), ``topology`` (exchange, queues, keys), ``stats``
(counters, latency histograms), ``settings`` (the parsed options).
"""

__version__ = "0.1.0"

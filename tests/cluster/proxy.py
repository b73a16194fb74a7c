"""Fault-injecting proxies to put between two nodes, for partition tests.

``TcpProxy`` listens on a free port of 127.0.0.1 and relays each connection it accepts to its
target; ``UdpProxy`` relays datagrams to its target (one direction: heartbeats from A to B go
through one, from B to A through another). Both start passing traffic and then obey:

- ``delay(seconds)``: everything is held that long before it goes on (in order);
- ``drop()``: a blackhole both ways, nothing closed: TCP data stays unread, as behind a real
  partition (the senders' buffers fill, their kernels retransmit), new connections are
  accepted but relayed to nowhere; datagrams are discarded;
- ``cut()`` (TCP): every current connection is closed at both ends; new ones still pass;
- ``heal()``: traffic passes again, TCP data held by a drop first.

``Proxies`` puts a pair of them (links and heartbeats) between every two of three nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any


class _Faults:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.delay_seconds = 0.0
        self._passing = asyncio.Event()
        self._passing.set()

    @property
    def dropping(self) -> bool:
        return not self._passing.is_set()

    def delay(self, seconds: float) -> None:
        self.delay_seconds = seconds
        self._passing.set()

    def drop(self) -> None:
        self._passing.clear()

    def heal(self) -> None:
        self.delay_seconds = 0.0
        self._passing.set()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


class TcpProxy(_Faults):
    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._passing.wait()  # a connection made during a drop leads nowhere yet
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        finally:
            self._tasks.discard(task)
        if writer not in self._writers:  # cut while connecting
            upstream.transport.abort()
            return
        self._writers.add(upstream)
        for source, sink in ((reader, upstream), (upstream_reader, writer)):
            pump = asyncio.get_running_loop().create_task(self._pump(source, sink))
            self._tasks.add(pump)
            pump.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                await self._passing.wait()
                data = await source.read(65536)
                if not data:
                    break
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                await self._passing.wait()  # read just before a drop: held until the heal
                sink.write(data)
                await sink.drain()
        # One side ended: end the other (a cut aborts both).
        sink.transport.abort()
        self._writers.discard(sink)


class UdpProxy(_Faults, asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self._transport: asyncio.DatagramTransport | None = None
        self.dropped = 0  # datagrams discarded by drop()

    async def start(self) -> UdpProxy:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.dropping:
            self.dropped += 1
        elif self.delay_seconds:
            asyncio.get_running_loop().call_later(self.delay_seconds, self._forward, data)
        else:
            self._forward(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP about an earlier datagram: the target is not up; heartbeats tolerate it

    def _forward(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.sendto(data, self.target)


class PairedUdpProxy(UdpProxy):
    """Heartbeats on the TCP proxy's port number: the failure detector sends them to the
    link's port (by convention, docs/clustering.md)."""

    async def start_on(self, port: int) -> PairedUdpProxy:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", port))
        self.port = port
        return self


class Proxies:
    """One TcpProxy (links) and one UdpProxy (heartbeats) per ordered pair of nodes, on an
    event loop of their own thread."""

    def __init__(self, cluster_ports: list[int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pairs: dict[tuple[int, int], TcpProxy] = {}
        self.heartbeats: list[tuple[int, int, PairedUdpProxy]] = []
        for i in range(3):
            for j in range(3):
                if i != j:
                    target = ("127.0.0.1", cluster_ports[j])
                    self.pairs[i, j] = proxy = self.run(TcpProxy(target).start())
                    self.heartbeats.append((i, j, self.run(PairedUdpProxy(target).start_on(proxy.port))))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def isolate(self, node: int) -> None:
        async def drop() -> None:
            for (i, j), proxy in self.pairs.items():
                if node in (i, j):
                    proxy.drop()
            for i, j, heartbeats in self.heartbeats:
                if node in (i, j):
                    heartbeats.drop()

        self.run(drop())

    def heal(self) -> None:
        async def heal() -> None:
            for proxy in [*self.pairs.values(), *(h for _i, _j, h in self.heartbeats)]:
                proxy.heal()

        self.run(heal())

    def close(self) -> None:
        for proxy in [*self.pairs.values(), *(h for _i, _j, h in self.heartbeats)]:
            self.run(proxy.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

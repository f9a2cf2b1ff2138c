"""The lab pod's workload: a TCP and UDP echo server that answers with its own pod name.

TCP: an HTTP request gets `200 OK` with body `<name>\\n`; anything else gets `<name>\\n` followed by an
echo of every byte received (so a client can hold a stream open). UDP: every datagram gets `<name>\\n`.
"""

from __future__ import annotations

import argparse
import asyncio

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")


class _UdpResponder(asyncio.DatagramProtocol):
    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport, not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport:
            self.transport.sendto(self.reply, addr)


async def _serve(name: str, port: int) -> None:
    reply = f"{name}\n".encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(65536)
            if first.startswith(HTTP_METHODS):
                writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                             + str(len(reply)).encode() + b"\r\nConnection: close\r\n\r\n" + reply)
            else:
                writer.write(reply + first)
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _UdpResponder(reply), local_addr=("0.0.0.0", port))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    asyncio.run(_serve(args.name, args.port))


if __name__ == "__main__":
    main()

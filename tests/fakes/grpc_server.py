"""The lifecycle the fake Google gRPC servers share: plaintext gRPC on loopback.

The real client libraries reach a fake as they would an emulator, at `host`, so each fake only
says which service it serves and how each RPC is handled.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Self

import grpc


class LoopbackGrpcServer:
    """One gRPC service on 127.0.0.1, plaintext; subclasses name it and supply its methods."""

    service: str  # the full gRPC service name, e.g. "google.cloud.speech.v1.Speech"
    max_workers = 8  # concurrent RPCs; a streaming RPC holds a worker for as long as it is open
    thread_name_prefix = "fake-grpc"

    def __init__(self) -> None:
        self._server: grpc.Server | None = None
        self.host = ""

    def _methods(self) -> dict[str, grpc.RpcMethodHandler]:
        """The service's RPCs by method name."""
        raise NotImplementedError

    def start(self, port: int = 0) -> Self:
        """Listen on loopback (`port` 0: a free one); `host` is then "127.0.0.1:<port>"."""
        handler = grpc.method_handlers_generic_handler(self.service, self._methods())
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=self.thread_name_prefix
            )
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Stop at once; open streams end with CANCELLED/UNAVAILABLE on the client."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def serve_until_interrupted(self) -> None:
        """Serve until Ctrl-C, then stop: for a fake run by hand (`python -m tests.fakes...`)."""
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Network checks with a hard deadline, for the places that must fail fast on an offline machine."""

from __future__ import annotations

import socket
import threading


def tcp_reachable(host: str, port: int, timeout_s: float) -> bool:
    """TCP connect within `timeout_s`, DNS included (a thread bounds getaddrinfo, which has no timeout)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(result and result[0])

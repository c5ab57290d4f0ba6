"""A plain moto server in its own process: `python -m tests.bench.moto_proc`.

Prints `PORT <n>` once it listens on 127.0.0.1 (port chosen by the OS), then serves until
its standard input closes (the harness holds the pipe: if the harness dies, so does this)
or it gets SIGTERM. Nothing of the project's emulator layer: moto as a new user runs it,
so its CPU can be read from /proc beside the daemon's.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - after the log level is set

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(f"PORT {port}", flush=True)
    wait_until_stopped()
    server.stop()
    return 0


def wait_until_stopped() -> None:
    """Until SIGTERM, or until the parent closes our stdin (it died without telling us)."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def until_stdin_closes() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    done.wait()


if __name__ == "__main__":
    sys.exit(main())

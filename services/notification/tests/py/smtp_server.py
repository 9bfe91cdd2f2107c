"""A real local SMTP server for the notification tests (aiosmtpd).

Usage: smtp_server.py PORT OUTFILE
Accepts every message on 127.0.0.1:PORT and appends one JSON line per message to OUTFILE:
{"mail_from": ..., "rcpt_tos": [...], "data": "<the raw RFC 5322 message>"}. Prints READY
once listening and runs until terminated.
"""

import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Recorder(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()

"""Run one of the seed's apps as the seed runs it, with the fake SignalWire client.

    python -m bench.baseline.serve sms_tracker 5001      # Flask's own server: app.run()
    gunicorn -w 2 'bench.baseline.serve:create("sms_tracker")'

The only departures from the seed: the port is given (the seed's apps both take
Flask's default 5000, so they could not run side by side), and `signalwire.rest` is
the in-process fake of `fake_signalwire.py`.
"""

from __future__ import annotations

import importlib
import sys
import types

from flask import Flask

from bench.baseline import fake_signalwire

APPS = ("sms_tracker", "inbound_calls")


def create(name: str) -> Flask:
    if name not in APPS:
        raise SystemExit(f"no seed app {name!r}; choose one of {', '.join(APPS)}")
    fake = types.ModuleType("signalwire.rest")
    fake.Client = fake_signalwire.Client  # type: ignore[attr-defined]
    sys.modules["signalwire.rest"] = fake
    app: Flask = importlib.import_module(f"bench.baseline.{name}").app
    return app


if __name__ == "__main__":
    name, port = sys.argv[1], int(sys.argv[2])
    create(name).run(port=port)  # the seed's app.run(): Flask's threaded development server

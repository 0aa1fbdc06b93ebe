"""Lambda entry point of the trigger dispatcher: build it once, serve the ledger's stream
and the retry schedule (`lakelog.dispatcher_handler` says what each takes and returns).

The function's handler is ``handler``, which routes a stream batch to ``on_stream`` and a
scheduled event to ``on_schedule``.
"""

from __future__ import annotations

import os

from lakelog.dispatcher_handler import dispatcher_from_env, make_handlers

_handlers = make_handlers(dispatcher_from_env(os.environ))

handler = _handlers.handler
on_stream = _handlers.on_stream
on_schedule = _handlers.on_schedule

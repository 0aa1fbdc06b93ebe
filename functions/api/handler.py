"""Lambda entry point of the HTTP API: parse the environment once, serve every request."""

from __future__ import annotations

import os

from lakelog.api import ApiSettings, make_handler

handler = make_handler(ApiSettings.from_env(os.environ))

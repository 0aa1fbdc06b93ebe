"""The HTTP API v1 contract, shared by the server and the SDK: bodies and the error registry.

Importing it loads pydantic and nothing of the engine, the storage or the Lambda runtime.
"""

from __future__ import annotations

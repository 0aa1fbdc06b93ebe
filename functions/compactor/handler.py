"""Lambda entry points of the compactor's tasks: build the compactor once, serve each task.

The state machine invokes ``list_topics``, ``compact_topic`` and ``collect``, one function
each (`lakelog.compactor_handler` says what they take and return).
"""

from __future__ import annotations

import os

from lakelog.compactor_handler import compactor_from_env, make_task_handlers

_tasks = make_task_handlers(compactor_from_env(os.environ))

list_topics = _tasks.list_topics
compact_topic = _tasks.compact_topic
collect = _tasks.collect

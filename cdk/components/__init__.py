"""Constructs of the lakelog stack, one module per component.

``storage``, ``monitoring``: built for every environment. ``function``, ``packaging``: how
each Lambda function is built and packaged. ``platform``: what components receive.
``outputs``, ``nag``: stable stack outputs and scoped cdk-nag acknowledgments. The API,
compactor and triggers components add ``api.py``, ``compactor.py`` and ``triggers.py`` here
and one line to `stacks.lakelog.COMPONENTS`.

(The package is not called ``constructs``: that would shadow the ``constructs`` library
for every module of this app.)
"""

from __future__ import annotations

__all__: list[str] = []

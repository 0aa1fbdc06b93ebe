"""Stack outputs whose names never change, whatever construct creates them."""

from __future__ import annotations

import re

from aws_cdk import CfnOutput, Stack

__all__ = ["StableOutputs"]

_LOGICAL_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,254}$")


class StableOutputs:
    """Adds ``CfnOutput``s under fixed logical ids, without exports.

    Tools and the SDK read outputs by name (``BucketName``, ``LedgerTableName``, ...);
    CDK would otherwise derive the name from the construct path, which moves whenever a
    construct is moved. No output is exported: stacks do not import each other.

    Parameters
    ----------
    stack
        The stack the outputs belong to.
    """

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._outputs: dict[str, CfnOutput] = {}

    def add(self, logical_id: str, value: str, description: str) -> CfnOutput:
        """Output ``value`` under the logical id ``logical_id``.

        Raises
        ------
        ValueError
            If ``logical_id`` is not alphanumeric or is already taken.
        """
        if not _LOGICAL_ID.fullmatch(logical_id):
            raise ValueError(f"output logical id {logical_id!r} must be alphanumeric")
        if logical_id in self._outputs:
            raise ValueError(f"output {logical_id!r} is already defined")
        output = CfnOutput(self._stack, f"Output{logical_id}", value=value, description=description)
        output.override_logical_id(logical_id)
        self._outputs[logical_id] = output
        return output

    @property
    def names(self) -> tuple[str, ...]:
        """Logical ids of the outputs added so far, in order."""
        return tuple(self._outputs)

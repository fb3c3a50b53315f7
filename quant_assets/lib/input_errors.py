"""The error a vendor file or response raises when it cannot be used.

The message reads ``source: [rule] detail``: ``source`` names the file or endpoint, ``rule`` the
class of problem (a stable word an operator can search for and a test can assert), and the detail
says what is wrong and where (``line N: ...``). ``source``, ``rule`` and ``line`` (1-based, when one
line is at fault) are attributes too, for the asset's failure metadata.
"""

from __future__ import annotations


class InputError(RuntimeError):
    def __init__(self, source: str, rule: str, detail: str, *, line: int | None = None):
        super().__init__(f"{source}: [{rule}] {detail}")
        self.source, self.rule, self.detail, self.line = source, rule, detail, line

"""An in-process AWS for `reconciler demo` and the end-to-end tests (docs/decisions/0002).

moto's server, plus what moto leaves out and a client can tell: updates that take time,
roll back, refuse to overlap and say "No updates are to be performed."; LastUpdatedTime and
ClientRequestToken on events; change sets whose Changes say what an update would replace;
injected throttling; and a migration instance that writes its record (CONTRACT section 3).
"""

from reconciler.embedded.emulator import TEMPLATE, Emulator, template_body, wait_for
from reconciler.embedded.faults import Fault, Faults
from reconciler.embedded.migration import MigrationWorker

__all__ = [
    "TEMPLATE",
    "Emulator",
    "Fault",
    "Faults",
    "MigrationWorker",
    "template_body",
    "wait_for",
]

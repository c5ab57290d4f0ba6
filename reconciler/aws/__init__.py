"""The AWS edge: observe a stack, send one update, read the migration record.

Rules of this package:
- Only this package imports boto3 / botocore; the planner never sees them.
- Functions take a `Clients` (the shared, counted client cache) and a spec; they return
  `reconciler.model` values or raise the package's own errors (UpdateRefused,
  RecordInvalid), botocore errors for everything that is AWS's problem.
"""

from reconciler.aws.act import UpdateRefused, send_update, set_scaling
from reconciler.aws.clients import Clients
from reconciler.aws.observe import observe
from reconciler.aws.records import RecordInvalid, read_record

__all__ = [
    "Clients",
    "RecordInvalid",
    "UpdateRefused",
    "observe",
    "read_record",
    "send_update",
    "set_scaling",
]

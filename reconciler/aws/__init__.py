"""The AWS edge: observe a stack, send one update, read the migration record.

Rules of this package:
- Only this package imports boto3 / botocore; the planner never sees them.
- Functions take a `Clients` (the shared, counted client cache) and a spec; they return
  `reconciler.model` values or raise the package's own errors (UpdateRefused,
  RecordInvalid), botocore errors for everything that is AWS's problem.
"""

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from reconciler.aws.act import UpdateRefused, send_update, set_scaling
from reconciler.aws.clients import Clients
from reconciler.aws.observe import observe
from reconciler.aws.records import RecordInvalid, read_record

# Everything AWS's side can raise: an error answer, a transport failure, or an answer the
# SDK could not parse (an endpoint's HTML error page): each is a failed call, never a crash.
ERRORS = (ClientError, BotoCoreError, ResponseParserError)

__all__ = [
    "ERRORS",
    "Clients",
    "RecordInvalid",
    "UpdateRefused",
    "observe",
    "read_record",
    "send_update",
    "set_scaling",
]

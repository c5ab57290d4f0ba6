"""The WSGI layer in front of moto's server: faults first, then our CloudFormation, then moto.

Rules of this file:
- The service and action of a request are read the way moto's dispatcher reads them (the
  SigV4 credential scope; the form's `Action` or the `X-Amz-Target` header), never guessed
  from the URL alone.
- UpdateStack, CancelUpdateStack and ContinueUpdateRollback go to the update layer, and the
  change-set calls (CreateChangeSet, DescribeChangeSet, DeleteChangeSet, ListChangeSets,
  ExecuteChangeSet, GetTemplate) to the change-set layer, each after the IAM check moto
  would have made (moto never sees them, so it cannot make it): `cloudformation:<Action>`
  on the stack's ARN.
- Change-set answers are rendered by moto's own serializer from botocore's model of the
  operation, so every field has the shape and type the SDKs parse.
- Errors are rendered in the protocol the client's SDK parses for that service, so boto3
  raises the same `ClientError` (code, message, HTTP status) that AWS would cause.
- Every request runs under the update layer's lock and its body is read inside it: moto's
  backends are not thread-safe and the update timelines mutate them from other threads.
- CloudWatch (SigV4 service `monitoring`) is moto's, but authorised here: moto would check
  `monitoring:Action`, where AWS checks `cloudwatch:Action`, so no policy could allow it.
  After each CloudWatch request the update layer checks the rollback triggers of the
  updates in progress: an alarm set to ALARM rolls an update back before the SetAlarmState
  call returns.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from moto.cloudformation.models import cloudformation_backends
from moto.core.authorization import ActionAuthenticatorMixin, disable_iam_authentication
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.request import Request
from moto.core.serialize import QuerySerializer, SerializationContext
from moto.core.utils import get_service_model
from moto.iam.access_control import IAMRequest
from moto.iam.models import get_account_id_from
from moto.utilities.utils import get_partition
from werkzeug.exceptions import HTTPException

from reconciler.embedded import cfn, changesets, faults

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_SCOPE_RE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/")
_QUERY_SERVICES = frozenset({"cloudformation", "autoscaling", "elasticloadbalancing", "sts", "iam"})
CLOUDWATCH = "monitoring"  # CloudWatch's name in the SigV4 credential scope
_OURS = frozenset({"UpdateStack", "CancelUpdateStack", "ContinueUpdateRollback"})
_CHANGE_SETS = frozenset(
    {
        "CreateChangeSet",
        "DescribeChangeSet",
        "DeleteChangeSet",
        "ListChangeSets",
        "ExecuteChangeSet",
        "GetTemplate",
    }
)
_CFN_NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"


class Middleware:
    """Wraps moto's WSGI app: injects faults, answers UpdateStack and the change sets."""

    def __init__(
        self,
        app: WsgiApp,
        updates: cfn.StackUpdates,
        injected: faults.Faults,
        region: str,
        change_sets: changesets.ChangeSets,
    ) -> None:
        self._app = app
        self._updates = updates
        self._change_sets = change_sets
        self._faults = injected
        self._region = region
        # Every request by (service, action), faults included: what a tool really cost AWS,
        # counted on the server side so tools that keep no count of their own compare.
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._count_lock = threading.Lock()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ)
        access_key, region, service = _scope(environ, self._region)
        action = _action(environ, body)
        with self._count_lock:
            self.requests[(service, action)] += 1
        fault = self._faults.decide(service, action)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)  # outside the update lock: only this request hangs
        if fault is not None and fault.status and not fault.code:
            return _respond(start_response, fault.status, "text/html", fault.message.encode())
        if fault is not None and fault.status:
            return _error(start_response, service, fault.status, fault.code, fault.message)
        with self._updates.lock:
            if service == "cloudformation" and action in _OURS:
                return self._ours(environ, start_response, action, access_key, region, body)
            if service == "cloudformation" and action in _CHANGE_SETS:
                return self._change_set_call(
                    environ, start_response, action, access_key, region, body
                )
            if service == CLOUDWATCH:
                return self._cloudwatch(environ, start_response, action, access_key, body)
            # Materialize moto's answer while holding the lock: its iterable may be lazy.
            answer = [b"".join(self._app(environ, start_response))]
            if service == "cloudformation" and action == "CreateStack":
                self._tag_created(access_key, region, body)
            return answer

    def _tag_created(self, access_key: str, region: str, body: bytes) -> None:
        """The groups of a stack moto just created carry CloudFormation's tags, as on AWS."""
        name = dict(parse_qsl(body.decode("utf-8"))).get("StackName", "")
        with contextlib.suppress(cfn.Refused):  # the create failed: moto's answer says why
            cfn.tag_groups(cfn.find_stack(_account(access_key), region, name))

    def _cloudwatch(
        self,
        environ: Environ,
        start_response: StartResponse,
        action: str,
        access_key: str,
        body: bytes,
    ) -> Iterable[bytes]:
        """moto's answer, authorised as AWS authorises it; then the triggers are checked."""
        caller = _Caller(environ, _account(access_key), action, {}, body, _CloudWatchRequest)
        try:
            caller.authorize("*")
        except HTTPException as exc:
            code = str(getattr(exc, "error_type", "AccessDenied"))
            message = str(getattr(exc, "message", exc.description))
            return _error(start_response, CLOUDWATCH, exc.code or 403, code, message)
        with disable_iam_authentication():  # checked above, under the right name
            answer = [b"".join(self._app(environ, start_response))]
        self._updates.check_alarms()
        return answer

    def _ours(
        self,
        environ: Environ,
        start_response: StartResponse,
        action: str,
        access_key: str,
        region: str,
        body: bytes,
    ) -> Iterable[bytes]:
        """The CloudFormation calls the update layer answers instead of moto."""
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        account = _account(access_key)
        resource = _stack_arn(account, region, form.get("StackName", ""))
        refusal = _refusal(environ, start_response, action, account, form, body, resource)
        if refusal is not None:
            return refusal
        result = ""
        try:
            if action == "UpdateStack":
                stack_id = self._updates.update(account, region, form)
                result = f"<StackId>{escape(stack_id)}</StackId>"
            elif action == "CancelUpdateStack":
                self._updates.cancel(account, region, form)
            else:
                self._updates.continue_rollback(account, region, form)
        except cfn.Refused as exc:
            return _error(start_response, "cloudformation", exc.status, exc.code, exc.message)
        xml = (
            f'<{action}Response xmlns="{_CFN_NS}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )
        return _respond(start_response, 200, "text/xml", xml.encode())

    def _change_set_call(
        self,
        environ: Environ,
        start_response: StartResponse,
        action: str,
        access_key: str,
        region: str,
        body: bytes,
    ) -> Iterable[bytes]:
        """The change-set calls, answered by the change-set layer in AWS's shapes."""
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        account = _account(access_key)
        resource = self._change_sets.stack_arn(form) or _stack_arn(
            account, region, form.get("StackName") or "*"
        )
        refusal = _refusal(environ, start_response, action, account, form, body, resource)
        if refusal is not None:
            return refusal
        calls: dict[str, Callable[[str, str, dict[str, str]], Any]] = {
            "CreateChangeSet": self._change_sets.create,
            "DescribeChangeSet": self._change_sets.describe,
            "DeleteChangeSet": self._change_sets.delete,
            "ListChangeSets": self._change_sets.listed,
            "GetTemplate": self._change_sets.template_of,
        }
        try:
            if action not in calls:
                raise cfn.Refused(
                    f"{action} is not emulated: the embedded emulator computes change sets to "
                    "be read; send UpdateStack with the same template and parameters"
                )
            result = calls[action](account, region, form)
        except cfn.Refused as exc:
            return _error(start_response, "cloudformation", exc.status, exc.code, exc.message)
        return _serialized(start_response, action, result or {})


def _refusal(
    environ: Environ,
    start_response: StartResponse,
    action: str,
    account: str,
    form: dict[str, str],
    body: bytes,
    resource: str,
) -> Iterable[bytes] | None:
    """moto's IAM check of one of our CloudFormation calls: its error answer, or None."""
    try:
        _Caller(environ, account, action, form, body).authorize(resource)
    except HTTPException as exc:  # moto's SignatureDoesNotMatch, AccessDenied, ...
        code = str(getattr(exc, "error_type", "AccessDenied"))
        message = str(getattr(exc, "message", exc.description))
        return _error(start_response, "cloudformation", exc.code or 403, code, message)
    return None


def _serialized(start_response: StartResponse, action: str, result: Any) -> Iterable[bytes]:
    """A CloudFormation answer as AWS renders it (query protocol XML)."""
    operation = get_service_model("cloudformation").operation_model(action)
    context = SerializationContext(request_id=str(uuid.uuid4()))
    answer = QuerySerializer(operation, context).serialize(result)
    text = answer["body"]
    return _respond(
        start_response, 200, "text/xml", text.encode() if isinstance(text, str) else text
    )


class _Caller(ActionAuthenticatorMixin):
    """One of our CloudFormation requests, shaped as moto's `BaseResponse` is for its check.

    moto authorises every call it answers through this mixin; reusing it keeps one rule for
    all: the same switch (`INITIAL_NO_AUTH_ACTION_COUNT`, whose counter our calls advance as
    moto's do), the same signature check and the same policy evaluation.
    """

    def __init__(
        self,
        environ: Environ,
        account: str,
        action: str,
        form: dict[str, str],
        body: bytes,
        check: type[IAMRequest] = IAMRequest,
    ) -> None:
        request = Request(environ)  # moto's request class: its headers and raw_path
        self.headers = request.headers
        self.uri = request.url
        self.raw_path = request.raw_path
        self.method = request.method
        self.current_account = account
        self.data = form
        self.raw_body = body
        self._action = action
        self._check = check

    def _get_action(self) -> str:
        return self._action

    def authorize(self, resource: str) -> None:
        """Raise moto's HTTPException (AccessDenied, ...) when enforcement is on and refuses."""
        self._authenticate_and_authorize_action(self._check, resource)


class _CloudWatchRequest(IAMRequest):
    """moto's check of one request, under the IAM name AWS gives CloudWatch's actions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._action = f"cloudwatch:{kwargs['action']}"


def _stack_arn(account: str, region: str, name_or_id: str) -> str:
    """The resource AWS authorises a stack operation on: the stack's ARN (its id in moto).

    Unlike moto's own checks (resource `*`), this lets a policy's stack ARN pattern be tested.
    An unknown stack is `stack/NAME/*`, so the update layer still answers "does not exist".
    """
    if name_or_id.startswith("arn:"):
        return name_or_id
    try:
        return str(cloudformation_backends[account][region].get_stack(name_or_id).stack_id)
    except Exception:  # moto raises its ValidationError for a missing stack
        return f"arn:{get_partition(region)}:cloudformation:{region}:{account}:stack/{name_or_id}/*"


def _read_body(environ: Environ) -> bytes:
    """Read the body and put it back, so moto can read it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _scope(environ: Environ, default_region: str) -> tuple[str, str, str]:
    """(access key, region, service) from the SigV4 Authorization header."""
    match = _SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None:
        return "AKIAEXAMPLE", default_region, "unknown"
    return match.group(1), match.group(2), match.group(3)


def _action(environ: Environ, body: bytes) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return str(target).rsplit(".", 1)[-1]
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(body.decode("utf-8", "replace")):
            if key == "Action":
                return value
    return str(environ.get("REQUEST_METHOD", ""))  # REST services (S3): the HTTP method


def _account(access_key: str) -> str:
    # moto's own rule: an explicit account, else the one the access key belongs to.
    return (
        os.environ.get("MOTO_ACCOUNT_ID") or get_account_id_from(access_key) or DEFAULT_ACCOUNT_ID
    )


def _error(
    start_response: StartResponse, service: str, status: int, code: str, message: str
) -> Iterable[bytes]:
    request_id = str(uuid.uuid4())
    kind = "Sender" if status < 500 else "Receiver"
    if service in _QUERY_SERVICES:
        xml = (
            f'<ErrorResponse xmlns="{_CFN_NS}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return _respond(start_response, status, "text/xml", xml.encode())
    if service == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return _respond(start_response, status, "text/xml", xml.encode())
    if service == "s3":
        xml = (
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return _respond(start_response, status, "application/xml", xml.encode())
    payload = json.dumps({"__type": code, "message": message}).encode()
    return _respond(start_response, status, "application/x-amz-json-1.1", payload)


def _respond(
    start_response: StartResponse, status: int, content_type: str, body: bytes
) -> Iterable[bytes]:
    reasons = {
        200: "OK",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        500: "Internal Server Error",
    }
    reason = reasons.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [body]

"""The embedded AWS: moto's server in a thread, behind the CloudFormation update layer.

Rules of this file:
- One `Emulator` runs at a time per process: moto keeps its state in module globals, so
  `start()` resets it and two emulators would share it.
- Clients reach it over HTTP only (`endpoint_url`), as the daemon reaches AWS; helpers here
  use boto3 the same way, except where a test must reach behind the API (`set_stack_status`).
- Nothing here sleeps on a timer: waits poll a condition against a deadline.
- IAM is enforced only after `enforce_iam()`, and only until `stop()`: moto's switch is a
  module global, so stop() puts it back for whatever runs next in the process.
- Change sets are the emulator's own (`changesets.py`): `start()` forgets them with moto's
  state, and a stack deleted through `delete_stack` takes its change sets with it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from moto import settings as moto_settings
from moto.cloudformation.models import cloudformation_backends
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from reconciler.embedded import cfn, changesets, faults, paging, wsgi

TEMPLATE = "biglearn-stack.json"
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
ADMIN_USER = "emulator-admin"  # the emulator's own identity once IAM is enforced
_ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
_SETTLED_POLL = 0.02  # seconds between polls of a stack's status: cheap in-process calls


def template_body(name: str = TEMPLATE) -> str:
    """A template shipped in `reconciler/templates/`."""
    return (pathlib.Path(__file__).resolve().parent.parent / "templates" / name).read_text("utf-8")


class Emulator:
    """An in-process AWS endpoint whose CloudFormation updates behave like AWS's."""

    def __init__(
        self,
        region: str = "us-east-1",
        update_seconds: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        change_set_seconds: float = 0.0,
        change_set_page_size: int = 100,
    ) -> None:
        self.region = region
        self.update_seconds = update_seconds  # how long an update stays *_IN_PROGRESS
        # How long a change set takes to create (CREATE_PENDING, then CREATE_IN_PROGRESS):
        # 0 completes it at once; more makes a caller show that it polls.
        self.change_set_seconds = change_set_seconds
        # Changes per DescribeChangeSet page (AWS publishes none): small to test paging.
        self.change_set_page_size = change_set_page_size
        self.account_id = DEFAULT_ACCOUNT_ID
        self.faults = faults.Faults(seed)
        self._host, self._port = host, port
        self._stopping = threading.Event()
        self.updates = cfn.StackUpdates(lambda: self.update_seconds, self._stopping)
        self._change_sets = changesets.ChangeSets(
            lambda: self.change_set_seconds, lambda: self.change_set_page_size
        )
        self._clients: dict[tuple[str, int, str], Any] = {}
        self._clients_lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: wsgi.Middleware | None = None
        self._credentials = dict(_CREDENTIALS)
        self._auth_before: tuple[float, int] | None = None  # moto's switch before enforce_iam

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> Emulator:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        paging.install()
        app = wsgi.Middleware(
            DomainDispatcherApplication(create_backend_app),
            self.updates,
            self.faults,
            self.region,
            self._change_sets,
        )
        self._app = app
        self._stopping.clear()
        self._server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            # A short poll interval: stop() waits for it, and tests stop an emulator each.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-server",
            daemon=True,
        )
        self._thread.start()
        self._reset_moto()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.updates.join(timeout=5.0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = self._thread = None
        if self._auth_before is not None:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = (
                self._auth_before
            )
            self._auth_before = None
        with self._clients_lock:
            self._credentials = dict(_CREDENTIALS)
            self._clients.clear()

    def enforce_iam(self) -> dict[str, str]:
        """From now on every request is checked against its caller's IAM policies.

        Call it after setup: the stacks, images, buckets and the users under test are made
        with the default keys, which belong to no IAM user and are refused from now on. The
        emulator's own clients (and so a MigrationWorker built after this call) switch to
        the keys of `ADMIN_USER`, made here with every right, so only the callers under test
        are limited. Returns those keys. moto checks the calls it answers; the WSGI layer
        checks UpdateStack, CancelUpdateStack, ContinueUpdateRollback and the change-set
        calls (CreateChangeSet, DescribeChangeSet, DeleteChangeSet, ListChangeSets,
        GetTemplate) the same way, on the stack's ARN.
        """
        iam = self.client("iam")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER, PolicyName="all", PolicyDocument=json.dumps(_ALLOW_ALL)
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        admin = {
            "aws_access_key_id": str(key["AccessKeyId"]),
            "aws_secret_access_key": str(key["SecretAccessKey"]),
        }
        with self._clients_lock:
            self._credentials = admin
            self._clients.clear()
        # In-process, as moto's set_initial_no_auth_action_count does outside server mode:
        # threshold 0 with the counter reset means "check from the next request on".
        with self.updates.lock:
            if self._auth_before is None:
                self._auth_before = (
                    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT,
                    ActionAuthenticatorMixin.request_count,
                )
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0.0
            ActionAuthenticatorMixin.request_count = 0
        return admin

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def requests(self) -> dict[tuple[str, str], int]:
        """Requests served so far by (service, action), from every client of the endpoint."""
        return dict(self._app.requests) if self._app is not None else {}

    def _reset_moto(self) -> None:
        with self.updates.lock:
            moto_api_backend.reset()
            self._change_sets.clear()

    # --- clients and helpers ----------------------------------------------------------

    def client(self, service: str, attempts: int = 3) -> Any:
        """A boto3 client for this endpoint; `attempts=1` to see each fault as it comes.

        Clients are cached (building one costs ~50 ms; they are thread-safe).
        """
        key = (service, attempts, self.endpoint_url)
        with self._clients_lock:
            if key not in self._clients:
                self._clients[key] = self._new_client(service, attempts)
            return self._clients[key]

    def _new_client(self, service: str, attempts: int) -> Any:
        config = Config(
            # total_max_attempts counts the first try; botocore's max_attempts does not.
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=5,
            read_timeout=30,
        )
        factory: Any = boto3.client  # the service is chosen at run time: no stub applies
        return factory(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            config=config,
            **self._credentials,
        )

    def register_image(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        created: dt.datetime | None = None,
    ) -> str:
        """An EC2 image that exists, for templates and specs to point at; with `tags`, and
        with `created` as its CreationDate (a bake that finished then; default now)."""
        ec2 = self.client("ec2")
        image = str(ec2.register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"])
        if tags:
            ec2.create_tags(
                Resources=[image], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
        if created is not None:
            # RegisterImage takes no date: AWS stamps it. The emulator's image is given it.
            ami = ec2_backends[self.account_id][self.region].amis[image]
            ami.creation_date = created.astimezone(dt.UTC)
        return image

    def ensure_bucket(self, name: str) -> None:
        s3 = self.client("s3")
        try:
            s3.head_bucket(Bucket=name)
        except s3.exceptions.ClientError:
            s3.create_bucket(Bucket=name)

    def create_stack(
        self, stack_name: str, parameters: Mapping[str, str], template: str | None = None
    ) -> str:
        """Create a stack, from the shipped template or any other body (JSON or YAML); its
        id, once CREATE_COMPLETE."""
        answer = self.client("cloudformation").create_stack(
            StackName=stack_name,
            TemplateBody=template if template is not None else template_body(),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
        self.wait_settled(stack_name)
        return str(answer["StackId"])

    def delete_stack(self, stack_name: str) -> None:
        with self.updates.lock:
            stack = self._stack(stack_name)
            self.updates.forget(stack)
            cloudformation_backends[self.account_id][self.region].delete_stack(stack.stack_id)

    def change_sets(self, stack_name: str) -> list[str]:
        """Names of the stack's change sets that exist (any status), oldest first."""
        with self.updates.lock:
            return self._change_sets.names(self._stack(stack_name))

    # --- fault injection and test controls --------------------------------------------

    def fail_next_update(self, stack_name: str, reason: str = cfn.DEFAULT_FAILURE) -> None:
        """The stack's next update rolls back, with `reason` on UPDATE_ROLLBACK_IN_PROGRESS."""
        self.updates.fail_next(stack_name, reason)

    def set_change_set_seconds(self, seconds: float) -> None:
        """Change sets created from now on take `seconds` to complete (0: at once)."""
        self.change_set_seconds = seconds

    def set_stack_status(self, stack_name: str, status: str, reason: str | None = None) -> None:
        """Force a status (e.g. UPDATE_ROLLBACK_FAILED); stops an update in progress."""
        self.updates.set_status(self._stack(stack_name), status, reason)

    def put_alarm(self, name: str, state: str = "OK") -> str:
        """A CloudWatch metric alarm in `state`, as rollout.alarms names them; its ARN."""
        cloudwatch = self.client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            MetricName="HTTPCode_Backend_5XX",
            Namespace="AWS/ELB",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        self.set_alarm_state(name, state)
        found = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return str(found[0]["AlarmArn"])

    def set_alarm_state(self, name: str, state: str, reason: str = "set by the emulator") -> None:
        """Move an alarm to OK, ALARM or INSUFFICIENT_DATA (moto evaluates no metrics). An
        update whose rollback triggers include it rolls back before this returns."""
        self.client("cloudwatch").set_alarm_state(
            AlarmName=name, StateValue=state, StateReason=reason
        )

    def stack_status(self, stack_name: str) -> str:
        """The status as the emulator holds it, read past the fault layer: a test or the
        demo watching a stack must not be throttled by the faults it injects for the daemon."""
        with self.updates.lock:
            return str(self._stack(stack_name).status)

    def live_parameters(self, stack_name: str) -> dict[str, str]:
        """The stack's parameters as describe_stacks shows them, past the fault layer."""
        with self.updates.lock:
            return cfn.live_parameters(self._stack(stack_name))

    def wait_settled(self, stack_name: str, timeout: float | None = None) -> str:
        """Poll until the stack is in no *_IN_PROGRESS state; that status."""
        limit = timeout if timeout is not None else 10.0 + 3 * self.update_seconds
        return wait_for(
            lambda: _settled(self.stack_status(stack_name)),
            timeout=limit,
            what=f"stack {stack_name} to settle",
        )

    def _stack(self, stack_name: str) -> Any:
        return cloudformation_backends[self.account_id][self.region].get_stack(stack_name)


def _settled(status: str) -> str | None:
    return None if status.endswith("_IN_PROGRESS") else status


T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, poll: float = _SETTLED_POLL
) -> T:
    """Poll `condition` until it returns something other than None; TimeoutError after."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)

"""The parts `reconciler run` and the one-shot commands (`plan`, `apply`) build alike from
settings: the AWS clients, the retry policy and the git source.

Rules of this file: construction only; no I/O happens here (clients and the source connect
when first used), so both callers stay in charge of when work starts.
"""

from __future__ import annotations

from reconciler import aws, metrics, planner, settings, source


def clients(conf: settings.Settings, counted: metrics.Metrics) -> aws.Clients:
    """One counted, rate-limited client cache for every AWS call of this process; `counted`
    counts every request and shows the rate budgets at every scrape."""
    built = aws.Clients(
        conf.aws.endpoint_url,
        counted.aws_request,
        conf.aws.max_attempts,
        conf.aws.rate,
        conf.aws.burst,
    )
    counted.watch_budgets(built.budgets)
    return built


def policy(conf: settings.Settings) -> planner.Policy:
    return planner.Policy(conf.scheduling.backoff_base, conf.scheduling.backoff_cap)


def git_source(conf: settings.Settings) -> source.GitSource:
    """The spec repository, cached under the state dir, with the signature policy asked for."""
    return source.GitSource(
        conf.git.url,
        conf.git.branch,
        conf.git.path,
        conf.state_dir / "git",
        signatures=signature_policy(conf.git),
    )


def signature_policy(git: settings.GitSettings) -> source.SignaturePolicy | None:
    """The policy the settings ask for; None when signatures are not verified."""
    if not git.verify_signatures:
        return None
    return source.SignaturePolicy.of(git.gpg_home, git.allowed_keys)

"""--verify-signatures: a commit not signed by an allowed key is not deployed.

Real GnuPG keys made in the test: the allowed key A, another key B (its public key is in
the daemon's keyring too, so only the pin refuses it). Commits are signed with
`git -c gpg.program=gpg -c user.signingkey=FPR commit -S`, as a developer signs them.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from reconciler import assemble, cli, daemon, source
from reconciler.embedded import Emulator
from tests.faults.daemonkit import (
    DaemonWorld,
    create_stacks,
    make_settings,
    spec_yaml,
    wait_until,
)
from tests.faults.gpgkit import Keyring
from tests.integration.gitrepo import GitRepo

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")

FILE = "deploy-specs/app.yaml"


class Signing:
    """The developer's keyring (both secret keys) and the daemon's (public keys only)."""

    def __init__(self) -> None:
        self.developer = Keyring()
        self.allowed = self.developer.generate("Allowed <allowed@example.invalid>")
        self.other = self.developer.generate("Other <other@example.invalid>")
        self.stranger = self.developer.generate("Stranger <stranger@example.invalid>")
        self.daemon = Keyring()
        self.daemon.import_keys(self.developer.export(self.allowed))
        self.daemon.import_keys(self.developer.export(self.other))

    def policy(self) -> source.SignaturePolicy:
        return source.SignaturePolicy.of(self.daemon.home, [self.allowed])

    def commit(self, repo: GitRepo, text: str, key: str | None) -> str:
        """Commit `text` to FILE, signed by `key` (None: unsigned); the sha."""
        repo.write(FILE, text)
        repo.git("add", "--", FILE)
        if key is None:
            repo.git("commit", "-q", "-m", "unsigned")
        else:
            # The developer's keyring signs (GNUPGHOME set by the `developer_keyring` fixture).
            repo.git("-c", "gpg.program=gpg", "-c", f"user.signingkey={key}", "commit", "-q",
                     "-S", "-m", f"signed by {key[-8:]}")  # fmt: skip
        return repo.head()

    def close(self) -> None:
        self.developer.close()
        self.daemon.close()


@pytest.fixture(scope="module")
def signing() -> Iterator[Signing]:
    s = Signing()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def developer_keyring(signing: Signing, monkeypatch: pytest.MonkeyPatch) -> None:
    """git commit -S signs from the developer's keyring; the daemon's git is given its own."""
    monkeypatch.setenv("GNUPGHOME", str(signing.developer.home))


def spec_text(image: str) -> str:
    return spec_yaml("app", "Stack1", image)


def test_only_the_head_signed_by_an_allowed_key_is_read(
    signing: Signing, tmp_path: pathlib.Path
) -> None:
    """Unsigned, signed by a key in the keyring but not allowed, and signed by a key not in
    the keyring: each head is refused with why, the last trusted commit stays read; a new
    head signed by the allowed key is read (with the changes of the refused ones)."""
    repo = GitRepo(tmp_path / "repo")
    trusted = signing.commit(repo, spec_text("ami-11111111"), signing.allowed)
    src = source.GitSource(
        str(repo.path), "main", "deploy-specs", tmp_path / "cache", signatures=signing.policy()
    )
    first = src.poll()
    assert (first.head, first.unverified) == (trusted, None)
    refusals = {
        None: "has no signature",
        signing.other: "which is not an allowed key",
        signing.stranger: "cannot be checked (its key is not in the keyring)",
    }
    for key, why in refusals.items():
        head = signing.commit(repo, spec_text(f"ami-{len(why):08d}"), key)
        snap = src.poll()
        assert snap.head == trusted and snap.files[0].text == first.files[0].text
        assert snap.unverified is not None
        assert f"commit {head[:12]} on main is not deployed" in snap.unverified
        assert why in snap.unverified and f"reading {trusted[:12]}" in snap.unverified
    fixed = signing.commit(repo, spec_text("ami-22222222"), signing.allowed)
    snap = src.poll()
    assert (snap.head, snap.unverified) == (fixed, None)
    assert b"ami-22222222" in snap.files[0].text


def test_a_restarted_source_with_an_untrusted_head_reads_the_newest_trusted_commit(
    signing: Signing, tmp_path: pathlib.Path
) -> None:
    """A fresh start (empty cache) finds the newest signed commit behind an unsigned head;
    with no trusted commit at all, the poll fails (the daemon keeps what it has)."""
    repo = GitRepo(tmp_path / "repo")
    unsigned_root = signing.commit(repo, spec_text("ami-00000000"), None)
    lonely = source.GitSource(
        str(repo.path), "main", "deploy-specs", tmp_path / "c1", signatures=signing.policy()
    )
    with pytest.raises(source.GitError, match=f"commit {unsigned_root[:12]} .* none of the"):
        lonely.poll()
    trusted = signing.commit(repo, spec_text("ami-11111111"), signing.allowed)
    signing.commit(repo, spec_text("ami-33333333"), None)
    src = source.GitSource(
        str(repo.path), "main", "deploy-specs", tmp_path / "c2", signatures=signing.policy()
    )
    snap = src.poll()
    assert snap.head == trusted and b"ami-11111111" in snap.files[0].text


def test_verify_signatures_without_a_keyring_or_a_key_is_a_usage_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Verifying against nothing would trust nothing: exit 2 with what is missing; a short
    or malformed fingerprint is refused the same way."""
    base = ["plan", "--state-dir", str(tmp_path), "--verify-signatures"]
    assert cli.main(base) == 2
    assert "needs a keyring and at least one key" in capsys.readouterr().err
    assert cli.main([*base, "--gpg-home", str(tmp_path), "--allowed-keys", "ABCD1234"]) == 2
    assert "is not a full key fingerprint" in capsys.readouterr().err


def test_the_options_come_from_flags_or_the_environment(tmp_path: pathlib.Path) -> None:
    """RECONCILER_VERIFY_SIGNATURES, _GPG_HOME and _ALLOWED_KEYS configure the same policy."""
    fpr = "0123456789ABCDEF0123456789ABCDEF01234567"
    env = {
        "RECONCILER_VERIFY_SIGNATURES": "true",
        "RECONCILER_GPG_HOME": str(tmp_path),
        "RECONCILER_ALLOWED_KEYS": f"{fpr.lower()}, {'F' * 40}",
    }
    conf = cli.load_settings(cli.build_parser().parse_args(["plan"]), env)
    policy = assemble.signature_policy(conf.git)
    assert policy is not None
    assert policy.fingerprints == {fpr, "F" * 40} and policy.gpg_home == tmp_path.resolve()


def test_the_daemon_keeps_the_trusted_revision_and_counts_an_untrusted_head_once(
    signing: Signing, tmp_path: pathlib.Path
) -> None:
    """A running daemon with --verify-signatures: an unsigned head is not deployed (the spec
    keeps the trusted revision and image), one error line and one count of
    reconciler_git_unverified_commits_total per refused head, however often it polls."""
    with Emulator(update_seconds=0.2) as emu:
        image = emu.register_image("biglearn-v1")
        create_stacks(emu, image, "Stack1")
        repo = GitRepo(tmp_path / "repo")
        trusted = signing.commit(repo, spec_text(image), signing.allowed)
        conf = make_settings(
            tmp_path / "state",
            repo.path,
            emu.endpoint_url,
            verify_signatures=True,
            gpg_home=signing.daemon.home,
            allowed_keys=(signing.allowed,),
        )
        d = daemon.Daemon(conf)
        d.start()
        try:
            w = DaemonWorld(emu, repo, image, d)
            wait_until(lambda: d.engine.status("app"), 20, "app managed")
            untrusted = signing.commit(repo, spec_text("ami-99999999"), signing.other)
            with capture_logs() as entries:
                for _ in range(3):
                    d.poll_git()
            w.wait_reconciled("app")
            status = w.status("app")
        finally:
            d.stop()
    assert status["revision"] == trusted and status["desired"]["image"] == image
    assert w.sample("reconciler_git_unverified_commits_total") == 1
    (line,) = [e for e in entries if e["event"] == "untrusted commit not deployed"]
    assert line["log_level"] == "error" and untrusted[:12] in line["error"]
    assert w.sample("reconciler_git_fetch_total", result="ok") >= 4  # the source answered


def test_commit_direct_under_verify_signatures_is_refused_at_start(
    signing: Signing, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon cannot sign its bump commits: a spec with `imagePolicy.commit: direct`
    stops `run` before it starts, exit 2 and one line naming the file; the state dir is
    free again."""
    direct = "  imagePolicy:\n    ssm: {parameter: /images/app}\n    commit: direct\n"
    repo = GitRepo(tmp_path / "repo")
    signing.commit(repo, spec_text("ami-12345678") + direct, signing.allowed)
    conf = make_settings(
        tmp_path / "state",
        repo.path,
        "http://127.0.0.1:9",  # never asked: nothing starts
        verify_signatures=True,
        gpg_home=signing.daemon.home,
        allowed_keys=(signing.allowed,),
    )

    checked = daemon.Daemon(conf)
    refusal = checked.refusal()
    checked.close_unstarted()
    assert refusal is not None  # (else `run` below would start and never return)

    assert daemon.run(conf) == 2

    (line,) = capsys.readouterr().err.splitlines()
    assert line == refusal
    assert line.startswith(f"{FILE}: spec.imagePolicy.commit: direct cannot be used with")
    assert "--verify-signatures" in line
    daemon.Daemon(conf).close_unstarted()  # the lock was let go again

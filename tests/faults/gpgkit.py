"""Real GnuPG keys for the signed-commit tests, each in its own short-lived GNUPGHOME.

Rules of this file:
- Homes live in short /tmp paths: gpg-agent's socket path must fit in 108 bytes, which
  pytest's tmp_path names do not always.
- Keys are ed25519, no passphrase, generated in the test; nothing touches ~/.gnupg.
- Every agent started here is killed when the keyring is closed.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile


class Keyring:
    """A GNUPGHOME directory and the gpg commands the tests need in it."""

    def __init__(self) -> None:
        self.home = pathlib.Path(tempfile.mkdtemp(prefix="gpg-"))
        self.home.chmod(0o700)

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def gpg(self, *args: str, stdin: bytes = b"") -> bytes:
        done = subprocess.run(
            ["gpg", "--batch", "--yes", *args],
            input=stdin,
            capture_output=True,
            env=self.env(),
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)}: {done.stderr.decode()}")
        return done.stdout

    def generate(self, uid: str) -> str:
        """A new signing key; its fingerprint."""
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        out = self.gpg("--with-colons", "--list-secret-keys", uid).decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def export(self, fingerprint: str) -> bytes:
        return self.gpg("--export", fingerprint)

    def import_keys(self, data: bytes) -> None:
        self.gpg("--import", stdin=data)

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"], env=self.env(), check=False, capture_output=True
        )
        shutil.rmtree(self.home, ignore_errors=True)

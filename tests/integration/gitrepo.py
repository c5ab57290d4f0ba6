"""A real local git repository for tests: spec files committed on `main`, as a merge would.

Rules of this file:
- git runs as a subprocess with an argument list; identity and signing come from `-c`
  flags, so neither the host's nor the user's git configuration matters.
- Only what the tests need: write a file, commit it, remove it, read the head.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_IDENTITY = (
    "-c",
    "user.name=Reconciler Tests",
    "-c",
    "user.email=tests@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
)


class GitRepo:
    """A working repository at `path` on branch `main`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main", str(path))

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LC_ALL": "C",
        }
        result = subprocess.run(
            ["git", *_IDENTITY, "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def write(self, relpath: str, text: str) -> Path:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        """Write `files` (path -> text), commit everything staged, return the commit sha."""
        for relpath, text in (files or {}).items():
            self.write(relpath, text)
            self.git("add", "--", relpath)
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def remove(self, relpath: str, message: str) -> str:
        self.git("rm", "--quiet", "--", relpath)
        self.git("commit", "--quiet", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

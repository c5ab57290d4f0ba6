"""The catalog: which specs are managed, given what git holds now (CONTRACT.md section 1).

Rules of this file:
- A file that fails validation is reported (file, line, field, message) and changes nothing:
  its stack keeps being reconciled against the last accepted version of that file, marked
  `stale`. A file refused by the source (symlink, too large) counts as an invalid version.
- A file removed from git stops being managed at once, even if its last version was invalid.
- Two files claiming one `metadata.name` are both errors. The file that held the name before
  keeps it with its last accepted version; a newcomer gets nothing (when neither held it,
  neither is managed). A file that lost a name it newly claimed falls back to its own last
  accepted version, if that does not collide in turn.
- A file that is invalid (or refused) with no accepted version here, as in every fresh
  catalog (each `apply`, each daemon start), falls back on its history: the source's older
  versions, newest first; the first that parses is managed, stale, with the revision of the
  commit that made it. That lookup is done once per (file, blob) (per file while refused),
  not on every poll; a git failure during it is not remembered, so the next poll tries again.
- Parsing is cached by (file, blob): an unchanged file is not parsed again.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections import defaultdict
from collections.abc import Iterable

import structlog

from reconciler import spec
from reconciler.source import (
    SPEC_SUFFIXES,
    GitError,
    OlderVersions,
    Snapshot,
    SpecFile,
    blob_sha,
)

log = structlog.get_logger("reconciler.catalog")

LOCAL_REVISION = "local"

_Parsed = spec.StackDeployment | list[spec.SpecError]
_REFUSED = ""  # the history key's blob for a file the source refused (its blob is not read)


@dataclasses.dataclass(frozen=True)
class LoadedSpec:
    deployment: spec.StackDeployment
    file: str
    revision: str
    stale: bool  # True when the file's newest version is invalid and this is the last valid one


class Catalog:
    """The managed specs by name, updated from successive snapshots of the git source.

    `older_versions` replaces the snapshot's own history lookup (tests use it without git).
    """

    def __init__(self, older_versions: OlderVersions | None = None) -> None:
        self._accepted: dict[str, LoadedSpec] = {}  # by file; names are unique among them
        self._parsed: dict[tuple[str, str], _Parsed] = {}
        self._recovered: dict[tuple[str, str], LoadedSpec | None] = {}  # history lookups
        self._older_versions = older_versions
        self._errors: tuple[spec.SpecError, ...] = ()

    @property
    def specs(self) -> dict[str, LoadedSpec]:
        return {loaded.deployment.name: loaded for loaded in self._accepted.values()}

    @property
    def errors(self) -> tuple[spec.SpecError, ...]:
        return self._errors

    def update(self, snapshot: Snapshot) -> None:
        older = self._older_versions or snapshot.older_versions
        errors: dict[spec.SpecError, None] = dict.fromkeys(snapshot.errors)
        proposals: dict[str, LoadedSpec | None] = {}
        keys: set[tuple[str, str]] = set()  # the (file, blob) of every version seen now
        for file in snapshot.files:
            keys.add((file.path, file.blob))
            parsed = self._parse(file)
            if isinstance(parsed, list):
                errors.update(dict.fromkeys(parsed))
                proposals[file.path] = self._invalid_fallback(file.path, file.blob, older)
            else:
                proposals[file.path] = LoadedSpec(parsed, file.path, file.revision, stale=False)
        for refusal in snapshot.errors:
            keys.add((refusal.file, _REFUSED))
            proposals[refusal.file] = self._invalid_fallback(refusal.file, _REFUSED, older)
        errors.update(dict.fromkeys(self._settle_duplicates(proposals)))
        self._accepted = {path: p for path, p in proposals.items() if p is not None}
        self._parsed = {k: v for k, v in self._parsed.items() if k in keys}
        self._recovered = {k: v for k, v in self._recovered.items() if k in keys}
        self._errors = tuple(sorted(errors, key=lambda e: (e.file, e.line, e.field, e.message)))

    def _parse(self, file: SpecFile) -> _Parsed:
        key = (file.path, file.blob)
        if key not in self._parsed:
            self._parsed[key] = _parse(file)
        return self._parsed[key]

    def _invalid_fallback(self, path: str, blob: str, older: OlderVersions) -> LoadedSpec | None:
        """For an invalid version: the last accepted one, else the newest valid in history."""
        fallback = self._fallback(path)
        if fallback is not None:
            return fallback
        key = (path, blob)
        if key not in self._recovered:
            try:
                self._recovered[key] = _newest_valid(path, older)
            except GitError as exc:
                # No spec name to bind: the file's newest version did not give one.
                log.warning("cannot read older versions", file=path, error=str(exc))
                return None  # not remembered: the next poll asks again
        return self._recovered[key]

    def _fallback(self, path: str) -> LoadedSpec | None:
        """The last accepted version of `path`, now stale, if there is one."""
        previous = self._accepted.get(path)
        return dataclasses.replace(previous, stale=True) if previous else None

    def _settle_duplicates(self, proposals: dict[str, LoadedSpec | None]) -> list[spec.SpecError]:
        """Resolve name collisions in place; return an error for every file in one.

        Each round moves a losing file from its new version to its fallback, or to nothing,
        and the previous holder of a name never loses it: so it ends within len+1 rounds.
        """
        errors: list[spec.SpecError] = []
        holders = {loaded.deployment.name: path for path, loaded in self._accepted.items()}
        for _ in range(len(proposals) + 1):
            collisions = _collisions(proposals)
            if not collisions:
                break
            for name, paths in collisions.items():
                errors += spec.check_unique({p: _deployment(proposals[p]) for p in paths})
                for path in paths:
                    proposals[path] = self._loser_fallback(path, name, holders.get(name))
        return errors

    def _loser_fallback(self, path: str, name: str, holder: str | None) -> LoadedSpec | None:
        fallback = self._fallback(path)
        if path == holder or (fallback is not None and fallback.deployment.name != name):
            return fallback
        return None


def _parse(file: SpecFile) -> _Parsed:
    try:
        return spec.parse(file.text, file.path)
    except spec.SpecInvalid as exc:
        return list(exc.errors)


def _newest_valid(path: str, older: OlderVersions) -> LoadedSpec | None:
    """The first of `path`'s older versions (newest first) that parses, as stale."""
    for version in older(path):
        parsed = _parse(version)
        if not isinstance(parsed, list):
            return LoadedSpec(parsed, path, version.revision, stale=True)
    return None


def _deployment(loaded: LoadedSpec | None) -> spec.StackDeployment:
    assert loaded is not None  # only files with a proposal collide
    return loaded.deployment


def _collisions(proposals: dict[str, LoadedSpec | None]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path, loaded in sorted(proposals.items()):
        if loaded is not None:
            by_name[loaded.deployment.name].append(path)
    return {name: paths for name, paths in by_name.items() if len(paths) > 1}


def load_paths(
    paths: Iterable[pathlib.Path],
) -> tuple[dict[str, LoadedSpec], list[spec.SpecError]]:
    """Specs from local files or directories (for `reconciler validate`), revision "local".

    The same rules as from git; with no previous state, a duplicate name is managed by none.
    """
    files: list[SpecFile] = []
    refusals: list[spec.SpecError] = []
    for path in paths:
        for file in _spec_files(path):
            loaded = _read_local(file)
            if isinstance(loaded, spec.SpecError):
                refusals.append(loaded)
            else:
                files.append(loaded)
    catalog = Catalog()
    catalog.update(Snapshot(LOCAL_REVISION, tuple(files), tuple(refusals), fetched=False))
    return catalog.specs, list(catalog.errors)


def _spec_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and not p.is_dir())
        return sorted(found)
    # A file named explicitly is checked whatever its suffix: the user asked for it.
    return [path]


def _read_local(path: pathlib.Path) -> SpecFile | spec.SpecError:
    name = str(path)
    try:
        if path.stat().st_size > spec.MAX_SPEC_BYTES:
            return spec.SpecError(name, 1, "", f"file is larger than {spec.MAX_SPEC_BYTES} bytes")
        text = path.read_bytes()
    except OSError as exc:
        return spec.SpecError(name, 1, "", f"cannot read: {exc.strerror or exc}")
    return SpecFile(name, text, blob_sha(text), LOCAL_REVISION)


@dataclasses.dataclass(frozen=True)
class LoadedFleet:
    deployment: spec.FleetDeployment
    file: str
    revision: str
    stale: bool
    removed: bool = False

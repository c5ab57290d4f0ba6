"""The catalog: which specs and fleets are managed, given what git holds now (CONTRACT.md
section 1; fleets: docs/contract.md). A file holds one document of either kind.

Rules of this file:
- A file that fails validation is reported (file, line, field, message) and changes nothing:
  its stack keeps being reconciled against the last accepted version of that file, marked
  `stale`. A file refused by the source (symlink, too large) counts as an invalid version.
- A spec file removed from git stops being managed at once, even if its last version was
  invalid. A fleet no file holds any more (its file removed, renamed to another fleet or
  turned into a spec) stays in force, `removed` and stale, until the engine calls
  `drop_fleet` (once its members are in sync): dropping it at once would release every
  member together. A file that holds its name again takes over from it.
- Two files claiming one `metadata.name` of one kind are both errors (specs and fleets have a
  namespace each). The file that held the name before keeps it with its last accepted
  version; a newcomer gets nothing (when neither held it, neither is managed). A file that
  lost a name it newly claimed falls back to its own last accepted version, if that does not
  collide in turn.
- A spec selected by two fleets is an error on each of those fleet files. The fleet that held
  the spec before keeps it; every other one whose newest version is new here (changed since
  it was accepted, or never accepted) falls back as an invalid one does (its last accepted
  version, else history, else nothing). When none of them can, the spec's labels made the
  overlap: the spec's version is refused instead, with an error on its file, and it falls
  back the same way. So no member is
  released, or moved to another fleet, by a bad commit. A fleet that is `removed` takes part
  in no overlap: a present fleet that selects its members takes them.
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
from typing import NamedTuple

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

_Parsed = spec.Document | list[spec.SpecError]
_REFUSED = ""  # the history key's blob for a file the source refused (its blob is not read)


@dataclasses.dataclass(frozen=True)
class LoadedSpec:
    deployment: spec.StackDeployment
    file: str
    revision: str
    stale: bool  # True when the file's newest version is invalid and this is the last valid one


@dataclasses.dataclass(frozen=True)
class LoadedFleet:
    deployment: spec.FleetDeployment
    file: str
    revision: str
    stale: bool  # True when this is not the newest version of the file (invalid, or removed)
    removed: bool  # no file holds this fleet any more; in force until Catalog.drop_fleet


_Loaded = LoadedSpec | LoadedFleet


class LoadedPaths(NamedTuple):
    """What `load_paths` found: the specs and fleets by name, and every error."""

    specs: dict[str, LoadedSpec]
    fleets: dict[str, LoadedFleet]
    errors: list[spec.SpecError]


class Catalog:
    """The managed specs and fleets by name, updated from successive snapshots of git.

    `older_versions` replaces the snapshot's own history lookup (tests use it without git).
    """

    def __init__(self, older_versions: OlderVersions | None = None) -> None:
        # by file; names are unique per kind among them
        self._accepted: dict[str, _Loaded] = {}
        self._retired: dict[str, LoadedFleet] = {}  # removed fleets by name, until dropped
        self._holders: dict[str, str] = {}  # spec name -> the fleet it was a member of
        self._parsed: dict[tuple[str, str], _Parsed] = {}
        self._recovered: dict[tuple[str, str], _Loaded | None] = {}  # history lookups
        self._older_versions = older_versions
        self._errors: tuple[spec.SpecError, ...] = ()

    @property
    def specs(self) -> dict[str, LoadedSpec]:
        return {
            loaded.deployment.name: loaded
            for loaded in self._accepted.values()
            if isinstance(loaded, LoadedSpec)
        }

    @property
    def fleets(self) -> dict[str, LoadedFleet]:
        """The fleets in force by name: those files hold, and the removed ones not dropped."""
        return self._retired | {
            loaded.deployment.name: loaded
            for loaded in self._accepted.values()
            if isinstance(loaded, LoadedFleet)
        }

    @property
    def errors(self) -> tuple[spec.SpecError, ...]:
        return self._errors

    def drop_fleet(self, name: str) -> bool:
        """Stop enforcing the removed fleet `name`; False (and nothing done) when no removed
        fleet has that name, e.g. because a file holds it again."""
        return self._retired.pop(name, None) is not None

    def update(self, snapshot: Snapshot) -> None:
        older = self._older_versions or snapshot.older_versions
        errors: dict[spec.SpecError, None] = dict.fromkeys(snapshot.errors)
        proposals: dict[str, _Loaded | None] = {}
        heads: dict[str, str] = {}  # path -> the blob of its newest version (history's key)
        keys: set[tuple[str, str]] = set()  # the (file, blob) of every version seen now
        for file in snapshot.files:
            keys.add((file.path, file.blob))
            heads[file.path] = file.blob
            parsed = self._parse(file)
            if isinstance(parsed, list):
                errors.update(dict.fromkeys(parsed))
                proposals[file.path] = self._invalid_fallback(file.path, file.blob, older)
            else:
                proposals[file.path] = _loaded(parsed, file.path, file.revision, stale=False)
        for refusal in snapshot.errors:
            keys.add((refusal.file, _REFUSED))
            heads[refusal.file] = _REFUSED
            proposals[refusal.file] = self._invalid_fallback(refusal.file, _REFUSED, older)
        newest = {path for path, p in proposals.items() if p is not None and not p.stale}
        errors.update(dict.fromkeys(self._settle(proposals, newest, heads, older)))
        accepted = {path: p for path, p in proposals.items() if p is not None}
        self._retired = self._retire(accepted)
        self._accepted = accepted
        self._holders = {s: f for s, (f, _) in memberships(self.fleets, self.specs).items()}
        self._parsed = {k: v for k, v in self._parsed.items() if k in keys}
        self._recovered = {k: v for k, v in self._recovered.items() if k in keys}
        self._errors = tuple(sorted(errors, key=lambda e: (e.file, e.line, e.field, e.message)))

    def _parse(self, file: SpecFile) -> _Parsed:
        key = (file.path, file.blob)
        if key not in self._parsed:
            self._parsed[key] = _parse(file)
        return self._parsed[key]

    def _invalid_fallback(self, path: str, blob: str, older: OlderVersions) -> _Loaded | None:
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

    def _fallback(self, path: str) -> _Loaded | None:
        """The last accepted version of `path`, now stale, if there is one."""
        previous = self._accepted.get(path)
        if isinstance(previous, LoadedFleet):
            return dataclasses.replace(previous, stale=True, removed=False)
        return dataclasses.replace(previous, stale=True) if previous else None

    def _settle(
        self,
        proposals: dict[str, _Loaded | None],
        newest: set[str],
        heads: dict[str, str],
        older: OlderVersions,
    ) -> list[spec.SpecError]:
        """Resolve name collisions and fleet overlaps in place; return their errors.

        Every round moves at least one file down from its newest version to its fallback, or
        from there to nothing, and never back up: so it ends within 2 * len + 1 rounds.
        `newest` holds the files still at their newest version.
        """
        errors: list[spec.SpecError] = []
        for _ in range(2 * len(proposals) + 1):
            errors += self._settle_duplicates(proposals)
            newest &= {path for path, p in proposals.items() if p is not None and not p.stale}
            overlap = _first_overlap(proposals)
            if overlap is None:
                break
            errors += self._settle_overlap(overlap, proposals, newest, heads, older)
        return errors

    def _settle_duplicates(self, proposals: dict[str, _Loaded | None]) -> list[spec.SpecError]:
        """Resolve name collisions in place; return an error for every file in one.

        Each round moves a losing file from its new version to its fallback, or to nothing,
        and the previous holder of a name never loses it: so it ends within len+1 rounds.
        """
        errors: list[spec.SpecError] = []
        holders = {_claim(loaded): path for path, loaded in self._accepted.items()}
        for _ in range(len(proposals) + 1):
            collisions = _collisions(proposals)
            if not collisions:
                break
            for claim, paths in collisions.items():
                errors += spec.check_unique({p: _deployment(proposals[p]) for p in paths})
                for path in paths:
                    proposals[path] = self._loser_fallback(path, claim, holders.get(claim))
        return errors

    def _loser_fallback(
        self, path: str, claim: tuple[str, str], holder: str | None
    ) -> _Loaded | None:
        fallback = self._fallback(path)
        if path == holder or (fallback is not None and _claim(fallback) != claim):
            return fallback
        return None

    def _settle_overlap(
        self,
        overlap: tuple[LoadedSpec, list[LoadedFleet]],
        proposals: dict[str, _Loaded | None],
        newest: set[str],
        heads: dict[str, str],
        older: OlderVersions,
    ) -> list[spec.SpecError]:
        """Move the newer claimants of one spec in two or more fleets, or else the spec, down
        to their fallback; return the errors that say so."""
        member, fleets = overlap
        errors = [_overlap_error(fleet, member, fleets) for fleet in fleets]
        holder = self._holders.get(member.deployment.name)
        claimants = [
            f.file
            for f in fleets
            if f.deployment.name != holder and f.file in newest and self._is_new(f)
        ]
        if not claimants:  # the fleets are where they were: the spec's labels are new
            errors.append(_refused_member(member, fleets))
            claimants = [member.file]
        for path in claimants:
            if path in newest:
                proposals[path] = self._invalid_fallback(path, heads[path], older)
                newest.discard(path)
            else:
                proposals[path] = None
        return errors

    def _is_new(self, loaded: _Loaded) -> bool:
        """Whether `loaded` is another version of its file than the one accepted before."""
        previous = self._accepted.get(loaded.file)
        return previous is None or previous.deployment != loaded.deployment

    def _retire(self, accepted: dict[str, _Loaded]) -> dict[str, LoadedFleet]:
        """The fleets in force before that no file holds now, marked removed."""
        held = {p.deployment.name for p in accepted.values() if isinstance(p, LoadedFleet)}
        before = self.fleets
        return {
            name: dataclasses.replace(fleet, stale=True, removed=True)
            for name, fleet in before.items()
            if name not in held
        }


def memberships(
    fleets: dict[str, LoadedFleet], specs: dict[str, LoadedSpec]
) -> dict[str, tuple[str, int]]:
    """Spec name -> (the name of its fleet, the 0-based index of its step in that fleet), for
    every spec a fleet selects; `FleetSpec.step_of` gives the step.

    The catalog's fleets select each spec at most once, except that a removed fleet may still
    select a spec a present one selects: the present one has it. Two present fleets selecting
    one spec (not from a catalog) are settled by name, so the answer is always the same.
    """
    found: dict[str, tuple[str, int]] = {}
    for name, selecting in _selecting(fleets, specs).items():
        fleet = min(selecting, key=lambda f: (f.removed, f.deployment.name))
        labels = specs[name].deployment.metadata.labels
        found[name] = (fleet.deployment.name, fleet.deployment.spec.step_of(labels))
    return found


def _selecting(
    fleets: dict[str, LoadedFleet], specs: dict[str, LoadedSpec]
) -> dict[str, list[LoadedFleet]]:
    """Spec name -> the fleets that select it (by fleet name), for specs in any fleet."""
    found: dict[str, list[LoadedFleet]] = {}
    for spec_name, loaded in sorted(specs.items()):
        labels = loaded.deployment.metadata.labels
        selecting = [f for _, f in sorted(fleets.items()) if f.deployment.spec.selects(labels)]
        if selecting:
            found[spec_name] = selecting
    return found


def _first_overlap(
    proposals: dict[str, _Loaded | None],
) -> tuple[LoadedSpec, list[LoadedFleet]] | None:
    """The first spec (by name) that two or more proposed fleets select, with those fleets."""
    specs = {p.deployment.name: p for p in proposals.values() if isinstance(p, LoadedSpec)}
    fleets = {p.deployment.name: p for p in proposals.values() if isinstance(p, LoadedFleet)}
    for name, selecting in _selecting(fleets, specs).items():
        if len(selecting) > 1:
            return specs[name], selecting
    return None


def _others(fleets: list[LoadedFleet], but: LoadedFleet | None = None) -> str:
    named = [f"{f.deployment.name} ({f.file})" for f in fleets if f is not but]
    return ", ".join(named[:-1]) + " and " + named[-1] if len(named) > 1 else named[0]


def _overlap_error(
    fleet: LoadedFleet, member: LoadedSpec, fleets: list[LoadedFleet]
) -> spec.SpecError:
    others = [f for f in fleets if f is not fleet]
    which = "fleet" if len(others) == 1 else "fleets"
    also = "also selects" if len(others) == 1 else "also select"
    return spec.SpecError(
        fleet.file,
        1,
        "spec.selector",
        f"selects {member.deployment.name} ({member.file}), which {which} {_others(others)} {also}",
    )


def _refused_member(member: LoadedSpec, fleets: list[LoadedFleet]) -> spec.SpecError:
    return spec.SpecError(
        member.file,
        1,
        "metadata.labels",
        f"fleets {_others(fleets)} all select this spec, and a spec may be in one fleet: "
        "its last version in one fleet stays in force",
    )


def _parse(file: SpecFile) -> _Parsed:
    try:
        return spec.parse_document(file.text, file.path)
    except spec.SpecInvalid as exc:
        return list(exc.errors)


def _loaded(document: spec.Document, path: str, revision: str, stale: bool) -> _Loaded:
    if isinstance(document, spec.FleetDeployment):
        return LoadedFleet(document, path, revision, stale=stale, removed=False)
    return LoadedSpec(document, path, revision, stale=stale)


def _newest_valid(path: str, older: OlderVersions) -> _Loaded | None:
    """The first of `path`'s older versions (newest first) that parses, as stale."""
    for version in older(path):
        parsed = _parse(version)
        if not isinstance(parsed, list):
            return _loaded(parsed, path, version.revision, stale=True)
    return None


def _claim(loaded: _Loaded) -> tuple[str, str]:
    """The name a document claims, in its kind's namespace."""
    return (loaded.deployment.kind, loaded.deployment.name)


def _deployment(loaded: _Loaded | None) -> spec.Document:
    assert loaded is not None  # only files with a proposal collide
    return loaded.deployment


def _collisions(proposals: dict[str, _Loaded | None]) -> dict[tuple[str, str], list[str]]:
    by_claim: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, loaded in sorted(proposals.items()):
        if loaded is not None:
            by_claim[_claim(loaded)].append(path)
    return {claim: paths for claim, paths in by_claim.items() if len(paths) > 1}


def load_paths(paths: Iterable[pathlib.Path]) -> LoadedPaths:
    """Specs and fleets from local files or directories (for `reconciler validate`), revision
    "local". The same rules as from git; with no previous state, a duplicate name is managed
    by none, and two fleets that select one spec are both refused.
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
    return LoadedPaths(catalog.specs, catalog.fleets, list(catalog.errors))


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

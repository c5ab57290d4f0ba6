"""Catalog rules from snapshots: stale fallbacks (also from history), removals, duplicate
names, local loading; fleets: their fallbacks, removal, and a spec in two fleets."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import structlog

from reconciler import spec
from reconciler.catalog import Catalog, LoadedFleet, LoadedSpec, load_paths, memberships
from reconciler.source import GitError, Snapshot, SpecFile, blob_sha

AMI_A = "ami-37884c4d"
AMI_B = "ami-0123456789abcdef0"


def text(name: str, image: str = AMI_A) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: StackDeployment\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  stackName: S\n  region: us-east-1\n  image: {image}\n"
    )


def snap(files: dict[str, tuple[str, str]], refused: tuple[str, ...] = ()) -> Snapshot:
    """A snapshot of {path: (text, revision)}; `refused` paths as the source refuses them."""
    specs = tuple(
        SpecFile(path, body.encode(), blob_sha(body.encode()), rev)
        for path, (body, rev) in files.items()
    )
    errors = tuple(spec.SpecError(p, 1, "", "a symlink is not read as a spec") for p in refused)
    return Snapshot("head", specs, errors, fetched=True)


def managed(catalog: Catalog) -> dict[str, tuple[str, str, bool]]:
    return {n: (s.file, s.revision, s.stale) for n, s in catalog.specs.items()}


def test_valid_files_are_managed_by_name_with_their_revision() -> None:
    """Every valid file is managed under its metadata.name, not stale, no errors."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a"), "r1"), "b.yaml": (text("b"), "r2")}))
    assert managed(catalog) == {"a": ("a.yaml", "r1", False), "b": ("b.yaml", "r2", False)}
    assert catalog.errors == ()


def test_invalid_new_file_is_reported_and_not_managed() -> None:
    """A file invalid from its first version: error with file, line and field; not managed."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a") + "  colour: red\n", "r1")}))
    assert catalog.specs == {}
    (error,) = catalog.errors
    assert (error.file, error.line, error.field) == ("a.yaml", 9, "spec.colour")


def test_invalid_newer_version_keeps_the_last_valid_one_stale() -> None:
    """A broken version changes nothing: the last valid version stays, marked stale."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a"), "r1")}))
    catalog.update(snap({"a.yaml": (text("a", "ami-nope"), "r2")}))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}
    assert catalog.specs["a"].deployment.spec.image == AMI_A
    assert [(e.file, e.line, e.field) for e in catalog.errors] == [("a.yaml", 8, "spec.image")]


def test_fixed_version_clears_stale_and_errors() -> None:
    """Once the file is valid again its new version is managed and the error is gone."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a"), "r1")}))
    catalog.update(snap({"a.yaml": ("{", "r2")}))
    catalog.update(snap({"a.yaml": (text("a", AMI_B), "r3")}))
    assert managed(catalog) == {"a": ("a.yaml", "r3", False)}
    assert catalog.errors == ()


def test_refused_file_keeps_the_last_valid_version() -> None:
    """A file the source refused (e.g. became a symlink) counts as an invalid version."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a"), "r1")}))
    catalog.update(snap({}, refused=("a.yaml",)))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}
    assert [e.file for e in catalog.errors] == ["a.yaml"]


def test_removed_file_stops_being_managed_even_when_stale() -> None:
    """A file gone from git is dropped, whether its last version was valid or not."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("a"), "r1"), "b.yaml": (text("b"), "r1")}))
    catalog.update(snap({"a.yaml": ("{", "r2"), "b.yaml": (text("b"), "r1")}))
    catalog.update(snap({"b.yaml": (text("b"), "r1")}))
    assert managed(catalog) == {"b": ("b.yaml", "r1", False)}
    assert catalog.errors == ()


def test_duplicate_names_in_new_files_manage_neither() -> None:
    """Two files claim one name with no history: both are errors and neither is managed."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("x"), "r1"), "b.yaml": (text("x"), "r1")}))
    assert catalog.specs == {}
    assert {(e.file, e.field) for e in catalog.errors} == {
        ("a.yaml", "metadata.name"),
        ("b.yaml", "metadata.name"),
    }


def test_duplicate_name_keeps_the_previous_holder() -> None:
    """A newcomer claiming a managed name: both errors; the holder keeps its last version."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("x"), "r1")}))
    catalog.update(snap({"a.yaml": (text("x", AMI_B), "r2"), "b.yaml": (text("x"), "r2")}))
    assert managed(catalog) == {"x": ("a.yaml", "r1", True)}
    assert catalog.specs["x"].deployment.spec.image == AMI_A
    assert {e.file for e in catalog.errors} == {"a.yaml", "b.yaml"}


def test_renaming_onto_a_taken_name_keeps_the_old_name() -> None:
    """A file renamed onto a held name falls back to its last valid version (old name)."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("x"), "r1"), "b.yaml": (text("y"), "r1")}))
    catalog.update(snap({"a.yaml": (text("x"), "r1"), "b.yaml": (text("x"), "r2")}))
    assert managed(catalog) == {"x": ("a.yaml", "r1", True), "y": ("b.yaml", "r1", True)}


def test_fallback_that_collides_again_is_settled() -> None:
    """b renames onto a's name and c takes b's old name: holders keep theirs, c is refused."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("x"), "r1"), "b.yaml": (text("y"), "r1")}))
    catalog.update(
        snap(
            {
                "a.yaml": (text("x"), "r1"),
                "b.yaml": (text("x"), "r2"),
                "c.yaml": (text("y"), "r2"),
            }
        )
    )
    assert managed(catalog) == {"x": ("a.yaml", "r1", True), "y": ("b.yaml", "r1", True)}
    assert {e.file for e in catalog.errors} == {"a.yaml", "b.yaml", "c.yaml"}


def test_duplicate_resolved_by_removing_one_file() -> None:
    """Once the newcomer is removed, the holder is fresh again and no error remains."""
    catalog = Catalog()
    catalog.update(snap({"a.yaml": (text("x"), "r1")}))
    catalog.update(snap({"a.yaml": (text("x"), "r1"), "b.yaml": (text("x"), "r2")}))
    catalog.update(snap({"a.yaml": (text("x"), "r1")}))
    assert managed(catalog) == {"x": ("a.yaml", "r1", False)}
    assert catalog.errors == ()


def test_load_paths_reads_files_and_directories(tmp_path: pathlib.Path) -> None:
    """Directories are searched for *.yaml/*.yml; revision is "local"; errors carry paths."""
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.yaml").write_text(text("a"))
    (tmp_path / "d" / "sub" / "b.yml").write_text(text("b"))
    (tmp_path / "d" / "notes.txt").write_text("not a spec")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text("c", "ami-bad"))
    specs, fleets, errors = load_paths([tmp_path / "d", bad, tmp_path / "missing.yaml"])
    assert sorted(specs) == ["a", "b"] and fleets == {}
    assert {s.revision for s in specs.values()} == {"local"}
    assert [(e.file, e.line, e.field) for e in errors] == [
        (str(bad), 8, "spec.image"),
        (str(tmp_path / "missing.yaml"), 1, ""),
    ]


def test_load_paths_refuses_a_huge_file_and_reports_duplicates(tmp_path: pathlib.Path) -> None:
    """Size is checked before reading; two local files with one name are both errors."""
    (tmp_path / "huge.yaml").write_text("#" * (spec.MAX_SPEC_BYTES + 1))
    (tmp_path / "x1.yaml").write_text(text("x"))
    (tmp_path / "x2.yaml").write_text(text("x"))
    specs, _, errors = load_paths([tmp_path])
    assert specs == {}
    assert sorted(pathlib.Path(e.file).name for e in errors) == ["huge.yaml", "x1.yaml", "x2.yaml"]


# -- falling back on history (a fresh catalog: each `apply`, each daemon start) --------------


class History:
    """An injected `older_versions`: {path: [(text, revision), ...] newest first}; counts calls."""

    def __init__(self, versions: dict[str, list[tuple[str, str]]]) -> None:
        self.versions = versions
        self.calls: list[str] = []
        self.read = 0  # versions handed out: the lookup should stop at the first valid one

    def __call__(self, path: str) -> Iterator[SpecFile]:
        self.calls.append(path)
        for body, rev in self.versions.get(path, []):
            self.read += 1
            yield SpecFile(path, body.encode(), blob_sha(body.encode()), rev)


def test_broken_head_falls_back_on_the_newest_valid_older_version() -> None:
    """No accepted version yet: older versions newest first, a broken one skipped, the first
    that parses is managed, stale, with the revision that made it; the head is still an error
    and versions older than the one taken are not read."""
    history = History(
        {"a.yaml": [("{", "r3"), (text("a", AMI_B), "r2"), (text("a"), "r1")]},
    )
    catalog = Catalog(older_versions=history)
    catalog.update(snap({"a.yaml": (text("a") + "  colour: red\n", "r4")}))
    assert managed(catalog) == {"a": ("a.yaml", "r2", True)}
    assert catalog.specs["a"].deployment.spec.image == AMI_B
    assert [(e.file, e.line, e.field) for e in catalog.errors] == [("a.yaml", 9, "spec.colour")]
    assert history.read == 2


def test_broken_head_with_no_valid_version_ever_is_not_managed() -> None:
    """Every older version is broken too: the file is reported and nothing is managed."""
    catalog = Catalog(older_versions=History({"a.yaml": [("{", "r2"), ("[", "r1")]}))
    catalog.update(snap({"a.yaml": (text("a", "ami-nope"), "r3")}))
    assert catalog.specs == {}
    assert [(e.file, e.field) for e in catalog.errors] == [("a.yaml", "spec.image")]


def test_history_is_looked_up_once_per_file_and_blob_not_every_poll() -> None:
    """Polls with the same broken blob reuse the first lookup, found or not; a new broken
    blob of a file with nothing to fall back on asks again."""
    history = History({"a.yaml": [("{", "r1")]})
    catalog = Catalog(older_versions=history)
    for _ in range(3):
        catalog.update(snap({"a.yaml": ("{ broken", "r2")}))
    assert history.calls == ["a.yaml"] and catalog.specs == {}
    catalog.update(snap({"a.yaml": ("{ broken again", "r3")}))
    assert history.calls == ["a.yaml", "a.yaml"]


def test_a_recovered_version_is_kept_without_asking_again() -> None:
    """Once a version came from history it is the last accepted one: later polls, and a
    newer broken blob, keep it without another lookup."""
    history = History({"a.yaml": [(text("a"), "r1")]})
    catalog = Catalog(older_versions=history)
    catalog.update(snap({"a.yaml": ("{", "r2")}))
    catalog.update(snap({"a.yaml": ("{", "r2")}))
    catalog.update(snap({"a.yaml": ("[", "r3")}))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}
    assert history.calls == ["a.yaml"]


def test_a_refused_head_falls_back_on_history_too() -> None:
    """A file the source refused (e.g. now a symlink) looks back like an invalid one."""
    catalog = Catalog(older_versions=History({"a.yaml": [(text("a"), "r1")]}))
    catalog.update(snap({}, refused=("a.yaml",)))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}
    assert [e.file for e in catalog.errors] == ["a.yaml"]


def test_a_git_failure_during_the_lookup_is_retried_on_the_next_poll() -> None:
    """A failed lookup is not remembered as "no valid version": the next poll asks again."""
    calls: list[str] = []

    def flaky(path: str) -> Iterator[SpecFile]:
        calls.append(path)
        if len(calls) == 1:
            raise GitError("git log timed out after 60s")
        body = text("a").encode()
        yield SpecFile(path, body, blob_sha(body), "r1")

    catalog = Catalog(older_versions=flaky)
    with structlog.testing.capture_logs() as lines:
        catalog.update(snap({"a.yaml": ("{", "r2")}))
    assert catalog.specs == {}
    assert lines == [
        {
            "event": "cannot read older versions",
            "file": "a.yaml",
            "error": "git log timed out after 60s",
            "log_level": "warning",
        }
    ]
    catalog.update(snap({"a.yaml": ("{", "r2")}))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}


def test_without_injection_the_snapshot_history_is_used() -> None:
    """A Catalog() made by the CLI or the daemon asks the snapshot's own older_versions."""
    broken = snap({"a.yaml": ("{", "r2")})
    history = History({"a.yaml": [(text("a"), "r1")]})
    catalog = Catalog()
    catalog.update(dataclasses.replace(broken, older_versions=history))
    assert managed(catalog) == {"a": ("a.yaml", "r1", True)}


# -- fleets (issue 13) ------------------------------------------------------------------------


def labelled(name: str, image: str = AMI_A, **labels: str) -> str:
    """A spec with `labels`."""
    body = "".join(f"    {k}: {v}\n" for k, v in labels.items())
    return text(name, image).replace(f"  name: {name}\n", f"  name: {name}\n  labels:\n{body}")


def fleet(name: str, steps: str = "", **select: str) -> str:
    """A fleet selecting `select` (app: api by default), with `steps` YAML appended."""
    match = ", ".join(f"{k}: {v}" for k, v in (select or {"app": "api"}).items())
    return (
        "apiVersion: reconciler/v1\nkind: Fleet\n"
        f"metadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{{match}}}\n{steps}"
    )


CANARY_FIRST = "  steps:\n    - matchLabels: {tier: canary}\n"


def fleets_of(catalog: Catalog) -> dict[str, tuple[str, str, bool, bool]]:
    return {n: (f.file, f.revision, f.stale, f.removed) for n, f in catalog.fleets.items()}


def members(catalog: Catalog) -> dict[str, tuple[str, int]]:
    return memberships(catalog.fleets, catalog.specs)


API = {
    "specs/api-1.yaml": (labelled("api-1", app="api", tier="canary"), "r1"),
    "specs/api-2.yaml": (labelled("api-2", app="api"), "r1"),
    "specs/web-1.yaml": (labelled("web-1", app="web"), "r1"),
}


def test_fleets_are_read_from_the_same_files_as_specs() -> None:
    """A Fleet document anywhere among the specs is a fleet, by its name; a fleet and a spec
    may share a name; memberships give each selected spec its fleet and step."""
    catalog = Catalog()
    files = API | {
        "fleets/api.yaml": (fleet("api", CANARY_FIRST), "r2"),
        "specs/api.yaml": (labelled("api", tier="canary"), "r2"),
    }
    catalog.update(snap(files))
    assert catalog.errors == ()
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r2", False, False)}
    assert sorted(catalog.specs) == ["api", "api-1", "api-2", "web-1"]
    assert members(catalog) == {"api-1": ("api", 0), "api-2": ("api", 1)}


def test_an_invalid_fleet_keeps_its_last_valid_version_stale() -> None:
    """A broken fleet file changes nothing: its last valid version stays, stale, reported."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api", CANARY_FIRST), "r1")}))
    broken = fleet("api", "  steps:\n    - maxConcurrent: 0\n")
    catalog.update(snap(API | {"fleets/api.yaml": (broken, "r2")}))
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r1", True, False)}
    assert members(catalog)["api-1"] == ("api", 0)
    assert [(e.file, e.line, e.field) for e in catalog.errors] == [
        ("fleets/api.yaml", 9, "spec.steps.0.maxConcurrent")
    ]


def test_a_broken_fleet_in_a_fresh_catalog_falls_back_on_history() -> None:
    """As for specs: no accepted version yet, the newest valid older version is in force."""
    history = History({"fleets/api.yaml": [("{", "r2"), (fleet("api", CANARY_FIRST), "r1")]})
    catalog = Catalog(older_versions=history)
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api") + "  colour: red\n", "r3")}))
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r1", True, False)}
    assert members(catalog) == {"api-1": ("api", 0), "api-2": ("api", 1)}


def test_a_removed_fleet_stays_in_force_until_dropped() -> None:
    """A fleet file removed from git keeps ordering its members, marked removed, through
    later polls, until drop_fleet; then it is gone and later polls do not bring it back."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api", CANARY_FIRST), "r1")}))
    catalog.update(snap(API))
    catalog.update(snap(API))
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r1", True, True)}
    assert members(catalog) == {"api-1": ("api", 0), "api-2": ("api", 1)}
    assert catalog.errors == ()
    assert catalog.drop_fleet("api") is True
    assert catalog.fleets == {} and members(catalog) == {}
    catalog.update(snap(API))
    assert catalog.fleets == {}
    assert catalog.drop_fleet("api") is False


def test_drop_fleet_leaves_a_fleet_a_file_holds() -> None:
    """drop_fleet only drops removed fleets: one back in git (or never gone) stays."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api"), "r1")}))
    catalog.update(snap(API))
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api", CANARY_FIRST), "r3")}))
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r3", False, False)}
    assert catalog.drop_fleet("api") is False
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r3", False, False)}


def test_a_fleet_whose_file_becomes_a_spec_or_another_fleet_is_removed() -> None:
    """A file that validly stops holding a fleet (now a spec, or a fleet of another name)
    leaves the old fleet in force as removed; a file that takes the name again ends that."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api"), "r1")}))
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api2", app="none"), "r2")}))
    assert fleets_of(catalog) == {
        "api": ("fleets/api.yaml", "r1", True, True),
        "api2": ("fleets/api.yaml", "r2", False, False),
    }
    catalog.update(snap(API | {"fleets/api.yaml": (text("x"), "r3")}))
    assert {n: f.removed for n, f in catalog.fleets.items()} == {"api": True, "api2": True}
    catalog.update(snap(API | {"fleets/other.yaml": (fleet("api"), "r4")}))
    assert fleets_of(catalog) == {
        "api": ("fleets/other.yaml", "r4", False, False),
        "api2": ("fleets/api.yaml", "r2", True, True),
    }


def test_a_present_fleet_takes_the_members_of_a_removed_one() -> None:
    """The removed fleet is on its way out: a fleet in git that selects its members has them,
    and no error is reported for the overlap."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api"), "r1")}))
    catalog.update(snap(API | {"fleets/all.yaml": (fleet("all", CANARY_FIRST), "r2")}))
    assert {n: f.removed for n, f in catalog.fleets.items()} == {"api": True, "all": False}
    assert members(catalog) == {"api-1": ("all", 0), "api-2": ("all", 1)}
    assert catalog.errors == ()


def test_two_fleet_files_with_one_name_keep_the_previous_holder() -> None:
    """Like specs: both files are errors, the previous holder keeps its last version."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/a.yaml": (fleet("api"), "r1")}))
    catalog.update(
        snap(API | {"fleets/a.yaml": (fleet("api"), "r1"), "fleets/b.yaml": (fleet("api"), "r2")})
    )
    assert fleets_of(catalog) == {"api": ("fleets/a.yaml", "r1", True, False)}
    assert {(e.file, e.field) for e in catalog.errors} == {
        ("fleets/a.yaml", "metadata.name"),
        ("fleets/b.yaml", "metadata.name"),
    }


def test_a_spec_in_two_fleets_is_an_error_and_the_holder_keeps_it() -> None:
    """A newer fleet selecting a member of another: an error on both fleet files naming the
    spec and both files; the newcomer, having no accepted version, is not in force, and
    the members stay where they were."""
    catalog = Catalog()
    catalog.update(snap(API | {"fleets/api.yaml": (fleet("api"), "r1")}))
    web = fleet("web", tier="canary")
    catalog.update(
        snap(API | {"fleets/api.yaml": (fleet("api"), "r1"), "fleets/web.yaml": (web, "r2")})
    )
    assert fleets_of(catalog) == {"api": ("fleets/api.yaml", "r1", False, False)}
    assert members(catalog) == {"api-1": ("api", 0), "api-2": ("api", 0)}
    assert [str(e) for e in catalog.errors] == [
        "fleets/api.yaml:1: spec.selector: selects api-1 (specs/api-1.yaml), which fleet web "
        "(fleets/web.yaml) also selects",
        "fleets/web.yaml:1: spec.selector: selects api-1 (specs/api-1.yaml), which fleet api "
        "(fleets/api.yaml) also selects",
    ]


def test_a_fleet_edited_to_overlap_falls_back_to_its_last_version() -> None:
    """The newer claimant had an accepted version: it keeps that one, stale; the holder's
    newest version (edited in the same commit) is in force."""
    catalog = Catalog()
    start = {
        "fleets/api.yaml": (fleet("api"), "r1"),
        "fleets/web.yaml": (fleet("web", app="web"), "r1"),
    }
    catalog.update(snap(API | start))
    edited = {
        "fleets/api.yaml": (fleet("api", CANARY_FIRST), "r2"),
        "fleets/web.yaml": (fleet("web", tier="canary"), "r2"),
    }
    catalog.update(snap(API | edited))
    assert fleets_of(catalog) == {
        "api": ("fleets/api.yaml", "r2", False, False),
        "web": ("fleets/web.yaml", "r1", True, False),
    }
    assert members(catalog) == {"api-1": ("api", 0), "api-2": ("api", 1), "web-1": ("web", 0)}
    assert {e.file for e in catalog.errors} == {"fleets/api.yaml", "fleets/web.yaml"}


def test_a_spec_whose_new_labels_put_it_in_two_fleets_keeps_its_last_version() -> None:
    """Neither fleet changed: the spec's labels made the overlap, so the spec's version is
    refused (an error on its file and on both fleets') and its last version stays in force,
    stale, in the fleet it was in."""
    catalog = Catalog()
    both = {
        "fleets/api.yaml": (fleet("api"), "r1"),
        "fleets/eu.yaml": (fleet("eu", region="eu"), "r1"),
    }
    catalog.update(snap(API | both))
    moved = {"specs/api-2.yaml": (labelled("api-2", AMI_B, app="api", region="eu"), "r2")}
    catalog.update(snap(API | both | moved))
    assert managed(catalog)["api-2"] == ("specs/api-2.yaml", "r1", True)
    assert catalog.specs["api-2"].deployment.spec.image == AMI_A
    assert members(catalog)["api-2"] == ("api", 0)
    assert fleets_of(catalog) == {
        "api": ("fleets/api.yaml", "r1", False, False),
        "eu": ("fleets/eu.yaml", "r1", False, False),
    }
    assert [(e.file, e.field) for e in catalog.errors] == [
        ("fleets/api.yaml", "spec.selector"),
        ("fleets/eu.yaml", "spec.selector"),
        ("specs/api-2.yaml", "metadata.labels"),
    ]
    assert "eu (fleets/eu.yaml)" in catalog.errors[2].message


def test_a_new_spec_in_two_fleets_is_not_managed() -> None:
    """A new spec both (unchanged) fleets select has no version to fall back on."""
    catalog = Catalog()
    both = {
        "fleets/api.yaml": (fleet("api"), "r1"),
        "fleets/eu.yaml": (fleet("eu", region="eu"), "r1"),
    }
    catalog.update(snap(API | both))
    new = {"specs/api-3.yaml": (labelled("api-3", app="api", region="eu"), "r2")}
    catalog.update(snap(API | both | new))
    assert "api-3" not in catalog.specs
    assert set(catalog.fleets) == {"api", "eu"}
    assert {e.file for e in catalog.errors} == {
        "fleets/api.yaml",
        "fleets/eu.yaml",
        "specs/api-3.yaml",
    }


def test_an_overlap_in_a_fresh_catalog_falls_back_on_history() -> None:
    """With no holder known (each apply, each start), every fleet in the overlap falls back
    as an invalid one would: on the newest valid older version, so members stay ordered."""
    history = History({"fleets/web.yaml": [(fleet("web", app="web"), "r1")]})
    catalog = Catalog(older_versions=history)
    files = API | {
        "fleets/api.yaml": (fleet("api"), "r1"),
        "fleets/web.yaml": (fleet("web", tier="canary"), "r2"),
    }
    catalog.update(snap(files))
    assert fleets_of(catalog) == {"web": ("fleets/web.yaml", "r1", True, False)}
    assert members(catalog) == {"web-1": ("web", 0)}
    assert {e.file for e in catalog.errors} == {"fleets/api.yaml", "fleets/web.yaml"}


def test_memberships_prefer_a_present_fleet_then_the_first_name() -> None:
    """Given fleets that overlap (not from a catalog), the answer is still one fleet per
    spec: a present fleet before a removed one, then by name."""
    deployment = spec.parse(labelled("s", app="api", tier="canary"), "s.yaml")
    specs = {"s": LoadedSpec(deployment, "s.yaml", "r", stale=False)}

    def loaded(name: str, removed: bool, **select: str) -> LoadedFleet:
        document = spec.parse_document(fleet(name, CANARY_FIRST, **select), f"{name}.yaml")
        assert isinstance(document, spec.FleetDeployment)
        return LoadedFleet(document, f"{name}.yaml", "r", stale=removed, removed=removed)

    gone = loaded("a", True)
    assert memberships({"a": gone, "b": loaded("b", False)}, specs) == {"s": ("b", 0)}
    assert memberships({"a": gone, "z": loaded("z", True)}, specs) == {"s": ("a", 0)}
    assert memberships({"c": loaded("c", False, app="web")}, specs) == {}


def test_load_paths_returns_fleets(tmp_path: pathlib.Path) -> None:
    """`reconciler validate` sees fleets too, with the same rules."""
    (tmp_path / "fleets").mkdir()
    (tmp_path / "api-1.yaml").write_text(labelled("api-1", app="api"))
    (tmp_path / "fleets" / "api.yml").write_text(fleet("api"))
    specs, fleets, errors = load_paths([tmp_path])
    assert (sorted(specs), sorted(fleets), errors) == (["api-1"], ["api"], [])
    assert fleets["api"].revision == "local" and not fleets["api"].stale

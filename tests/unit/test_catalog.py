"""Catalog rules from snapshots: stale fallbacks (also from history), removals, duplicate
names, local loading."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import structlog

from reconciler import spec
from reconciler.catalog import Catalog, load_paths
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
    specs, errors = load_paths([tmp_path / "d", bad, tmp_path / "missing.yaml"])
    assert sorted(specs) == ["a", "b"]
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
    specs, errors = load_paths([tmp_path])
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

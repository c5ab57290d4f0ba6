"""What `plan` shows: per spec, the step the daemon would take now, as rows and as text,
JSON or markdown (a pull-request comment; the body of a bump pull request).

Rules of this file:
- Reads only: a row comes from `Engine.preview`, which observes and plans but records and
  sends nothing; only `change_set=True` makes (and deletes) a change set.
- One row shape for every format, so the JSON a tool reads and the markdown a person reads
  never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from reconciler import catalog, engine, model, spec
from reconciler import status as view


def rows(
    eng: engine.Engine,
    specs: Iterable[catalog.LoadedSpec],
    fleets: dict[str, catalog.LoadedFleet],
    change_set: bool = False,
) -> list[dict[str, Any]]:
    """One row per spec, by name: what the daemon would do with it now."""
    out = []
    for loaded in sorted(specs, key=lambda s: s.deployment.name):
        observed, decision = eng.preview(loaded)
        row = _plan_row(loaded, observed, decision, fleets)
        row["guard"] = _plan_guard(eng, loaded, observed, decision, change_set)
        out.append(row)
    return out


def _plan_guard(
    eng: engine.Engine,
    loaded: catalog.LoadedSpec,
    observed: model.Observed,
    decision: model.Decision,
    change_set: bool,
) -> dict[str, Any] | None:
    """rollout.guard's verdict on the update the step would send: the known one, or with
    `--change-set` a change set made (and deleted) now."""
    update, sp = decision.update, loaded.deployment.spec
    if update is None or not update.guarded or observed.stack is None:
        return None
    if sp.rollout.guard == "off":
        return {"verdict": "off", "replaced": [], "refused": []}
    verdict = eng.verdict(sp, update, observed.stack, change_set)
    if isinstance(verdict, str):
        return {"verdict": "unknown", "error": verdict, "replaced": [], "refused": []}
    if verdict is None:
        return {"verdict": "unknown", "replaced": [], "refused": []}
    return {
        "verdict": "allowed" if verdict.ok else "refused",
        "replaced": [c.describe() for c in verdict.replaced()],
        "refused": [c.describe() for c in verdict.refused],
    }


def _guard_line(g: dict[str, Any]) -> str:
    if g["verdict"] == "unknown":
        why = f" ({g['error']})" if g.get("error") else ""
        return f"guard: verdict not known yet{why}; `plan --change-set` makes one"
    if g["verdict"] == "off":
        return "guard: off"
    if g["verdict"] == "refused":
        return "guard: REFUSED, would replace or remove " + "; ".join(g["refused"])
    replaced = "; ".join(g["replaced"]) or "nothing"
    return f"guard: allowed, replaces {replaced}"


def _fleet_and_step(
    loaded: catalog.LoadedSpec, fleets: dict[str, catalog.LoadedFleet]
) -> dict[str, Any]:
    """The spec's fleet and 1-based step, or None and None (the catalog refuses a spec in
    two fleets)."""
    labels = loaded.deployment.metadata.labels
    for name, fleet in sorted(fleets.items()):
        if fleet.deployment.spec.selects(labels):
            return {"fleet": name, "step": fleet.deployment.spec.step_of(labels) + 1}
    return {"fleet": None, "step": None}


def fleets(
    rows: list[dict[str, Any]], fleets: dict[str, catalog.LoadedFleet]
) -> list[dict[str, Any]]:
    """Per fleet with members out of sync: which of them move in which step, in order."""
    out = []
    for name, loaded in sorted(fleets.items()):
        fs = loaded.deployment.spec
        members = [r for r in rows if r["fleet"] == name]
        moving = [r for r in members if r["liveImage"] != r["desiredImage"]]
        if not moving:
            continue
        steps = []
        for step in sorted({r["step"] for r in moving}):
            size = sum(1 for r in members if r["step"] == step)
            steps.append(
                {
                    "step": step,
                    "label": _step_label(fs.step(step - 1), size),
                    "maxConcurrent": fs.step(step - 1).limit(size),
                    "members": [r["name"] for r in moving if r["step"] == step],
                }
            )
        out.append({"fleet": name, "steps": steps})
    return out


def _step_label(step: spec.FleetStep, size: int) -> str:
    """`canary`, `25%, max 1`: the step's labels, and its limit where it is not one."""
    parts = [",".join(step.match_labels.values())] if step.match_labels else []
    if isinstance(step.max_concurrent, str):
        parts.append(f"{step.max_concurrent}, max {step.limit(size)}")
    elif step.max_concurrent != 1:
        parts.append(f"max {step.max_concurrent}")
    return ", ".join(parts)


def _fleet_line(fleet: dict[str, Any], code: Callable[[str], str] = str) -> str:
    """`fleet api: step 1 (canary): api-eu-1; step 2 (25%, max 1): api-eu-2, api-us-1`."""
    steps = "; ".join(
        f"step {s['step']}" + (f" ({s['label']})" if s["label"] else "")
        + f": {', '.join(code(m) for m in s['members'])}"
        for s in fleet["steps"]
    )  # fmt: skip
    return f"fleet {code(fleet['fleet'])}: {steps}"


def _plan_row(
    loaded: catalog.LoadedSpec,
    observed: model.Observed,
    decision: model.Decision,
    fleets: dict[str, catalog.LoadedFleet],
) -> dict[str, Any]:
    sp = loaded.deployment.spec
    live = dict(observed.stack.parameters) if observed.stack else {}
    return {
        "name": loaded.deployment.name,
        "stackName": sp.stack_name,
        "revision": loaded.revision,
        "desiredImage": sp.image,
        "liveImage": live.get(sp.parameter_names.api_image),
        "stackStatus": observed.stack.status if observed.stack else None,
        "phase": str(decision.phase),
        "next": decision.message,
        "update": decision.update.changes if decision.update else None,
        "updateKind": decision.update.kind if decision.update else None,
        "drift": view.drift_json(observed.drift),
        **_fleet_and_step(loaded, fleets),
    }


def drift_line(drift: list[dict[str, str]] | None) -> str:
    """`Asg1.desiredCapacity: expected 1, live 3; ...`: a drift list of the JSON, for people."""
    return "; ".join(model.Drift(**d).describe() for d in drift or [])


def render(
    rows: list[dict[str, Any]], fleets: list[dict[str, Any]], errors: list[str], fmt: str
) -> str:
    if fmt == "json":
        document = {"stacks": rows, "fleets": fleets, "errors": errors}
        return json.dumps(document, indent=2)
    if fmt == "markdown":
        lines = [
            "| spec | stack | desired image | live image | phase | next step |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            guard = f"<br>{_md(_guard_line(r['guard']))}" if r.get("guard") else ""
            lines.append(
                f"| `{r['name']}` | {r['stackName']} | `{r['desiredImage']}` | "
                f"`{r['liveImage']}` | {r['phase']} | {_md(r['next'])}{guard} |"
            )
        lines += [
            f"\n:warning: `{r['name']}` drift: {_md(drift_line(r['drift']))}"
            for r in rows
            if r["drift"]
        ]
        lines += [f"\n{_fleet_line(f, lambda n: f'`{n}`')}" for f in fleets]
        lines += [f"\n:warning: `{e}`" for e in errors]
        return "\n".join(lines)
    lines = []
    for r in rows:
        lines.append(f"{r['name']} ({r['stackName']}): {r['liveImage']} -> {r['desiredImage']}")
        lines.append(f"  phase: {r['phase']}; next: {r['next']}")
        if r["fleet"]:
            lines.append(f"  fleet: {r['fleet']}, step {r['step']}")
        if r["drift"]:
            lines.append(f"  drift: {drift_line(r['drift'])}")
        if r["update"]:
            changes = ", ".join(f"{k}={v}" for k, v in sorted(r["update"].items()))
            lines.append(f"  would update ({r['updateKind']}): {changes}")
        if r.get("guard"):
            lines.append(f"  {_guard_line(r['guard'])}")
    lines += [_fleet_line(f) for f in fleets]
    lines += [f"error: {e}" for e in errors]
    return "\n".join(lines) or "no specs"


def _md(text: str) -> str:
    return text.replace("|", "\\|")

"""Engineers: model runs with their gate reports, promote and roll back (hot swap, no restart)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from serve.api.protocol import LiveOut, PromoteIn, RunList
from serve.api.security import engineer_only, services
from serve.auth import Principal
from serve.services import Services, jsonable
from specialist.errors import NotFound

router = APIRouter(prefix="/api/models", tags=["engineers"])


@router.get("/runs", response_model=RunList, summary="Model runs and gate reports")
def list_runs(who: Principal = Depends(engineer_only), svc: Services = Depends(services)) -> dict[str, Any]:
    """Every training run with its gate report, and the live record."""
    registry = svc.registry()
    runs = [_with_charts(jsonable(r)) for r in registry.list_runs()]
    return {"live": jsonable(registry.live(serving=False)), "runs": runs}


@router.post("/promote", response_model=LiveOut, summary="Promote a gated run")
def promote(
    body: PromoteIn, who: Principal = Depends(engineer_only), svc: Services = Depends(services)
) -> Any:
    """Make a run live (refused with the reason for a run that has not passed its gate)."""
    registry = svc.registry()
    with svc.model_swap_lock:
        registry.promote(body.run_id)
        try:
            name = svc.reload_model()
        except Exception:
            # The backend could not serve the new model: keep the registry saying what is really live.
            registry.rollback()
            raise
    return {"live": jsonable(registry.live(serving=False)), "model": name}


@router.post("/rollback", response_model=LiveOut, summary="Roll back to the previous live model")
def rollback(who: Principal = Depends(engineer_only), svc: Services = Depends(services)) -> Any:
    """Make the previously live model live again."""
    registry = svc.registry()
    with svc.model_swap_lock:
        registry.rollback()
        name = svc.reload_model()
    return {"live": jsonable(registry.live(serving=False)), "model": name}


@router.get(
    "/runs/{run_id}/files/{name}",
    summary="A file of a run (gate chart, loss curve, report)",
    response_class=FileResponse,
)
def run_file(
    run_id: str, name: str, who: Principal = Depends(engineer_only), svc: Services = Depends(services)
) -> FileResponse:
    """Serve a chart or report from the run's folder (plain names only)."""
    path = _run_file(Path(svc.settings.finetune.runs_dir), run_id, name)
    return FileResponse(path)


_SERVED = {".png", ".md", ".json", ".yaml", ".txt"}


def _run_file(runs_dir: Path, run_id: str, name: str) -> Path:
    for part in (run_id, name):
        if not part or "/" in part or "\\" in part or part.startswith("."):
            raise NotFound(f"no file {name!r} in run {run_id!r}")
    candidates = [runs_dir / run_id / name, runs_dir / run_id / "gate" / name]
    for path in candidates:
        if path.suffix in _SERVED and path.is_file():
            return path
    raise NotFound(f"no file {name!r} in run {run_id!r}")


def _with_charts(run: dict[str, Any]) -> dict[str, Any]:
    """Add the run's chart files and, from gate/gate.json, next-action accuracy per category."""
    folder = Path(str(run.pop("path", "")))
    run["charts"] = [p.name for p in (folder / "gate" / "gate.png", folder / "loss.png") if p.is_file()]
    gate = run.get("gate")
    report = folder / "gate" / "gate.json"
    if isinstance(gate, dict) and report.is_file():
        try:
            data = json.loads(report.read_text())
            base = data["base_report"]["per_category"]
            cand = data["candidate_report"]["per_category"]
            gate["per_category"] = {
                cat: {
                    "n": (cand.get(cat) or base.get(cat) or {}).get("n", 0),
                    "base": (base.get(cat) or {}).get("acc", 0.0),
                    "candidate": (cand.get(cat) or {}).get("acc", 0.0),
                }
                for cat in sorted(set(base) | set(cand))
            }
        except (ValueError, KeyError, TypeError):
            pass  # a report in another shape still shows its summary
    return run

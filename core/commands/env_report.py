"""The text form of the `segexplain check-env` report, for people.

Standard library only: the QGIS plugin runs `check-env --json` in the worker Python and
shows the report with this function, without importing what the report probes.
"""

from __future__ import annotations

from typing import Any

#: What the environment is, from the commands it can run (check_env.report's "role"):
#: every command; estimate from an ONNX model without torch; or not even that.
ROLES = ("full worker", "field worker: estimate only", "incomplete")


def format_report(rep: dict[str, Any]) -> str:
    """Format the report as a short table for people."""
    py = rep["python"]
    lines = [f"Python      {py['version']} ({py['executable']})",
             f"device      {rep['device']['summary']}"]
    for info in rep["packages"].values():
        state = (info["version"] if info["ok"] else info["error"] if info["version"]
                 else f"MISSING ({info['error']})")
        lines.append(f"{info['pip']:<28}{state}")
    ready = [c for c, ok in rep["commands"].items() if ok]
    lines.append("ready for   " + (", ".join(ready) if ready else "nothing"))
    role = rep.get("role", ROLES[2])
    lines.append(f"worker      {role}")
    for w in rep["warnings"]:
        lines.append(f"warning: {w}")
    if rep["install"] and role == ROLES[1]:
        lines.append("to make it a full worker (analyze, train, models without ONNX):")
        lines.extend(f"  {cmd}" for cmd in rep["install"])
    elif rep["install"]:
        lines.append("to install the missing packages:")
        lines.extend(f"  {cmd}" for cmd in rep["install"])
    else:
        lines.append("all worker packages are installed")
    return "\n".join(lines)

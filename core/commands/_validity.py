"""Text of the region-level figures for `estimate` and `info`."""

from __future__ import annotations

from typing import Any

from ..figures import format_number

#: column titles of the region methods
TITLES = {"mean_confidence": "mean conf", "atc": "ATC", "mlp2d": "2-D MLP",
          "full": "stronger", "gated": "gated"}


def _p(v: Any) -> str:
    return format_number(v, percent=True)


def region_lines(r: dict[str, Any] | None) -> list[str]:
    """Headline region estimate: IoU with its 90 % interval and the out-of-coverage share."""
    if not r:
        return []
    iv = r.get("interval90") or [None, None]
    out = []
    if r.get("iou") is None:
        out.append(f"region IoU estimate: none claimed: all {r.get('patches')} patches are out "
                   f"of the reference's coverage (novelty > {r.get('coverage_percentile')})")
    else:
        out.append(f"region IoU estimate {_p(r['iou'])} % (90 % interval {_p(iv[0])}-"
                   f"{_p(iv[1])}) from the {r.get('covered_patches')} of {r.get('patches')} "
                   "patches in the reference's coverage")
    out.append(f"out of coverage: {_p(r.get('out_of_coverage_share'))} % of patches (novelty > "
               f"{r.get('coverage_percentile')}): no per-patch estimate is claimed for them")
    methods = r.get("methods") or {}
    out.append("  by method: " + ", ".join(f"{TITLES.get(m, m)} {_p(v)}"
                                           for m, v in methods.items()))
    if r.get("real_iou") is not None:
        out.append(f"  real overall IoU {_p(r['real_iou'])} % (covered patches "
                   f"{_p(r.get('real_iou_covered'))} %); errors: " + ", ".join(
                       f"{TITLES.get(m, m)} {_p(e)}" for m, e in (r.get("errors") or {}).items()))
    return out


def baseline_lines(b: dict[str, Any] | None) -> list[str]:
    """Leave-one-region-out table: real IoU, each method's estimate (error) per unit, MAE."""
    if not b or not b.get("rows"):
        return []
    unit = b.get("unit", "region")
    methods = b.get("methods") or list(TITLES)
    width = {m: 24 if m == "gated" else 17 for m in methods}
    head = f"  {unit:<12} {'real':>6} " + " ".join(f"{TITLES.get(m, m):>{width[m]}}"
                                                  for m in methods)
    lines = [f"region IoU by leave-one-{unit}-out (estimate and error, IoU points; gated "
             "against its covered patches, coverage in brackets):", head]
    for row in b["rows"]:
        cells = []
        for m in methods:
            e = (row.get("estimates") or {}).get(m)
            err = (row.get("errors") or {}).get(m)
            cell = f"{_p(e)} ({'+' if (err or 0) >= 0 else ''}{_p(err)})"
            if m == "gated":
                cell += f" [{_p(row.get('covered_share'))}%]"
            cells.append(f"{cell:>{width[m]}}")
        lines.append(f"  {str(row.get(unit)):<12} {_p(row.get('real_iou')):>6} " + " ".join(cells))
    mae = b.get("mae") or {}
    lines.append(f"  {'MAE':<12} {'':>6} " + " ".join(f"{_p(mae.get(m)):>{width[m]}}"
                                                      for m in methods))
    return lines

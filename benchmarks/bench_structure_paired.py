"""Paired comparison of two ``bench_structure.py`` record files (a baseline and a candidate setting).

Per material present in both: kept / first-ranked / any-of-k / unrelaxed match (with the
materials gained and lost), e_above_hull MAE against MP, FIRE steps and relaxation wall time
summed over every relaxed template, share converged. Writes ``results/NAME.{json,md}``.

    python benchmarks/bench_structure_paired.py \\
        --base results/bench_structure_types_relaxed_dev_records.json \\
        --cand results/bench_structure_volinc_dev_records.json --name structure_volume_dev_paired
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, command_line
from gapforge.io import write_json, write_text

MATCHES = ("match", "match_top1", "match_any_topk", "match_unrelaxed")


def _records(path: Path) -> dict[str, dict]:
    return {r["material_id"]: r for r in json.loads(path.read_text())["records"]}


def _values(x: object) -> list:
    return list(x.values()) if isinstance(x, dict) else list(x or [])


def _total(recs: list[dict], key: str) -> float:
    return float(sum(v for r in recs for v in _values(r.get(key)) if v is not None))


def _ehull_mae(recs: list[dict]) -> float:
    err = [
        abs(max(r["e_above_hull_rebuilt"], 0.0) - r["e_above_hull_mp"])
        for r in recs
        if r.get("e_above_hull_rebuilt") is not None and r.get("e_above_hull_mp") is not None
    ]
    return float(np.mean(err)) if err else float("nan")


def compare(base: dict[str, dict], cand: dict[str, dict]) -> dict:
    ids = [i for i in cand if i in base]
    b, c = [base[i] for i in ids], [cand[i] for i in ids]
    out: dict = {"n": len(ids), "matches": {}}
    for key in MATCHES:
        bb = np.array([bool(r.get(key)) for r in b])
        cc = np.array([bool(r.get(key)) for r in c])
        out["matches"][key] = {
            "base": float(bb.mean()),
            "cand": float(cc.mean()),
            "gained": [ids[k] for k in np.flatnonzero(cc & ~bb)],
            "lost": [ids[k] for k in np.flatnonzero(bb & ~cc)],
        }
    out["e_above_hull_mae"] = {"base": _ehull_mae(b), "cand": _ehull_mae(c)}
    for key in ("steps_by_rank", "relax_times_s"):
        out[key] = {"base": _total(b, key), "cand": _total(c, key)}
    conv = [
        float(np.mean([v for r in recs for v in _values(r.get("converged_by_rank")) if v is not None]))
        for recs in (b, c)
    ]
    out["converged_share"] = {"base": conv[0], "cand": conv[1]}
    return out


def markdown(res: dict, base: Path, cand: Path) -> str:
    lines = [
        f"# Paired: {cand.name} against {base.name}",
        "",
        f"Command: `{res['command']}`. {res['n']} materials in both. Wall time depends on the load of "
        "each run; FIRE steps do not.",
        "",
        "| | base | candidate | gained / lost |",
        "|---|---|---|---|",
    ]
    for key, m in res["matches"].items():
        changed = f"+{len(m['gained'])} / -{len(m['lost'])}"
        lines.append(f"| {key} | {m['base']:.3f} | {m['cand']:.3f} | {changed} |")
    e = res["e_above_hull_mae"]
    lines.append(f"| e_above_hull MAE (eV/atom) | {e['base']:.4f} | {e['cand']:.4f} | |")
    for key in ("steps_by_rank", "relax_times_s", "converged_share"):
        v = res[key]
        lines.append(f"| {key} | {v['base']:.3f} | {v['cand']:.3f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--cand", type=Path, required=True)
    p.add_argument("--name", required=True, help="results/NAME.{json,md}")
    args = p.parse_args()
    res = {"command": command_line(), **compare(_records(args.base), _records(args.cand))}
    write_json(res, RESULTS / f"{args.name}.json")
    write_text(markdown(res, args.base, args.cand), RESULTS / f"{args.name}.md")
    print(markdown(res, args.base, args.cand))


if __name__ == "__main__":
    main()

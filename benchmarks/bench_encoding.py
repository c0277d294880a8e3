"""Encoding speed: formula strings -> one-hot matrices, and matrices -> formulas.

Run: GAPFORGE_DATA_PATH=../shared/data python benchmarks/bench_encoding.py [--n 1000000]

The 1,000,000 formulas are random formulas drawn the way a generator proposes
them (2-5 elements of the vocabulary, counts 1..8), so most are distinct: the
hard case for the per-distinct-string parsing step. A second run encodes the
29,121 encodable mp-bandgap formulas repeated to the same size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from _common import command_line, peak_rss_mb, publish, quoted_command
from gapforge.encoding import EncodedBatch, FormulaEncoder


def random_formulas(enc: FormulaEncoder, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, enc.n_elements), dtype=np.int16)
    k = rng.integers(2, 6, size=n)
    for j in range(5):
        rows = np.flatnonzero(k > j)
        counts[rows, rng.integers(0, enc.n_elements, size=len(rows))] = rng.integers(1, 9, size=len(rows))
    # write them as plain element-count strings (Li1F1 style, like the paper's files)
    els = np.array(enc.elements, dtype=object)
    r, c = np.nonzero(counts)
    tokens = els[c] + counts[r, c].astype(str).astype(object)
    starts = np.searchsorted(r, np.arange(n))
    return list(np.add.reduceat(tokens, starts))


@dataclass(frozen=True)
class RoundTrip:
    """One timed formulas -> one-hot -> formulas round trip."""

    batch: EncodedBatch
    decoded: list[str]
    encode_s: float
    onehot_s: float
    decode_s: float

    @property
    def seconds(self) -> tuple[float, float, float]:
        """``(encode_s, onehot_s, decode_s)``."""
        return self.encode_s, self.onehot_s, self.decode_s


def round_trip(enc: FormulaEncoder, formulas: Sequence[str] | np.ndarray) -> RoundTrip:
    """Time encoding ``formulas``, building their one-hot matrices and decoding those."""
    t0 = time.perf_counter()
    batch = enc.encode(formulas)
    t1 = time.perf_counter()
    mats = batch.matrices
    t2 = time.perf_counter()
    decoded = enc.decode(mats)
    t3 = time.perf_counter()
    return RoundTrip(batch, decoded, t1 - t0, t2 - t1, t3 - t2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    enc = FormulaEncoder()
    rows = []

    formulas = random_formulas(enc, args.n)
    rt = round_trip(enc, formulas)
    assert rt.decoded == list(rt.batch.reduced), "round trip failed"
    distinct = len(set(formulas))
    rows.append(("random generator-like formulas", args.n, distinct, *rt.seconds))

    try:
        from gapforge.data import load_dataset

        mp = load_dataset("mp-bandgap")
        ok = enc.encode(mp.formula.to_numpy())
        base = mp.formula.to_numpy()[ok.valid]
        rep = np.resize(base, args.n)
        rows.append(("mp-bandgap encodable, repeated", args.n, len(base), *round_trip(enc, rep).seconds))
    except Exception as exc:  # data not available
        print(f"skipping the mp-bandgap run: {exc}")

    payload = {
        "n": args.n,
        "runs": [
            {"case": c, "n": n, "distinct": d, "encode_s": e, "onehot_s": o, "decode_s": dd,
             "formulas_per_s_encode": n / e}
            for c, n, d, e, o, dd in rows
        ],
        "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip
    md = [
        "| case | formulas | distinct | encode (s) | one-hot (s) | decode (s) |",
        "|---|---|---|---|---|---|",
    ]
    md += [f"| {c} | {n:,} | {d:,} | {e:.1f} | {o:.1f} | {dd:.1f} |" for c, n, d, e, o, dd in rows]
    md.append(f"\npeak memory {payload['peak_rss_mb']:.0f} MB; command: {quoted_command(command_line())}")
    publish("encoding", payload, md)


if __name__ == "__main__":
    main()

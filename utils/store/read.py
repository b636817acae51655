"""Reading a finished store: ids + memory-mapped vectors, vectors looked up by id (checked as they are read),
and :meth:`StoreRead.verify`, the on-demand check of every file and block."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np

from .base import IncompleteStoreError, StoreIntegrityError, StoreMismatchError
from .files import CHECKSUM, check_npy, checksum, file_digest, load_npy_bytes, npy_header_of
from .identity import StoreFolder, check_format

log = logging.getLogger(__package__)

VERIFY_MODES = ("auto", "full", "header")


@dataclass
class StoreReport:
    """What :meth:`EmbeddingStore.verify` found. ``ok`` when nothing is wrong."""

    folder: str
    full: bool  # every byte checked (else header and size only)
    problems: List[str] = field(default_factory=list)  # one line each, naming the file
    damaged_shards: List[int] = field(default_factory=list)  # blocks whose bytes changed, by shard
    rebuild: bool = False  # damage only a full recompute fixes (header, size, ids, manifest, format)
    nan_ids: List[str] = field(default_factory=list)  # stored rows that are NaN / inf (reported, not a defect of the file)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        nan = f"; {len(self.nan_ids)} stored row(s) are NaN/inf (ids {self.nan_ids[:5]})" if self.nan_ids else ""
        if self.ok:
            return f"{self.folder}: ok ({'every byte' if self.full else 'headers and sizes'} checked){nan}"
        return f"{self.folder}:\n- " + "\n- ".join(self.problems) + nan


class AlignedVectors(NamedTuple):
    """What :meth:`StoreRead.lookup` returns: ``vectors, nan_ids = store.lookup(ids)``."""

    vectors: np.ndarray  # float32 [len(ids), D] in the order asked; NaN rows for ids with no vector (missing="nan")
    nan_ids: List[str]  # the ids asked for whose stored vector is NaN / inf, in the order asked (logged; they
    # count as missing: rows_without_vectors)


class StoreRead(StoreFolder):
    """The reading half of :class:`~utils.store.EmbeddingStore`."""

    def _complete_manifest(self) -> Dict[str, Any]:
        m = self.manifest()
        if not (m.get("complete") and (self.folder / "vectors.npy").is_file()):
            raise IncompleteStoreError(
                f"{self.folder}: extraction has not finished; run utils.embed.embed(...) again to resume it"
            )
        check_format(self.folder, m)
        return m

    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(ids [N], vectors [N, D])``; vectors are memory-mapped (read-only), never loaded whole.

        Checks the headers and sizes of both files and every byte of ``ids.npy`` (read whole anyway);
        :meth:`verify` or :meth:`aligned` check the vectors' bytes. A store of another format version is
        refused (:class:`~utils.store.StoreMismatchError`).
        """
        m = self._complete_manifest()
        n, dim = int(m.get("n_vectors", 0)), int(m.get("dim", 0))
        files = m.get("files") or {}
        vec, ids_path = self.folder / "vectors.npy", self.folder / "ids.npy"
        for path, shape, dtype in ((vec, (n, dim), np.float32), (ids_path, (n,), "U")):
            problem = check_npy(path, shape, dtype, (files.get(path.name) or {}).get("size"))
            if problem:
                raise StoreIntegrityError(f"{path}: {problem}. Run the extraction again (embed(...) recomputes a "
                                          "damaged store), or delete the folder.", rebuild=True)
        data = ids_path.read_bytes()
        want = (files.get("ids.npy") or {}).get(CHECKSUM)
        if want is not None and checksum(data) != want:
            raise StoreIntegrityError(f"{ids_path} does not match its checksum (changed after it was written). Run "
                                      "the extraction again (embed(...) recomputes a damaged store).", rebuild=True)
        ids = load_npy_bytes(data)
        vectors = np.load(vec, mmap_mode="r", allow_pickle=False)
        return ids, vectors

    @property
    def failed(self) -> Dict[str, str]:
        """Ids that have no vector (unreadable input), with the reason."""
        return dict(self.manifest().get("failed", {}))

    @property
    def precision(self) -> Optional[str]:
        """The precision the vectors were computed in (``"bf16"``, ``"fp32"``, ...; several if shards differ)."""
        m = self.manifest()
        return m.get("precision") or (m.get("extractor") or {}).get("precision_resolved")

    def aligned(self, ids: Iterable[str], missing: str = "raise", verify: str = "auto") -> np.ndarray:
        """Vectors for ``ids`` in that order: float32 ``[len(ids), D]`` (a copy); :meth:`lookup` without the
        list of NaN rows (which it logs)."""
        return self.lookup(ids, missing=missing, verify=verify).vectors

    def lookup(self, ids: Iterable[str], missing: str = "raise", verify: str = "auto") -> AlignedVectors:
        """Vectors for ``ids`` in that order, and the ids among them whose stored vector is NaN / inf.

        ``missing="raise"`` names ids with no vector; ``missing="nan"`` fills their rows with NaN.
        ``verify``: ``"auto"`` checks every byte when at least half the store is read (the read costs the
        same), ``"full"`` always, ``"header"`` never. A block that fails raises :class:`StoreIntegrityError`
        naming its shards; stored NaN rows are reported (logged, and returned as ``nan_ids``), never
        dropped silently.
        """
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be 'auto', 'full' or 'header', got {verify!r}")
        have, vectors = self.read()
        m = self.manifest()
        index = {k: i for i, k in enumerate(have.tolist())}
        ids = [str(i) for i in ids]
        pos = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        absent = np.flatnonzero(pos < 0)
        if len(absent) and missing == "raise":
            failed = self.failed
            shown = ", ".join(f"{ids[j]!r}" + (f" ({failed[ids[j]]})" if ids[j] in failed else "") for j in absent[:5])
            raise KeyError(
                f"{len(absent)} id(s) have no vector in {self.folder}: {shown}. Drop those rows, or use missing='nan'."
            )
        out = np.full((len(ids), vectors.shape[1]), np.nan, dtype=np.float32)
        ok = pos >= 0
        order = np.argsort(pos[ok], kind="stable")
        rows, src = np.flatnonzero(ok)[order], pos[ok][order]  # output rows sorted by their stored row
        full = verify == "full" or (verify == "auto" and ok.sum() * 2 >= len(have))
        if full and m.get("blocks") is not None and len(have):
            def visit(lo: int, hi: int, arr: np.ndarray) -> None:
                a, b = np.searchsorted(src, [lo, hi])
                if b > a:
                    out[rows[a:b]] = arr[src[a:b] - lo]

            bad, nan_rows = self._scan_blocks(m, visit)
            if bad:
                report = StoreReport(str(self.folder), True)
                self._report_blocks(report, m, bad)
                raise StoreIntegrityError(
                    report.problems[0] + ". Run embed(..., verify='full') to recompute "
                    + ("those shards" if not report.rebuild else "the store") + " (extract_embeddings does it for you).",
                    shards=report.damaged_shards, rebuild=report.rebuild)
            bad_rows = rows[np.isin(src, nan_rows)]
        else:
            if len(src):
                out[rows] = vectors[src]
            bad_rows = np.flatnonzero(ok & ~np.isfinite(out).all(axis=1))
        nan_ids = [ids[r] for r in np.sort(bad_rows)]
        if nan_ids:
            log.warning("%s: %d stored vector(s) are NaN/inf (ids %s): they count as missing and are left out of "
                        "training (rows_without_vectors). Recompute with overwrite=True.", self.folder,
                        len(nan_ids), nan_ids[:5])
        return AlignedVectors(out, nan_ids)

    def verify(self, full: bool = True) -> StoreReport:
        """Check a finished store: headers and sizes; with ``full`` every byte against its checksum and NaN rows."""
        report = StoreReport(str(self.folder), full)
        try:
            m = self.manifest()
            check_format(self.folder, m)
        except (IncompleteStoreError, StoreIntegrityError, StoreMismatchError) as e:
            report.problems.append(str(e))
            report.rebuild = True
            return report
        if not m.get("complete"):
            report.problems.append(f"{self.folder}: extraction has not finished")
            return report
        n, dim = int(m.get("n_vectors", 0)), int(m.get("dim", 0))
        files = m.get("files") or {}
        vec, ids = self.folder / "vectors.npy", self.folder / "ids.npy"
        problem = check_npy(vec, (n, dim), np.float32, (files.get("vectors.npy") or {}).get("size"))
        if problem:
            report.problems.append(f"{vec}: {problem}")
        problem = check_npy(ids, (n,), "U", (files.get("ids.npy") or {}).get("size"))
        if problem:
            report.problems.append(f"{ids}: {problem}")
        if report.problems:
            report.rebuild = True
            return report
        if full:
            if file_digest(ids) != (files.get("ids.npy") or {}).get(CHECKSUM):
                report.problems.append(f"{ids} does not match its checksum")
                report.rebuild = True
                return report
            have = np.load(ids, allow_pickle=False)
            uniq, counts = np.unique(have, return_counts=True)
            if (counts > 1).any():
                report.problems.append(f"{ids}: {int((counts > 1).sum())} id(s) appear more than once (first: "
                                       f"{str(uniq[counts > 1][0])!r}): a shard's files were copied over another's")
                report.rebuild = True
                return report
            bad, nan_rows = self._scan_blocks(m, lambda lo, hi, arr: None)
            self._report_blocks(report, m, bad)
            if nan_rows:
                report.nan_ids = [str(have[r]) for r in nan_rows]
        return report

    def _report_blocks(self, report: StoreReport, m: Dict[str, Any], bad: List[Dict[str, Any]]) -> None:
        if not bad:
            return
        shards = [b["shard"] for b in bad if b.get("shard") is not None]
        if len(shards) < len(bad):
            report.rebuild = True
        report.damaged_shards = shards
        rows = ", ".join(f"{b['start']}-{b['start'] + b['rows'] - 1}" for b in bad[:5])
        report.problems.append(f"{self.folder / 'vectors.npy'}: rows {rows} do not match their checksums "
                               f"(shard(s) {shards[:10] if shards else 'unknown'})")

    def _scan_blocks(self, m: Dict[str, Any], visit: Callable[[int, int, np.ndarray], None]
                     ) -> Tuple[List[Dict[str, Any]], List[int]]:
        """Read ``vectors.npy`` block by block: check each block's checksum, find NaN rows, call ``visit``."""
        dim = int(m["dim"])
        bad: List[Dict[str, Any]] = []
        nan_rows: List[int] = []
        with open(self.folder / "vectors.npy", "rb") as f:
            _, _, offset = npy_header_of(f)
            for b in m.get("blocks") or []:
                lo, rows = int(b["start"]), int(b["rows"])
                f.seek(offset + lo * dim * 4)
                data = f.read(rows * dim * 4)
                if checksum(data) != b[CHECKSUM]:
                    bad.append(b)
                    continue
                arr = np.frombuffer(data, dtype=np.float32).reshape(rows, dim)
                finite = np.isfinite(arr).all(axis=1)
                if not finite.all():
                    nan_rows.extend((lo + np.flatnonzero(~finite)).tolist())
                visit(lo, lo + rows, arr)
        return bad, nan_rows

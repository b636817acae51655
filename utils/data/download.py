"""Downloads: resumable HTTP with a progress bar, sha256 checks, safe archive extraction, PhysioNet login.

>>> from utils.data import download
>>> download.fetch("esc50")                 # open datasets: download + verify + unpack into <data dir>/esc50
>>> download.fetch("mimic_cxr")             # PhysioNet: needs PHYSIONET_USERNAME / PHYSIONET_PASSWORD
>>> download.fetch("ham10000")              # fetched by hand: raises ManualDownloadRequired with the page

PhysioNet credentials come from the environment or a ``.env`` file (``PHYSIONET_USERNAME``,
``PHYSIONET_PASSWORD``) through :func:`utils.config.get_setting`; they are never printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import PathLike, data_dir, get_setting

log = logging.getLogger(__name__)

ENV_PHYSIONET_USER = "PHYSIONET_USERNAME"
ENV_PHYSIONET_PASSWORD = "PHYSIONET_PASSWORD"


class DownloadError(RuntimeError):
    """A download failed (HTTP error, checksum mismatch, unsafe archive)."""


class ManualDownloadRequired(DownloadError):
    """The dataset cannot be fetched automatically; the message says where to get it and where to put it."""


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: Optional[str] = None  # verified when known
    extract: bool = False  # unpack the archive into the dataset folder after download
    name: Optional[str] = None  # file name on disk (default: the URL's last part)


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from. ``access``: open | physionet | manual | registration | local."""

    title: str
    page: str
    licence: str
    access: str
    task: str
    size: str
    files: Tuple[RemoteFile, ...] = ()
    instructions: str = ""
    physionet_project: Optional[str] = None  # e.g. "mimic-cxr-jpg/2.0.0"
    physionet_files: Tuple[str, ...] = ()  # files fetched by default from the PhysioNet project


SOURCES: Dict[str, Source] = {
    "daquar": Source(
        "DAQUAR (visual question answering on NYU-Depth V2 scenes)",
        "https://www.mpi-inf.mpg.de/departments/computer-vision-and-machine-learning/research/vision-and-language/visual-turing-challenge",
        "research use (see the page)", "open", "multilabel answers", "12,468 questions, 1,449 images",
        files=(
            RemoteFile("http://datasets.d2.mpi-inf.mpg.de/mateusz14visual-turing/qa.894.raw.train.txt"),
            RemoteFile("http://datasets.d2.mpi-inf.mpg.de/mateusz14visual-turing/qa.894.raw.test.txt"),
            RemoteFile("http://datasets.d2.mpi-inf.mpg.de/mateusz14visual-turing/nyu_depth_images.tar", extract=True),
        ),
    ),
    "coco_qa": Source(
        "COCO-QA (question answering on MS-COCO images)",
        "https://www.cs.toronto.edu/~mren/research/imageqa/data/cocoqa/",
        "questions: research use; COCO images: Flickr terms, annotations CC BY 4.0", "open",
        "multiclass answers (430)", "117,684 questions",
        files=(RemoteFile("https://www.cs.toronto.edu/~mren/research/imageqa/data/cocoqa/cocoqa-2015-05-17.zip", extract=True),),
        instructions="Images: unpack http://images.cocodataset.org/zips/train2014.zip and val2014.zip (or the 2017 "
        "release) into <root>/images/ (train2014/, val2014/ ...). They are 19 GB: fetch(..., files=[...]) them explicitly.",
    ),
    "fakeddit": Source(
        "Fakeddit (multimodal fake-news detection on Reddit)", "https://github.com/entitize/Fakeddit",
        "research use (see the repository)", "manual", "binary / 3-way / 6-way", "about 1M posts (multimodal ~680k)",
        instructions="Download multimodal_train.tsv, multimodal_validate.tsv, multimodal_test_public.tsv from the "
        "Google Drive linked on the page into <root>/, and the images as <root>/images/<id>.jpg.",
    ),
    "recipes5k": Source(
        "Recipes5k (food images with ingredient lists)", "http://www.ub.edu/cvub/recipes5k/",
        "research use (see the page)", "manual", "multiclass (101)", "4,826 recipes",
        instructions="Download Recipes5k.zip from the page and unpack it so <root>/annotations/ and <root>/images/ exist.",
    ),
    "brset": Source(
        "BRSET (Brazilian multilabel ophthalmological dataset)",
        "https://physionet.org/content/brazilian-ophthalmological/1.0.0/",
        "PhysioNet Credentialed Health Data License 1.5.0", "physionet", "DR_2 / DR_3 / any label column",
        "16,266 images, 8,524 patients", physionet_project="brazilian-ophthalmological/1.0.0",
        physionet_files=("labels.csv",),
        instructions="Images: fundus_photos/<image_id>.jpg (the whole project is about 20 GB).",
    ),
    "ham10000": Source(
        "HAM10000 (dermatoscopic images of pigmented skin lesions)", "https://doi.org/10.7910/DVN/DBW86T",
        "CC BY-NC 4.0", "manual", "multiclass (7)", "10,015 images",
        instructions="Download HAM10000_metadata.csv (or .tab saved as .csv), HAM10000_images_part_1.zip and "
        "_part_2.zip from Harvard Dataverse; unpack the zips into <root>/HAM10000_images_part_1/ and _part_2/.",
    ),
    "satellite": Source(
        "Multi-modal satellite imagery for public health in Colombia",
        "https://physionet.org/content/multimodal-satellite-data/1.0.0/",
        "see the PhysioNet page", "physionet", "dengue above median (binary) / terciles",
        "weekly Sentinel-2 images of 10 or 81 municipalities", physionet_project="multimodal-satellite-data/1.0.0",
        physionet_files=("metadata.csv",),
    ),
    "mimic_cxr": Source(
        "MIMIC-CXR-JPG (chest radiographs) with MIMIC-CXR reports", "https://physionet.org/content/mimic-cxr-jpg/2.0.0/",
        "PhysioNet Credentialed Health Data License 1.5.0 (credentialed access + training)", "physionet",
        "multilabel (14 CheXpert labels)", "377,110 images, 227,827 studies", physionet_project="mimic-cxr-jpg/2.0.0",
        physionet_files=("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.0.0-split.csv.gz"),
        instructions="Images: files/pXX/p<subject>/s<study>/<dicom_id>.jpg (about 570 GB; fetch a subset). Reports: "
        "mimic-cxr-reports.zip from https://physionet.org/content/mimic-cxr/2.0.0/, unpacked into <root>/.",
    ),
    "musti": Source(
        "MUSTI (MediaEval 2023 multimodal understanding of smells in texts and images)",
        "https://multimediaeval.github.io/editions/2023/tasks/musti/",
        "MediaEval data agreement (registration)", "registration", "binary", "a few thousand text-image pairs",
        instructions="Register for the task, then put the pairs file (CSV/JSON) and images under <root>/; "
        "name its columns with the loader options.",
    ),
    "esc50": Source(
        "ESC-50 (environmental sound classification)", "https://github.com/karolpiczak/ESC-50",
        "CC BY-NC 3.0", "open", "multiclass (50)", "2,000 clips of 5 s",
        files=(RemoteFile("https://github.com/karolpiczak/ESC-50/archive/master.zip", extract=True, name="ESC-50-master.zip"),),
        instructions="The archive unpacks into ESC-50-master/; the loader also looks there.",
    ),
    "table": Source(
        "Your own table (CSV / TSV / parquet) of text, image paths and labels", "(your data)", "yours", "local",
        "any", "any",
    ),
}


# ---------------------------------------------------------------------------------------------- HTTP


def physionet_auth() -> Tuple[str, str]:
    """PhysioNet (username, password) from the environment or ``.env``; raises with what to set."""
    user, password = get_setting(ENV_PHYSIONET_USER), get_setting(ENV_PHYSIONET_PASSWORD)
    if not user or not password:
        raise DownloadError(
            f"PhysioNet credentials are not set: put {ENV_PHYSIONET_USER}=... and {ENV_PHYSIONET_PASSWORD}=... in "
            "the environment or in a .env file (never in a notebook). The account must have signed the "
            "dataset's data use agreement on physionet.org."
        )
    return user, password


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str,
    dest: PathLike,
    sha256: Optional[str] = None,
    auth: Optional[Tuple[str, str]] = None,
    show_progress: bool = True,
    chunk_size: int = 1 << 16,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    An existing ``dest`` is kept when its checksum matches (or none is given). A server that ignores the
    Range header (answers 200) restarts the file from zero. After the download the sha256 is checked;
    a mismatch deletes the file and raises :class:`DownloadError`. ``auth`` is (user, password) for
    HTTP basic auth (PhysioNet); it is never logged.
    """
    from ..runtime import progress_bar as tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if sha256 is None or _sha256(dest) == sha256.lower():
            log.info("%s already downloaded", dest.name)
            return dest
        log.warning("%s exists but its checksum differs: downloading again", dest.name)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "mmfusion-utils"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is already complete
            part.rename(dest)
            return _verify(dest, sha256, url)
        hint = " (check your PhysioNet credentials and that you signed the data use agreement)" if e.code in (401, 403) else ""
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"download of {url} failed: {e.reason}. Check the network; rerun to resume.") from None
    with resp:
        status = getattr(resp, "status", 200)
        if have and status != 206:
            log.info("server ignored the Range request: restarting %s", dest.name)
            have = 0
        elif have:
            log.info("resuming %s at %d bytes", dest.name, have)
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        mode = "ab" if have else "wb"
        with open(part, mode) as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not show_progress
        ) as bar:
            while True:
                block = resp.read(chunk_size)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(
            f"download of {url} stopped at {part.stat().st_size} of {total} bytes; rerun to resume from {part}"
        )
    part.replace(dest)
    return _verify(dest, sha256, url)


def _verify(dest: Path, sha256: Optional[str], url: str) -> Path:
    if sha256 is not None:
        got = _sha256(dest)
        if got != sha256.lower():
            dest.unlink()
            raise DownloadError(
                f"checksum mismatch for {dest.name} from {url}: expected sha256 {sha256}, got {got}. "
                "The file was deleted; rerun, and if it persists the source changed: check the page."
            )
    return dest


# ------------------------------------------------------------------------------------------ archives


MAX_EXPANSION_RATIO = 100  # an archive may unpack to this many times its own size ...
MIN_EXPANSION_LIMIT = 100 << 20  # ... or to this many bytes, whichever is larger (pass max_bytes= to change)
MAX_LINK_HOPS = 40  # symbolic links followed while resolving one path (as the kernel does)


def _safe_target(target: Path, member: str) -> Path:
    """The path ``member`` unpacks to, or DownloadError when it is absolute or its ``..`` leave ``target``."""
    p = PurePosixPath(member.replace("\\", "/"))
    if p.is_absolute() or member.startswith(("/", "\\")) or (len(member) > 1 and member[1] == ":"):
        raise DownloadError(f"unsafe archive member {member!r}: absolute path. Refusing to extract.")
    out = (target / Path(*p.parts)).resolve() if p.parts else target
    if out != target and target not in out.parents:
        raise DownloadError(f"unsafe archive member {member!r}: it escapes {target}. Refusing to extract.")
    return out


def _walk(target: Path, parts: Sequence[str], links: Dict[str, str], follow_last: bool) -> Optional[List[str]]:
    """Resolve ``parts`` (relative to ``target``) through the archive's symbolic links (``links``: member ->
    link text) and those already on disk, as the kernel would after extraction; None when it leaves ``target``
    (``..`` above it, an absolute link) or loops."""
    queue, stack, hops = list(parts), [], 0
    while queue:
        c = queue.pop(0)
        if c in ("", "."):
            continue
        if c == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(c)
        if not queue and not follow_last:
            break
        key = "/".join(stack)
        link = links.get(key)
        if link is None:
            disk = target.joinpath(*stack)
            if disk.is_symlink():
                link = os.readlink(disk)
        if link is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
            return None
        stack.pop()
        queue = list(PurePosixPath(link.replace("\\", "/")).parts) + queue
    return stack


def _check_tar_links(target: Path, members: Sequence[tarfile.TarInfo]) -> None:
    """Refuse, before anything is written, any member whose path or link target leaves ``target`` once every
    symbolic link of the archive exists, links that point through other links (``sub -> .``, then
    ``esc -> sub/..``) included."""
    links = {str(PurePosixPath(*PurePosixPath(m.name).parts)): m.linkname for m in members if m.issym()}
    for m in members:
        parts = PurePosixPath(m.name.replace("\\", "/")).parts
        where = _walk(target, parts, links, follow_last=not m.issym())
        if where is None:
            raise DownloadError(f"unsafe archive member {m.name!r}: through the archive's links it lands outside "
                                f"{target}. Refusing to extract.")
        if m.issym():
            dest = _walk(target, list(parts[:-1]) + list(PurePosixPath(m.linkname).parts), links, follow_last=True)
        elif m.islnk():
            dest = _walk(target, PurePosixPath(m.linkname).parts, links, follow_last=True)
        else:
            continue
        if dest is None or PurePosixPath(m.linkname).is_absolute():
            raise DownloadError(f"unsafe archive member {m.name!r}: link to {m.linkname!r} resolves outside {target} "
                                "(directly or through other links). Refusing to extract.")


def _size_limit(archive: Path, max_bytes: Optional[int]) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    return max(MIN_EXPANSION_LIMIT, MAX_EXPANSION_RATIO * archive.stat().st_size)


def _check_size(archive: Path, target: Path, total: int, limit: int) -> None:
    mb = lambda b: f"{b / (1 << 20):,.1f} MB"  # noqa: E731
    if total > limit:
        raise DownloadError(
            f"{archive.name} would expand to {mb(total)} ({total / max(archive.stat().st_size, 1):,.0f} times its "
            f"{mb(archive.stat().st_size)}), above the limit of {mb(limit)}: a decompression bomb, or a very large "
            f"dataset. Nothing was extracted. If you trust it, call extract(..., max_bytes={total}) (or more)."
        )
    free = shutil.disk_usage(target).free
    if total > free:
        raise DownloadError(f"no space left on the disk of {target} for {archive.name}: it expands to {mb(total)}, "
                            f"{mb(free)} are free. Free {mb(total - free)} and run again.")


def _copy_capped(src, dst, budget: List[int], archive: Path) -> None:
    """Copy ``src`` into ``dst`` while ``budget[0]`` bytes remain (an archive cannot write more than it declared)."""
    while True:
        block = src.read(1 << 20)
        if not block:
            return
        budget[0] -= len(block)
        if budget[0] < 0:
            raise DownloadError(f"{archive.name} holds more data than its headers declare; refusing the rest.")
        dst.write(block)


def extract(archive: PathLike, target: PathLike, max_bytes: Optional[int] = None) -> List[Path]:
    """Unpack a zip / tar(.gz/.bz2/.xz) into ``target``; refuse members that would escape it.

    Before anything is written: absolute paths, ``..`` components, links pointing outside ``target``
    (directly or through chains of links, resolved as the kernel would) and device files are refused,
    and the total unpacked size is checked against ``max_bytes`` (default: 100 times the archive's size,
    at least 100 MB) and the free space. Returns the extracted file paths.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    limit = _size_limit(archive, max_bytes)
    written: List[Path] = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            for info in infos:
                _safe_target(target, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(f"unsafe archive member {info.filename!r}: symbolic link. Refusing to extract.")
            total = sum(i.file_size for i in infos)
            _check_size(archive, target, total, limit)
            budget = [total]
            for info in infos:
                out = _safe_target(target, info.filename)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    _copy_capped(src, dst, budget, archive)
                written.append(out)
        return written
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                _safe_target(target, m.name)
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise DownloadError(f"unsafe archive member {m.name!r}: device or special file. Refusing to extract.")
            _check_tar_links(target, members)
            total = sum(m.size for m in members if m.isfile()) + sum(
                next((x.size for x in members if x.name == m.linkname), 0) for m in members if m.islnk())
            _check_size(archive, target, total, limit)
            budget = [total]
            for m in members:
                out = target.joinpath(*PurePosixPath(m.name.replace("\\", "/")).parts)
                if m.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                elif m.isfile():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if out.is_symlink():
                        out.unlink()
                    src = t.extractfile(m)
                    assert src is not None
                    with src, open(out, "wb") as dst:
                        _copy_capped(src, dst, budget, archive)
                    written.append(out)
                else:  # a link checked above to stay inside target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if out.exists() or out.is_symlink():
                        out.unlink()
                    if m.issym():
                        os.symlink(m.linkname, out)
                    else:
                        with open(_safe_target(target, m.linkname), "rb") as src, open(out, "wb") as dst:
                            _copy_capped(src, dst, budget, archive)
                    written.append(out)
        return written
    raise DownloadError(f"{archive} is neither a zip nor a tar archive")


# --------------------------------------------------------------------------------------------- fetch


def instructions(name: str) -> str:
    """What a user must do to get dataset ``name`` (page, licence, where to put the files)."""
    src = _source(name)
    folder = data_dir() / name
    lines = [f"{src.title}", f"  page:    {src.page}", f"  licence: {src.licence}", f"  access:  {src.access}",
             f"  put the files under {folder} (or pass root=... / DATA_DIR)"]
    if src.access == "physionet":
        lines.append(f"  PhysioNet: set {ENV_PHYSIONET_USER} and {ENV_PHYSIONET_PASSWORD} in the environment or .env, "
                     f"then utils.data.download.fetch({name!r})")
    if src.instructions:
        lines.append("  " + src.instructions)
    return "\n".join(lines)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise KeyError(f"no download source for {name!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def fetch(
    name: str,
    root: Optional[PathLike] = None,
    files: Optional[Sequence[str]] = None,
    show_progress: bool = True,
    base_url: Optional[str] = None,
) -> Path:
    """Download (resumably), verify and unpack dataset ``name`` into ``root`` (default ``<data dir>/<name>``).

    Open datasets fetch their listed files; PhysioNet datasets fetch ``files`` (paths inside the project,
    default the metadata files) with the user's credentials; manual / registration datasets raise
    :class:`ManualDownloadRequired` with the page and where to put the files. ``base_url`` overrides
    the PhysioNet host (tests). Returns the dataset folder.
    """
    src = _source(name)
    folder = Path(root) if root is not None else data_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    if src.access in ("manual", "registration", "local"):
        raise ManualDownloadRequired(f"{name} must be fetched by hand:\n{instructions(name)}")
    if src.access == "physionet":
        auth = physionet_auth()
        base = (base_url or "https://physionet.org/files/").rstrip("/") + "/" + str(src.physionet_project)
        for rel_path in files or src.physionet_files:
            download_file(f"{base}/{rel_path}", folder / rel_path, auth=auth, show_progress=show_progress)
        return folder
    wanted = list(src.files) if files is None else [RemoteFile(u, extract=u.endswith((".zip", ".tar", ".tar.gz", ".tgz"))) for u in files]
    for rf in wanted:
        fname = rf.name or rf.url.rstrip("/").split("/")[-1]
        path = download_file(rf.url, folder / fname, sha256=rf.sha256, show_progress=show_progress)
        if rf.extract:
            marker = folder / f".{fname}.extracted"
            if not marker.exists():
                extract(path, folder)
                marker.write_text("ok\n")
    return folder


def sources_table():
    """One row per dataset: task, size, access, licence, page (a pandas DataFrame; README-ready)."""
    import pandas as pd

    return pd.DataFrame(
        [{"dataset": k, "task": s.task, "size": s.size, "access": s.access, "licence": s.licence, "page": s.page}
         for k, s in SOURCES.items()]
    ).set_index("dataset")


def prepare(name: str, data_dir_: Optional[PathLike] = None, download: bool = False) -> str:
    """Notebook step: the instructions for ``name``; with ``download=True`` also fetch it when it can be
    fetched (open or PhysioNet with credentials set). Never raises for manual datasets: it says what to do."""
    root = Path(data_dir_) / name if data_dir_ else None
    if download:
        try:
            fetch(name, root=root)
        except ManualDownloadRequired:
            pass
        except DownloadError as e:
            log.warning("%s: %s", name, e)
    return instructions(name)

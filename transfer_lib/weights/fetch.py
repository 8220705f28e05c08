"""Get the pretrained files the paper starts from: ``python -m transfer_lib weights fetch vit|ir50``.

Examples:
  python -m transfer_lib weights fetch vit                  # timm's ViT-Small into weights/
  python -m transfer_lib weights fetch vit --dir /content/drive/MyDrive/weights   # Colab: kept on Drive
  python -m transfer_lib weights fetch ir50                 # where to get face.evoLVe's IR-50

``vit`` downloads timm's public ViT-Small (``vit_small_p16_224-15ec54c9.pth``, release
``v0.1-weights``; chapter 5 loads it) and checks its sha256 before the file appears under its
name: the download goes to a temporary file in the same folder (``.NAME.PID.XXXXXXXX.tmp``, as
:mod:`transfer_lib.utils.atomic` names them), which is renamed only once the hash matches and
removed otherwise; one that a killed download left is removed at the next start. The hash checked is ``--sha256`` when given, else
:data:`VIT_SHA256` when it is recorded, else the 8 hex digits in the file's own name
(``15ec54c9``: torch.hub's convention, under which a name's ``-<hex>.`` part is the start of the
file's sha256).

``ir50`` cannot be downloaded by a script: face.evoLVe publishes its IR-50 on Google Drive and
Baidu Drive (links in its README), so the command says where to get it and where to put it, and
exits 0 when the file is already in place, 1 when it is not.

The chapters and ``train --profile paper`` look for both files in ``weights/`` (of the working
folder and of the project) and in ``/content/drive/MyDrive/weights`` (Colab, Drive mounted);
``$TRANSFER_VIT`` / ``$TRANSFER_IR50`` name a file anywhere (:func:`find_weights`).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from transfer_lib.utils import atomic
from transfer_lib.utils.errors import TransferError

VIT_FILE = "vit_small_p16_224-15ec54c9.pth"
VIT_URL = ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
           + VIT_FILE)
#: The full sha256 of :data:`VIT_FILE`. NOT RECORDED: the project's machines cannot reach the
#: file, so nobody here has hashed it, and a hash is never written from memory. Until someone
#: confirms it (``sha256sum vit_small_p16_224-15ec54c9.pth`` on a downloaded copy whose 8-digit
#: prefix matched) and writes it here, ``fetch vit`` checks the prefix in the file name.
VIT_SHA256: str | None = None

IR50_FILE = "backbone_ir50_ms1m_epoch120.pth"
IR50_SOURCE = "https://github.com/ZhaoJ9014/face.evoLVe"

#: How a file name carries the start of its sha256 (torch.hub's ``HASH_REGEX``).
NAME_HASH = re.compile(r"-([a-f0-9]{8,64})\.")

CHUNK = 1 << 20
#: Seconds a download waits for the server to answer or send more bytes.
TIMEOUT = 60


#: Where :func:`find_weights` looks for a pretrained file, after its environment variable.
WEIGHT_DIRS: tuple[str, ...] = ("weights", "/content/drive/MyDrive/weights")


def weights_file_problem(path: Path) -> str | None:
    """What keeps ``path`` from being a weights file ("is a folder, not a file", "is an empty
    file (0 bytes)", ...), or None where it is a non-empty file."""
    if not path.exists():
        return "names nothing (no such file)"
    if path.is_dir():
        return "is a folder, not a file"
    if not path.is_file():
        return "is not a regular file"
    if path.stat().st_size == 0:
        return "is an empty file (0 bytes)"
    return None


def find_weights(filename: str, env: str | None = None) -> Path | None:
    """The path of a pretrained file the reader supplied, or None.

    Looks at ``$env`` (a file path), then for ``filename`` in ``weights/`` of the working
    directory and of the project root, and in ``/content/drive/MyDrive/weights`` (Colab). A
    ``$env`` that names no file, a folder or an empty file raises TransferError (it was passed
    over for the folders without a word, or an empty file taken for the weights); an empty file
    in the folders is passed over with a warning.
    """
    candidates: list[Path] = []
    if env and os.environ.get(env):
        given = Path(os.environ[env]).expanduser()
        problem = weights_file_problem(given)
        if problem is not None:
            raise TransferError(f"{env}={os.environ[env]} {problem}: expected the file "
                                f"{filename}. Point {env} at it, or unset {env} to look for it "
                                f"in {', '.join(f'{d}/' for d in WEIGHT_DIRS)}")
        return given
    from transfer_lib.train.profiles import project_root

    root = project_root()
    for d in WEIGHT_DIRS:
        candidates += [Path(d) / filename, root / d / filename]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        problem = weights_file_problem(candidate)
        if problem is not None:  # an empty file: a download that failed, not the weights
            print(f"warning: {candidate} {problem}, passed over: delete it and download the "
                  f"file again", file=sys.stderr)
            continue
        return candidate
    return None


def default_dir() -> Path:
    """``weights/`` of the project (:func:`transfer_lib.train.profiles.project_root`)."""
    from transfer_lib.train.profiles import project_root

    return project_root() / "weights"


def expected_hash(filename: str, sha256: str | None = None) -> str:
    """The sha256 (or its start) a download of ``filename`` must have: ``sha256`` when given,
    else the hex digits in the name; a name without any raises TransferError."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", sha256):
            raise TransferError(f"--sha256 {sha256!r}: expected 8 to 64 hex digits (the whole "
                                f"sha256 is 64; `sha256sum FILE` prints it)")
        return sha256
    m = NAME_HASH.search(filename)
    if m is None:
        raise TransferError(f"no sha256 to check {filename} against: give --sha256 HEX (a file "
                            f"is never kept unchecked)")
    return m.group(1)


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_stale_downloads(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that killed downloads of ``dest`` left beside it: this program's
    ``.NAME.PID.XXXXXXXX.tmp`` whose process is gone, and an earlier version's
    ``.NAME.XXXXXXXX.part`` (``tempfile.mkstemp``, no process recorded) once it is an hour old
    (:func:`transfer_lib.utils.atomic.remove_stale_temporaries`). Each removal is printed on
    stderr. Returns the removed paths."""
    dest = Path(dest)
    legacy = re.compile(rf"^\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.part$")
    return atomic.remove_stale_temporaries(dest.parent, [dest.name], quiet=False,
                                           legacy=[legacy])


def download(url: str, dest: str | os.PathLike, sha256: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` (``https://``, ``http://`` or ``file://``) to ``dest`` atomically.

    The bytes go to a temporary file next to ``dest``; their sha256 must start with
    :func:`expected_hash` (``sha256``, else the hex digits in ``dest``'s name), and only then is
    the file renamed to ``dest``. On a mismatch, an error or an interruption the temporary file is
    removed and ``dest`` is left as it was (absent, or an earlier file). Returns ``dest``.
    """
    dest = Path(dest)
    want = expected_hash(dest.name, sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_downloads(dest)
    while True:  # .NAME.PID.XXXXXXXX.tmp, 0666 less the umask: readable in a shared weights/
        tmp = atomic.temporary_name(dest)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    h = hashlib.sha256()
    size = 0

    def cannot(err: BaseException, during: str = "") -> TransferError:
        return TransferError(f"cannot download {url}{during}: {getattr(err, 'reason', err)}. "
                             f"Check the address and the network, or download the file by hand "
                             f"and put it at {dest}")

    try:
        try:
            response = urllib.request.urlopen(url, timeout=TIMEOUT)  # noqa: S310 - the user's URL
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            os.close(fd)
            raise cannot(err) from None
        with response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            # what has arrived (read would wait for a whole chunk): the count below is true
            read = getattr(response, "read1", response.read)
            while True:
                try:  # a server that stalls (a timeout) or drops the connection mid-file
                    chunk = read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise cannot(err, f" (stopped after {size} bytes)") from None
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                size += len(chunk)
                if progress and total:
                    print(f"\r{dest.name}: {size / 1e6:.1f} / {total / 1e6:.1f} MB", end="",
                          file=sys.stderr, flush=True)
            out.flush()
            os.fsync(out.fileno())
        if progress and total:
            print(file=sys.stderr)
        if total and size < total:
            raise TransferError(f"the download of {url} ended after {size} of its {total} bytes "
                                f"(the connection was closed), so {dest} was not written. Try "
                                f"again; if it persists, download the file by hand and put it "
                                f"at {dest}")
        got = h.hexdigest()
        if not got.startswith(want):
            raise TransferError(
                f"the download of {url} has sha256 {got}, expected one starting with {want}: "
                f"the file is corrupt or not the one named, so it was deleted and {dest} was "
                f"not written. Try again; if it persists, check the URL")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def fetch_vit(out_dir: str | os.PathLike | None = None, url: str = VIT_URL,
              sha256: str | None = None, force: bool = False, progress: bool = True) -> Path:
    """timm's ViT-Small as ``OUT_DIR/vit_small_p16_224-15ec54c9.pth`` (default ``weights/``),
    checked as :func:`download` says; a file already there is checked and kept if it matches."""
    dest = Path(out_dir or default_dir()) / VIT_FILE
    want = expected_hash(VIT_FILE, sha256 or VIT_SHA256)
    remove_stale_downloads(dest)
    if dest.is_file() and not force:
        got = sha256_of(dest)
        if got.startswith(want):
            print(f"{dest} is already there (sha256 {got})")
            return dest
        raise TransferError(f"{dest} is already there but its sha256 {got} does not start with "
                            f"{want}: delete it, or pass --force to download it again")
    download(url, dest, want, progress=progress)
    print(f"wrote {dest} (sha256 {sha256_of(dest)}, checked against {want}"
          + (", the prefix in its name" if sha256 is None and VIT_SHA256 is None else "") + ")")
    return dest


def ir50_instructions(found: Path | None) -> str:
    """Where face.evoLVe publishes the IR-50 and where this project looks for it."""
    places = ", ".join(f"{d}/" for d in WEIGHT_DIRS)
    lines = [
        f"The IR-50 stem (face.evoLVe, trained on MS-Celeb-1M) is {IR50_FILE}.",
        f"face.evoLVe publishes it on Google Drive and Baidu Drive, linked from the 'Model Zoo' "
        f"section of its README: {IR50_SOURCE} (IR-50 trained on MS-Celeb-1M_Align_112x112). "
        f"Those hosts need a browser, so this command cannot download it.",
        f"Save it as {IR50_FILE} in one of: {places} (or set TRANSFER_IR50=/path/to/file, or "
        f"pass `train --ir50 FILE`).",
        "On Colab, put it in your Drive's MyDrive/weights/ folder and mount Drive "
        "(from google.colab import drive; drive.mount('/content/drive')).",
    ]
    lines.append(f"found: {found}" if found else "not found in any of those places yet")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    fetch = sub.add_parser("fetch", help="download timm's ViT-Small, or say where the IR-50 is",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("which", choices=("vit", "ir50"))
    fetch.add_argument("--dir", metavar="DIR",
                       help="where to write (default: weights/ of the project; on Colab "
                            "/content/drive/MyDrive/weights keeps it across sessions)")
    fetch.add_argument("--url", default=VIT_URL, help="download from here instead (https:// or "
                                                      "file://; default: timm's release)")
    fetch.add_argument("--sha256", metavar="HEX",
                       help="the sha256 the file must have (all 64 hex digits, or its start)")
    fetch.add_argument("--force", action="store_true", help="download even if the file is there")
    fetch.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_dir

    if args.which == "ir50":
        if args.dir:
            candidate = Path(args.dir) / IR50_FILE
            problem = weights_file_problem(candidate) if candidate.exists() else None
            if problem is not None:
                raise TransferError(f"{candidate} {problem}: expected face.evoLVe's IR-50 "
                                    f"weights there. Replace it with the downloaded file (run "
                                    f"without --dir to see where to get it), or remove it")
            found = candidate if candidate.is_file() else None
        else:
            found = find_weights(IR50_FILE, "TRANSFER_IR50")
        print(ir50_instructions(found))
        return 0 if found else 1
    check_output_dir(args.dir, "--dir")
    fetch_vit(args.dir, url=args.url, sha256=args.sha256, force=args.force, progress=args.progress)
    return 0

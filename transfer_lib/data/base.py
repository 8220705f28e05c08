"""What every data set here shares: (image, label) pairs, ``.classes``, ``.targets``, and errors
that say what was expected and where (:class:`~transfer_lib.errors.DataError`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from transfer_lib.errors import DataError

README_HINT = "See data/README.md for how to obtain the data set and where to put it."


def missing(what: str, path: Path, layout: str) -> DataError:
    """The error for a missing file or folder: what, where, the expected layout, the README."""
    return DataError(f"{what} not found: {path}\nExpected layout:\n{layout.rstrip()}\n{README_HINT}")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image as PIL RGB, fully decoded; a corrupt file raises DataError naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"corrupt or unreadable image: {path} ({err})") from None


class FolderListing:
    """Which files exist, one directory listing per folder (faster than one stat per file,
    which matters on Google Drive)."""

    def __init__(self) -> None:
        self._dirs: dict[str, set[str]] = {}

    def exists(self, path: Path) -> bool:
        d = str(path.parent)
        if d not in self._dirs:
            try:
                self._dirs[d] = set(os.listdir(d))
            except OSError:
                self._dirs[d] = set()
        return path.name in self._dirs[d]


class ImageListDataset(Dataset):
    """A list of (image path, 0-based label) read as PIL RGB, then ``transform`` if given.

    Attributes: ``classes`` (names in the data set's own order), ``samples`` (list of
    (path, label)), ``targets`` (list of int), ``root``, ``split``, ``name``.
    """

    name = "images"
    native_size: int | None = None  # side of the images when they all share one square size

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], root: Path,
                 split: str, transform: Callable | None = None,
                 sources: Sequence[Path] = ()) -> None:
        self.samples = [(Path(p), int(k)) for p, k in samples]
        self.targets = [k for _, k in self.samples]
        self.classes = tuple(classes)
        self.root, self.split, self.transform = Path(root), split, transform
        self._sources = [Path(s) for s in sources]

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        """The raw image of sample ``index`` (PIL RGB, no transform)."""
        return load_rgb(self.samples[index][0])

    def __getitem__(self, index: int):
        img = self.load_image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    def source_files(self) -> list[Path]:
        """Every file the samples come from (label files, images): keys the fast cache."""
        return self._sources + [p for p, _ in self.samples]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, root='{self.root}')")

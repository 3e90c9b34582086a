"""Built-in datasets by name: ``load_dataset("digits")``, ``load_dataset("fashion-mnist")``.

Fashion-MNIST is looked for, in this order, in the folder given as ``root``; in
``$SIMCNE_DATA/fashion-mnist`` and ``$SIMCNE_DATA``; in ``/usr/share/datasets/fashion-mnist``
(Debian's ``dataset-fashion-mnist`` package: ``apt-get install dataset-fashion-mnist``); in
the cache folder (``$SIMCNE_CACHE``, else ``$XDG_CACHE_HOME/simcne``, else
``~/.cache/simcne``). When the files are in none of these and ``download=True``, they are
downloaded from Zalando Research's address into ``root`` (or the cache folder), each to a
temporary file that is moved into place only after its checksum matches.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .common import check_split
from .idx import read_idx_folder
from .store import ImageStore

DATASETS = ("digits", "fashion-mnist")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# the MD5 sums that Zalando Research publishes for the four .gz files
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def resolve_name(name: str) -> str | None:
    """The built-in dataset that ``name`` spells (case and ``_`` ignored), or None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


def load_dataset(
    name: str,
    *,
    split: str | None = None,
    root=None,
    download: bool = True,
    cache_dir=None,
) -> ImageStore:
    """Load a built-in dataset as an :class:`ImageStore` with labels and class names.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`:

        - ``"digits"``: scikit-learn's 1,797 8x8 handwritten digits (values 0-16, scaled to
          0-255 by ``round(v * 255 / 16)``), classes ``"0"`` ... ``"9"``; no split.
        - ``"fashion-mnist"``: 70,000 28x28 grayscale images in 10 classes (60,000 train,
          10,000 test), found or downloaded as the module docstring says.
    split : {"train", "test", "all"}, default=None
        ``None`` is ``"all"`` (train followed by test).
    root : str or os.PathLike, optional
        A folder holding the dataset's files (``train-images-idx3-ubyte.gz`` ...). When it
        lacks them and ``download=True``, they are downloaded into it.
    download : bool, default=True
        Download missing files (checksums verified); ``False`` raises FileNotFoundError.
    cache_dir : str or os.PathLike, optional
        Where downloads go without ``root`` (default: see the module docstring).

    Returns
    -------
    ImageStore

    Examples
    --------
    >>> from simcne.data.datasets import load_dataset
    >>> store = load_dataset("digits")
    >>> len(store), store.image_size, store.class_names[:3]
    (1797, (8, 8), ['0', '1', '2'])
    """
    key = resolve_name(name) if isinstance(name, str) else None
    if key is None:
        raise ValueError(
            f"The dataset name {name!r} is unknown: expected one of {', '.join(DATASETS)}, "
            f"got {name!r}."
        )
    if key == "digits":
        if split not in (None, "all"):
            raise ValueError(
                f"The 'split' parameter for 'digits' must be None or 'all' (it has no "
                f"train/test split), got {split!r}."
            )
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        store = ImageStore(images, d.target.astype(np.int64), "NCHW", [str(i) for i in range(10)])
        store.meta.update(format="digits", name="digits", split="all")
        return store
    split = check_split(split, "'fashion-mnist'")
    folder = fashion_mnist_folder(split, root=root, download=download, cache_dir=cache_dir)
    store = read_idx_folder(folder, split=split)
    store.class_names = list(FASHION_MNIST_CLASSES)
    store.meta.update(name="fashion-mnist", folder=os.fspath(folder))
    return store


def _wanted(split: str) -> list[str]:
    prefixes = ["train", "t10k"] if split == "all" else ["train" if split == "train" else "t10k"]
    return [f for f in FASHION_MNIST_FILES if f.split("-")[0] in prefixes]


def _has_files(folder: Path, names: list[str]) -> bool:
    return all((folder / n).is_file() or (folder / n[:-3]).is_file() for n in names)


def cache_folder(cache_dir=None) -> Path:
    """Where downloads are kept: ``cache_dir``, ``$SIMCNE_CACHE``, ``$XDG_CACHE_HOME/simcne``
    or ``~/.cache/simcne``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("SIMCNE_CACHE"):
        return Path(os.environ["SIMCNE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "simcne"


def fashion_mnist_folder(split="all", *, root=None, download=True, cache_dir=None) -> Path:
    """The folder holding Fashion-MNIST's files for ``split``, downloading them if needed."""
    names = _wanted(split)
    if root is not None:
        candidates = [Path(root)]
    else:
        env = os.environ.get("SIMCNE_DATA")
        candidates = [Path(env) / "fashion-mnist", Path(env)] if env else []
        candidates += [DEBIAN_FASHION_MNIST, cache_folder(cache_dir) / "fashion-mnist"]
    for folder in candidates:
        if _has_files(folder, names):
            return folder
    target = candidates[0] if root is not None else candidates[-1]
    if not download:
        raise FileNotFoundError(
            f"The Fashion-MNIST files {', '.join(names)} were not found: expected them in "
            f"{', '.join(repr(os.fspath(c)) for c in candidates)}, got none there. Pass "
            "download=True, or install Debian's dataset-fashion-mnist, or set root= or "
            "$SIMCNE_DATA to a folder holding them."
        )
    target.mkdir(parents=True, exist_ok=True)
    for n in names:
        if not _has_files(target, [n]):
            download_file(FASHION_MNIST_URL + n, target / n, FASHION_MNIST_FILES[n])
    return target


def download_file(url: str, dest, checksum: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` if its checksum (``"md5:..."`` or ``"sha256:..."``) matches.

    The bytes go to a temporary file in ``dest``'s folder, which is moved onto ``dest`` with
    ``os.replace`` only after the checksum passed; otherwise it is removed and nothing is
    left behind.

    Raises
    ------
    ConnectionError
        If the address cannot be reached (e.g. the machine is offline).
    ValueError
        If the downloaded bytes do not match ``checksum``.
    """
    dest = Path(dest)
    algo, _, expected = checksum.partition(":")
    digest = hashlib.new(algo)
    with atomic_path(dest, suffix=".part", wrap_errors=False) as tmp:
        with open(tmp, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        f.write(chunk)
            except (urllib.error.URLError, OSError) as err:
                raise ConnectionError(
                    f"The download of {url} failed: expected the file, got {err}. Is the "
                    "machine offline? Put the files in a folder and pass root= (or set "
                    "$SIMCNE_DATA), or install Debian's dataset-fashion-mnist."
                ) from err
        if digest.hexdigest() != expected.lower():  # raising here keeps nothing
            raise ValueError(
                f"The download of {url} has the wrong {algo} checksum: expected {expected}, "
                f"got {digest.hexdigest()}. The file was not kept."
            )
    return dest

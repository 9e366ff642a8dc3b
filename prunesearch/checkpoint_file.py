"""Reading a PyTorch checkpoint file within bounds, touching nothing but the file itself.

Only PyTorch's zip format (``torch.save`` since PyTorch 1.6, which OSTrack and LiteTrack ship) is
read. The two legacy formats are refused in one line: torch's loader of the legacy tar format
extracts the ``storages`` member to disk with no filter (a hard link, symlink, FIFO or device
member changes or blocks on a file elsewhere), and its loader of the pre-1.6 stream allocates every
storage at whatever size the file declares.

Sizes are bounded before anything is allocated:

* :func:`open_archive`: the zip's records may declare no more bytes than the file holds (PyTorch
  stores records uncompressed, so a record that would inflate to gigabytes is refused unread), and
  the pickle is at most :data:`MAX_PICKLE_BYTES`.
* :func:`read_restricted` (for training files, whose pickled settings ``weights_only`` refuses):
  unpickles with :class:`RestrictedUnpickler`, which never runs a function the file names; each
  storage is read only after its declared size matches its record, and each tensor is made only
  after its shape, strides and offset are checked to lie within its storage.
* :func:`check_tensors` (after ``torch.load(weights_only=True)``): no tensor claims more elements
  than its storage holds (a stride-0 view would otherwise become gigabytes when copied).
* Walking what a file holds (:func:`check_tensors`, :func:`plain`) visits each object once, at most
  :data:`MAX_OBJECTS` objects, nested at most :data:`MAX_NESTING` deep: a kilobyte of shared
  references or a deeply nested pickle is one line, not an exponential copy or a RecursionError.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from prunesearch.errors import CheckpointError

# The object graph of a checkpoint: real ones (a ViT-B with its optimiser state) take well under 1 MB;
# unpickling may take ~60 times its size in memory (a one-byte opcode makes an empty dict).
MAX_PICKLE_BYTES = 8 << 20
MAX_TENSORS = 100_000
MAX_OBJECTS = 2_000_000
MAX_NESTING = 100
ZIP_MAGIC = b"PK\x03\x04"
# The pickled magic number that opens PyTorch's pre-1.6 format (protocol 2, LONG1 of 10 bytes).
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
RESAVE = "load it once with PyTorch >= 1.6 somewhere you trust and save it again (torch.save writes the zip format)"


def open_archive(path: Path, verb: str = "load") -> tuple[zipfile.ZipFile, str]:
    """The zip archive of a checkpoint and the prefix of its records (``archive/``), checked for
    sizes; every refusal is one line, ``cannot <verb> <path> as a PyTorch checkpoint (...)``."""
    def refuse(detail: str) -> CheckpointError:
        return CheckpointError(f"cannot {verb} {path} as a PyTorch checkpoint ({detail})")

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as err:
        raise refuse(err.strerror or str(err)) from None
    if not head.startswith(ZIP_MAGIC):
        if head[257:262] == b"ustar":
            raise refuse(f"a tar archive: PyTorch's legacy tar format, whose loader writes its members to disk; {RESAVE}")
        if head.startswith(LEGACY_MAGIC):
            raise refuse(f"PyTorch's legacy format from before 1.6, whose loader trusts the sizes it declares; {RESAVE}")
        raise refuse("not the zip archive torch.save writes")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise refuse(f"damaged zip archive: {err}") from None
    records = archive.infolist()
    declared = sum(r.file_size for r in records)
    if declared > size:
        archive.close()
        raise refuse(f"its records declare {declared} bytes in a {size}-byte file; PyTorch stores records "
                     "uncompressed, so a checkpoint's records never exceed its size")
    pickles = [r for r in records if r.filename.endswith("data.pkl") and r.filename.count("/") == 1]
    if len(pickles) != 1:
        archive.close()
        raise refuse(f"{len(pickles)} data.pkl records where PyTorch writes one")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        archive.close()
        raise refuse(f"its object graph data.pkl is {pickles[0].file_size} bytes, over the limit MAX_PICKLE_BYTES = {MAX_PICKLE_BYTES}")
    return archive, pickles[0].filename[: -len("data.pkl")]


def _read_record(archive: zipfile.ZipFile, name: str, size: int, source: Path) -> bytearray:
    """Exactly ``size`` bytes of record ``name``, into a buffer allocated at the record's checked size."""
    buffer = bytearray(size)
    view, filled = memoryview(buffer), 0
    with archive.open(name) as record:
        while filled < size and (chunk := record.read(min(1 << 24, size - filled))):
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != size or record.read(1):
            raise CheckpointError(f"{source}: record {name} does not hold the {size} bytes its entry declares")
    return buffer


# What the restricted unpickler builds for real: tensors and the containers around them. Every
# other global becomes an inert placeholder class, so no function named by the file ever runs.
class Opaque:
    """An object of a class the file names but prunesearch will not import: it keeps the plain
    state that pickle hands it and nothing else; calling it (pickle's REDUCE) runs nothing."""

    pickled_class = "?"

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class RestrictedUnpickler(pickle.Unpickler):
    """Tensors and plain containers are built; every other class or function is an :class:`Opaque`.

    Reading from ``archive``, storages (``persistent_load``) come from its records after their sizes
    are checked; without one, no storage can be referenced.
    """

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile | None = None, prefix: str = "", source: Path = Path("?")) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source
        self.storages: dict[str, torch.storage.TypedStorage] = {}
        self.storage_bytes = 0
        self.tensors = 0
        self.placeholders: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return _storage_dtype(name)
        key = (module, name)
        if key not in self.placeholders:  # one class per name: a pickle naming it a million times costs nothing
            self.placeholders[key] = type(name, (Opaque,), {"pickled_class": f"{module}.{name}"})
        return self.placeholders[key]

    def persistent_load(self, pid: object) -> torch.storage.TypedStorage:
        """A storage record ``("storage", dtype, key, location, numel)``, read (once) onto the CPU."""
        if self.archive is None:
            raise CheckpointError(f"{self.source}: a storage is referenced outside a zip archive")
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)
                and isinstance(pid[2], str) and type(pid[4]) is int and pid[4] >= 0):
            raise CheckpointError(f"{self.source}: a storage reference {str(pid)[:80]} is not PyTorch's")
        _, dtype, key, _, numel = pid
        if key in self.storages:
            return self.storages[key]
        name = f"{self.prefix}data/{key}"
        try:
            declared = self.archive.getinfo(name).file_size
        except KeyError:
            raise CheckpointError(f"{self.source}: storage record {name} is missing") from None
        size = numel * torch.empty((), dtype=dtype).element_size()
        if size != declared:
            raise CheckpointError(f"{self.source}: storage {key} declares {size} bytes but its record holds {declared}")
        self.storage_bytes += size  # bounded by the file's size (open_archive), each record counted once
        data = _read_record(self.archive, name, size, self.source)
        untyped = torch.frombuffer(data, dtype=torch.uint8).untyped_storage() if size else torch.UntypedStorage(0)
        storage = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        self.storages[key] = storage
        return storage

    def _rebuild_tensor(self, storage: object, offset: object, size: object, stride: object, *rest: object) -> torch.Tensor:
        """torch's ``_rebuild_tensor_v2``, once the tensor is checked to lie within its storage."""
        self.tensors += 1
        if self.tensors > MAX_TENSORS:
            raise CheckpointError(f"{self.source} holds more than MAX_TENSORS = {MAX_TENSORS} tensors")
        problem = tensor_bounds(storage, offset, size, stride)
        if problem:
            raise CheckpointError(f"{self.source}: {problem}")
        return torch._utils._rebuild_tensor_v2(storage, offset, _dimensions(size), _dimensions(stride), False, collections.OrderedDict())


def _storage_dtype(name: str) -> torch.dtype:
    if name == "UntypedStorage":
        return torch.uint8
    try:
        return torch.serialization.StorageType(name).dtype
    except (KeyError, AttributeError):
        raise CheckpointError(f"unknown storage type torch.{name}") from None


def _rebuild_parameter(data: object, *rest: object) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError(f"a parameter is built from a {type(data).__name__}, not a tensor")
    return data


def _dimensions(values: object) -> tuple[int, ...] | None:
    """``values`` as a tuple of non-negative whole numbers, or None."""
    if isinstance(values, (tuple, list)) and all(type(v) is int and v >= 0 for v in values):
        return tuple(values)
    return None


def tensor_bounds(storage: object, offset: object, size: object, stride: object) -> str | None:
    """Why a tensor of ``size``/``stride`` at ``offset`` cannot be a view of ``storage`` without
    claiming memory it does not hold (stride-0 or overlapping views larger than the storage), or None."""
    if not isinstance(storage, torch.storage.TypedStorage) or type(offset) is not int or offset < 0:
        return "a tensor is not built on a storage of the file"
    shape, strides = _dimensions(size), _dimensions(stride)
    if shape is None or strides is None or len(shape) != len(strides):
        return f"a tensor's shape {str(size)[:60]} or strides {str(stride)[:60]} are not non-negative whole numbers"
    elements = storage._size()  # the element count (size() warns that TypedStorage is deprecated)
    numel = math.prod(shape)
    extent = offset + sum((n - 1) * s for n, s in zip(shape, strides)) + 1 if numel else 0
    if numel > elements or extent > elements:
        return (f"a tensor of shape {shape[:8]} (strides {strides[:8]}) claims {numel} elements of a storage "
                f"of {elements}; a checkpoint's tensors never exceed their storage")
    return None


def read_restricted(path: Path) -> object:
    """The object a zip checkpoint holds, unpickled by :class:`RestrictedUnpickler` (no code of the
    file runs, nothing is written anywhere); every size checked before it is allocated."""
    archive, prefix = open_archive(path, "read")
    with archive:
        order = f"{prefix}byteorder"
        if order in archive.namelist() and archive.read(order).strip() not in (b"little", b""):
            raise CheckpointError(f"cannot read {path}: it was saved on a big-endian machine")
        data = _read_record(archive, f"{prefix}data.pkl", archive.getinfo(f"{prefix}data.pkl").file_size, path)
        return RestrictedUnpickler(io.BytesIO(data), archive, prefix, path).load()


def check_tensors(payload: object, source: str) -> None:
    """Every tensor ``payload`` holds lies within its storage (see :func:`tensor_bounds`); the walk
    is bounded as :func:`plain`'s."""
    seen: set[int] = set()
    stack = [(payload, 0)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, torch.Tensor):
            if obj.numel() * obj.element_size() > obj.untyped_storage().nbytes():
                raise CheckpointError(
                    f"{source}: a tensor of shape {tuple(obj.shape)[:8]} claims more elements than its storage holds "
                    "(a stride-0 or overlapping view); a checkpoint's tensors never exceed their storage"
                )
            continue
        if not isinstance(obj, (dict, list, tuple)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        _count(len(seen), depth, source)
        stack.extend((v, depth + 1) for v in (obj.values() if isinstance(obj, dict) else obj))


def _count(objects: int, depth: int, source: object) -> None:
    if objects > MAX_OBJECTS:
        raise CheckpointError(f"{source} holds more than MAX_OBJECTS = {MAX_OBJECTS} objects")
    if depth > MAX_NESTING:
        raise CheckpointError(f"{source} nests objects more than MAX_NESTING = {MAX_NESTING} deep")


def plain(obj: object, source: object = "the checkpoint") -> object:
    """Only tensors, numbers, strings and containers of them; an :class:`Opaque` becomes its state
    (with its class name under ``"__class__"``) when that state is a dict, else None.

    An object referenced twice is converted once and shared in the result, so a pickle of shared
    references stays as small as it was.
    """
    done: dict[int, object] = {}

    def convert(item: object, depth: int) -> object:
        if isinstance(item, torch.Tensor):
            return item.detach()
        if item is None or isinstance(item, (bool, int, float, str)):
            return item
        if id(item) in done:
            return done[id(item)]
        _count(len(done) + 1, depth, source)
        done[id(item)] = None  # a cycle back to an object being converted becomes None
        if isinstance(item, dict):
            out: object = {k: convert(v, depth + 1) for k, v in item.items() if isinstance(k, (str, int))}
        elif isinstance(item, (list, tuple)):
            values = [convert(v, depth + 1) for v in item]
            out = tuple(values) if type(item) is tuple else values
        elif isinstance(item, Opaque) and isinstance(item.state, dict):
            out = {"__class__": item.pickled_class, **(convert(item.state, depth + 1) or {})}  # type: ignore[dict-item]
        else:
            out = None
        done[id(item)] = out
        return out

    return convert(obj, 0)

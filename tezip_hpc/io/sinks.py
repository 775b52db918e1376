"""Frame sinks for decompression: a .npy file, a multi-page TIFF (.tif/.tiff), a folder of
images, or an HDF5 dataset (``file.h5:/path``); the kind follows OUTPUT's suffix.

Every rank constructs the sink (metadata is collective), writes its own frames, then all call ``finish()``:
output goes to a temporary name, renamed into place only when every rank succeeded, or removed by ``abort()``.
"""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path

import numpy as np

from ..archive import atomic
from ..collective import agree
from ..errors import ConfigError, TezipError, first_line
from ._hdf5 import restore_axes
from .sources import split_h5_spec


def _on_root(comm, fn):
    """Run fn on rank 0, its result or its error on every rank (collective.agree): any exception,
    not only the tool's own, becomes the same one-line error on every rank, so none waits forever."""

    def run():
        try:
            return fn()
        except TezipError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. OSError from a path like /proc/x.npy
            raise TezipError(f"cannot create the output: {type(exc).__name__}: {exc}") from None

    return agree(comm, run, root=0)


def confined_names(names: list[str]) -> list[str]:
    """Image file names from an archive, checked before anything is written: plain names in
    the output folder only (no path separator, '..', absolute path, control character or
    duplicate), so a crafted archive cannot write outside the folder or collapse frames."""
    from ..errors import ArchiveError

    seen: set[str] = set()
    for n in names:
        bad = (not isinstance(n, str) or not n or n in (".", "..") or "/" in n or "\\" in n or os.sep in n
               or any(ord(ch) < 32 for ch in n) or len(n.encode()) > 255)
        if bad:
            raise ArchiveError(f"the archive names an output file {str(n)[:60]!r}: not a plain file name "
                               f"(corrupted or crafted archive); write a .npy or .h5 instead")
        if n in seen:
            raise ArchiveError(f"the archive names the output file {n[:60]!r} twice (corrupted or crafted "
                               f"archive); write a .npy or .h5 instead")
        seen.add(n)
    return names


# Image suffixes and the Pillow modes each stores without loss (measured by round trips; BMP
# drops RGBA's alpha and cannot hold LA or I;16). Any other suffix (JPEG, WebP, GIF: lossy or
# palette; or no image format at all) is written as PNG, so a restore never changes a pixel.
LOSSLESS = {".png": ("L", "LA", "RGB", "RGBA", "I;16"), ".tif": ("L", "LA", "RGB", "RGBA", "I;16"),
            ".tiff": ("L", "LA", "RGB", "RGBA", "I;16"), ".bmp": ("L", "RGB"),
            ".pgm": ("L", "RGB", "I;16"), ".ppm": ("L", "RGB", "I;16")}


TIFF_PAGES = "TIFF"  # the folder sink's mode for what Pillow cannot write exactly: one TIFF per frame
LOSSLESS_FOR_TIFF = (".tif", ".tiff")


def lossless_names(names: list[str], mode: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The archive's (checked) frame names, each one whose suffix would not keep ``mode``'s
    pixels exactly (a .jpg, .webp, .gif, or a name like ``a.exe``) renamed to PNG (to .tif
    for TIFF_PAGES): ``a.jpg`` -> ``a.png``, or ``a.jpg.png`` where ``a.png`` is taken; and the
    (old, new) pairs renamed."""
    taken = set(names)
    out, renamed = [], []
    ext = ".tif" if mode == TIFF_PAGES else ".png"
    for n in names:
        stem, dot, suffix = n.rpartition(".")
        keeps = ("." + suffix.lower()) in LOSSLESS_FOR_TIFF if mode == TIFF_PAGES else \
            mode in LOSSLESS.get("." + suffix.lower(), ())
        if dot and keeps:
            out.append(n)
            continue
        new = f"{stem}{ext}" if dot and stem else f"{n}{ext}"
        if new in taken:
            new = f"{n}{ext}"
        taken.add(new)
        out.append(new)
        renamed.append((n, new))
    return out, renamed


class FrameSink:
    """Base: ``write(t, frames)`` stores frames t, t+1, ... (relative to the sink's start)."""

    def __init__(self, final: Path, shape, dtype, comm, force: bool = False) -> None:
        self.final, self.shape, self.dtype, self.comm = final, tuple(shape), np.dtype(dtype), comm
        self.force = bool(force)

    def write(self, t: int, frames: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def finish(self) -> None:
        self._close()
        self.comm.Barrier()
        _on_root(self.comm, lambda: atomic.commit(self.tmp, self.final, self.force))

    def abort(self, close: bool = True) -> None:
        try:
            if close:
                self._close()
            else:  # writes failed (a full disk): closing would fail again; keep it until exit
                atomic.keep_open(self)
        except Exception:  # noqa: BLE001 - best effort on the error path
            pass
        if self.comm.rank == 0:
            atomic.remove(self.tmp)


class _PositionalSink(FrameSink):
    """A file whose frames lie contiguously from a data offset: rank 0 creates it (at a temp
    name) with ``_create``, then every rank writes its frames with positional writes, so the
    output never sits in any process's memory."""

    def __init__(self, final, shape, dtype, comm, force=False) -> None:
        super().__init__(final, shape, dtype, comm, force)

        def create():
            atomic.check_target(final, force)
            tmp = atomic.temp_path(final)
            return tmp, self._create(tmp)

        self.tmp, self._offset = _on_root(comm, create)
        self._frame_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.fd: int | None = os.open(self.tmp, os.O_WRONLY)

    def _create(self, tmp: str) -> int:  # pragma: no cover - abstract
        """Create the file at tmp; return the byte offset of frame 0."""
        raise NotImplementedError

    def write(self, t, frames) -> None:
        data = np.ascontiguousarray(frames, self.dtype)
        if not data.size:
            return
        view = memoryview(data.reshape(-1).view(np.uint8))
        pos = self._offset + t * self._frame_bytes
        while view:  # pwrite may write less than asked
            n = os.pwrite(self.fd, view, pos)
            view, pos = view[n:], pos + n

    def _close(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None


class NpySink(_PositionalSink):
    """A .npy file."""

    def _create(self, tmp: str) -> int:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=self.shape)
        mm.flush()
        offset = int(mm.offset)
        del mm
        return offset


class TiffSink(_PositionalSink):
    """A multi-page TIFF (one page per frame; BigTIFF beyond 2 GiB) of any supported dtype,
    uncompressed and contiguous, written by tifffile; a TIFF input's ImageJ or OME description
    and resolution (io/_tiff.tiff_metadata) are written back."""

    def __init__(self, final, shape, dtype, comm, force=False, attrs=None) -> None:
        self.meta = {k: v for k, v in (attrs or {}).items() if k.startswith("tiff_")}
        super().__init__(final, shape, dtype, comm, force)

    def _tags(self) -> dict:
        m, kw = self.meta, {}
        if isinstance(m.get("tiff_description"), str) and (m.get("tiff_imagej") or m.get("tiff_ome")):
            kw["description"] = m["tiff_description"].encode()  # bytes: OME may carry UTF-8 (µm)
            kw["metadata"] = None  # the description as it was, not tifffile's own
        res = m.get("tiff_resolution")
        if isinstance(res, list) and len(res) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in res):
            kw["resolution"] = (float(res[0]), float(res[1]))
            unit = m.get("tiff_resolution_unit")
            kw["resolutionunit"] = int(unit) if unit in (1, 2, 3) else 2
        return kw

    def _create(self, tmp: str) -> int:
        import tifffile

        rgb = len(self.shape) == 4 and self.shape[3] == 3 and self.dtype == np.uint8
        kw = {"planarconfig": "contig"} if len(self.shape) == 4 else {}
        kw.update(self._tags())
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        mm = tifffile.memmap(tmp, shape=self.shape, dtype=self.dtype, photometric="rgb" if rgb else "minisblack",
                             bigtiff=nbytes > (1 << 31), **kw)
        mm.flush()
        offset = int(mm.offset)
        del mm
        return offset


class ImageFolderSink(FrameSink):
    """A folder of images, names kept: Pillow images for uint8 gray (L), gray + alpha (LA),
    RGB, RGBA and uint16 gray (I;16); every other dtype or channel count (float, 32-bit,
    multi-channel 16-bit) as one TIFF per frame (tifffile: exact for every dtype)."""

    def __init__(self, final, shape, dtype, comm, names=None, first=0, force=False) -> None:
        super().__init__(final, shape, dtype, comm, force)
        T, H, W, C = self.shape
        if (self.dtype == np.uint8 and C in (1, 2, 3, 4)) or (self.dtype == np.uint16 and C == 1):
            self.mode = {2: "LA", 3: "RGB", 4: "RGBA"}.get(C, "I;16" if self.dtype == np.uint16 else "L")
        else:
            self.mode = TIFF_PAGES
        if names is not None and len(names) >= first + T:
            full, renamed = lossless_names(confined_names(list(names)), self.mode)
            self.names = confined_names(full)[first:first + T]
            if renamed and comm.rank == 0:
                old, new = renamed[0]
                what = f"{self.dtype} frames" if self.mode == TIFF_PAGES else f"the {self.mode} pixels"
                kind = "TIFF" if self.mode == TIFF_PAGES else "PNG"
                print(f"note: {final}: {len(renamed)} frame name(s) have a suffix that would not keep "
                      f"{what} exactly (lossy like JPEG/WebP/GIF, or not such an image format): "
                      f"written as {kind} instead, lossless ({old!r} -> {new!r}, ...)", file=sys.stderr, flush=True)
        else:
            ext = ".tif" if self.mode == TIFF_PAGES else ".png"
            self.names = [f"frame_{first + k:06d}{ext}" for k in range(T)]

        def create():
            atomic.check_target(final, force, want_dir=True)
            tmp = atomic.temp_path(final)
            tmp.mkdir()
            return tmp

        self.tmp = _on_root(comm, create)

    def write(self, t, frames) -> None:
        for k, f in enumerate(frames):
            arr = np.ascontiguousarray(f.reshape(self.shape[1:3]) if self.shape[3] == 1 else f.reshape(self.shape[1:]))
            if self.mode == TIFF_PAGES:
                import tifffile

                tifffile.imwrite(self.tmp / self.names[t + k], arr, photometric="minisblack",
                                 **({"planarconfig": "contig"} if arr.ndim == 3 else {}))
            else:
                from PIL import Image

                Image.fromarray(arr).save(self.tmp / self.names[t + k])  # 2/4 ch -> LA/RGBA


class H5Sink(FrameSink):
    """One HDF5 dataset, written through the mpio driver when parallel.

    A new file is written under a temporary name and renamed into place. In an existing HDF5
    file only the named dataset is touched: the frames go to a temporary dataset beside it,
    which replaces the named one (``force``) when every rank succeeded, or is deleted on
    failure; the file's other datasets and attributes are kept either way."""

    def __init__(self, final, dset, shape, dtype, comm, channel_axis=True, force=False, attrs=None,
                 groups=None) -> None:
        import h5py

        super().__init__(final, shape, dtype, comm, force)
        self.dset = "/" + posixpath.normpath(dset).strip("/")
        if self.dset == "/":
            raise ConfigError(f"{final}:{dset}: name a dataset, as {final}:/frames")

        def target():
            if not final.exists():
                atomic.check_target(final, force)
                return ("new", atomic.temp_path(final))
            if final.is_dir() or not h5py.is_hdf5(final):
                raise ConfigError(f"{final} exists and is not an HDF5 file: choose another name or remove it")
            if not os.access(final, os.W_OK):
                raise ConfigError(f"{final} is not writable")
            try:
                with h5py.File(final, "r") as f:
                    node = f.get(self.dset)
                    if node is not None and not isinstance(node, h5py.Dataset):
                        raise ConfigError(f"{final}:{self.dset} is a group, not a dataset")
                    if node is not None and not force:
                        raise ConfigError(f"{final}:{self.dset} exists (use --force to replace that dataset; "
                                          f"the rest of the file is kept)")
            except OSError as exc:
                raise ConfigError(f"{final}: cannot read the HDF5 file ({first_line(exc)})") from None
            return ("into", "/" + atomic.temp_name(posixpath.basename(self.dset)))

        self.kind, where = _on_root(comm, target)
        self.into = self.kind == "into"
        self.tmp = final if self.into else where
        self.tmp_dset = where if self.into else self.dset
        self.parallel = comm.size > 1 and h5py.get_config().mpi
        out_shape = self.shape if channel_axis else self.shape[:3]
        mode = "r+" if self.into else "w"
        self.f = None
        if self.parallel:
            self.f = h5py.File(self.tmp, mode, driver="mpio", comm=comm)
        elif comm.size == 1:
            self.f = h5py.File(self.tmp, mode)
        else:
            raise ConfigError("writing HDF5 from several ranks needs h5py built on parallel HDF5 "
                              "(run scripts/install.sh), or write a .npy instead")
        with atomic.hdf5_writes(final):
            self.ds = self.f.create_dataset(self.tmp_dset, shape=out_shape, dtype=self.dtype)
        self._set_attrs(self.ds, attrs)  # the source dataset's attributes, restored (collective)
        groups = groups or {}
        if not self.into and groups.get("dataset") == "/" + self.dset.strip("/"):
            # a new file, the input's own dataset path: its groups' attributes too (NeXus: the
            # root's default, NXentry, NXdata's signal and axes), so viewers find the data again
            for g, a in sorted(groups["groups"].items()):
                if g == "/" or ("/" + self.dset.strip("/")).startswith(g.rstrip("/") + "/"):
                    self._set_attrs(self.f[g] if g == "/" else self.f.require_group(g), a)
            restore_axes(self.f, groups.get("axes"), comm.rank)  # NXdata's axis datasets

    def _set_attrs(self, node, attrs) -> None:
        for k, v in sorted((attrs or {}).items()):
            if k == "tiff_description":  # a TIFF's page description (up to 64 KiB) means nothing here
                continue
            if self.parallel and isinstance(v, str):
                v = np.bytes_(v.encode())  # parallel HDF5 writes fixed-length strings only
            try:
                node.attrs[k] = v
            except (TypeError, ValueError, RuntimeError, OSError):  # (every rank alike: same values)
                pass

    def write(self, t, frames) -> None:
        """Frames t.. into the dataset; a failed HDF5 write is typed (a full disk is exit 5)
        and marks the file as one HDF5 cannot close again (archive/atomic.hdf5_writes)."""
        with atomic.hdf5_writes(self.final, frames.nbytes):
            self.ds[t:t + len(frames)] = frames.reshape((len(frames),) + self.ds.shape[1:])

    def _close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None

    def finish(self) -> None:
        if not self.into:
            with atomic.hdf5_writes(self.final):
                self._close()
            return super().finish()
        # collective metadata operations: every rank replaces the dataset, then closes the file
        with atomic.hdf5_writes(self.final):
            self.ds = None
            if self.dset in self.f:
                del self.f[self.dset]
            self.f.require_group(posixpath.dirname(self.dset) or "/")
            self.f.move(self.tmp_dset, self.dset)
            self._close()
        self.comm.Barrier()

    def abort(self, close: bool = True) -> None:
        if not self.into:
            return super().abort(close)
        if not close:  # writes failed (a full disk): HDF5 cannot tidy the file up; keep it until exit
            atomic.keep_open(self)
            return
        try:
            if self.f is not None and self.tmp_dset in self.f:
                self.ds = None
                del self.f[self.tmp_dset]
        except Exception:  # noqa: BLE001 - best effort on the error path
            pass
        try:
            self._close()
        except Exception:  # noqa: BLE001
            pass


def open_sink(spec: str, shape, dtype, comm, *, channel_axis=True, names=None, first=0, force=False,
              inputs=(), attrs=None, groups=None) -> FrameSink:
    """A sink for OUTPUT: file.h5:/dataset, a .npy or .tif file, or (anything else) a folder of images.
    ``inputs``: files this job reads, which the output must never be."""
    spec = str(spec)
    h5 = split_h5_spec(spec)
    target = h5[0] if h5 else spec
    for path in inputs:
        if os.path.exists(target) and os.path.exists(path) and os.path.samefile(target, path):
            raise ConfigError(f"{spec}: that is the file this job reads ({path}): write to another file")
    if h5:
        return H5Sink(Path(h5[0]), h5[1], shape, dtype, comm, channel_axis=channel_axis, force=force,
                      attrs=attrs, groups=groups)
    if spec.endswith((".h5", ".hdf5")):
        raise ConfigError(f"{spec}: name the dataset too, as {spec}:/frames")
    out_shape = tuple(shape) if channel_axis else tuple(shape)[:3]
    if spec.endswith(".npy"):
        return NpySink(Path(spec), out_shape, dtype, comm, force=force)
    if spec.lower().endswith((".tif", ".tiff")):
        return TiffSink(Path(spec), out_shape, dtype, comm, force=force, attrs=attrs)
    if Path(spec).suffix and not Path(spec).is_dir():
        raise ConfigError(f"{spec}: unknown output kind (use a folder name, a .npy or .tif file or "
                          f"file.h5:/dataset)")
    return ImageFolderSink(Path(spec), shape, dtype, comm, names=names, first=first, force=force)

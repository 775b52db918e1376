"""`tezip-hpc verify ARCHIVE REFERENCE`: check every element of the decoded archive against the
archive's own error bound, report max error, PSNR, NRMSE and ratio, and optionally draw it.

Decoding is chunk by chunk (memory stays at one chunk); the reference is any input the
compress command takes (image folder, .npy, file.h5:/dataset) or, from Python, an array.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from .errors import ConfigError, TezipError

EXIT_VIOLATED = 9


class BoundViolated(TezipError):
    """Some decoded element lies outside the archive's error bound."""

    exit_code = EXIT_VIOLATED


def check_frames(x: np.ndarray, y: np.ndarray, cfg) -> tuple[int, np.ndarray, np.ndarray]:
    """(elements out of bound, per-frame max |error| over finite elements, per-frame sum of
    squared errors) under the archive's CodecConfig ``cfg``. Non-finite originals must be restored bit for bit;
    pwrel bounds each element by bound·|x| and keeps zeros exact."""
    if x.shape != y.shape:
        raise ConfigError(f"the reference has frames of shape {x.shape[1:]}, the archive {y.shape[1:]}")
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    bad = np.zeros(x.shape, bool)
    if x.dtype.kind == "f":
        nf = ~np.isfinite(xd)
        bits = {4: np.uint32, 8: np.uint64, 2: np.uint16}[x.dtype.itemsize]
        bad |= nf & (x.view(bits) != y.view(bits))
        xd, yd = np.where(nf, 0.0, xd), np.where(nf, 0.0, yd)
    err = np.abs(yd - xd)
    if cfg.mode == "pwrel":
        bad |= ~(err <= cfg.bound_value() * np.abs(xd)) | ((xd == 0) & (yd != 0))
    else:
        bad |= ~(err <= cfg.effective_abs_bound())
    flat = err.reshape(len(err), -1)
    per_frame = flat.max(axis=1) if err.size else np.zeros(len(err))
    return int(bad.sum()), per_frame, np.einsum("ij,ij->i", flat, flat) if err.size else np.zeros(len(err))


def verify(archive, reference, *, decoded=None, frames=None, plot=None, model: str | None = None) -> dict:
    """Check ``archive`` against ``reference`` (path or array); returns the figures.

    ``decoded``: an output already written by ``decompress`` (any output kind), checked
    instead of decoding the archive again; ``frames``: "START:STOP" or a slice (step 1), the
    frames that output holds. ``plot``: a PNG to draw (per-frame max error against the
    bound, keyframes marked; the worst frame's original, restored and error map)."""
    from .api import _parse_frames
    from .api import open as open_archive
    from .io.sources import ArraySource, open_source

    if plot:  # before any work: the picture must have somewhere to go
        folder = os.path.dirname(os.path.abspath(plot))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ConfigError(f"--plot {plot}: folder {folder} does not exist or is not writable")
    src = open_source(str(reference)) if isinstance(reference, (str, os.PathLike)) else ArraySource(reference)
    out = None
    try:
        with open_archive(archive, model=model) as a:
            attrs, cfg = a.attrs, a.codec_config
            mode, bounds = cfg.mode, [float(b) for b in cfg.bounds]
            vrange = [float(v) for v in attrs["value_range"]]
            T = len(a)
            if src.n_frames != T:
                raise ConfigError(f"{reference}: {src.n_frames} frames, the archive holds {T}")
            sel = _parse_frames(frames, T) if isinstance(frames, str) else (frames or slice(0, T))
            lo_f, hi_f, step = sel.indices(T)
            if step != 1 or hi_f <= lo_f:
                raise ConfigError(f"--frames {frames}: a non-empty range START:STOP is needed")
            if decoded is not None:
                out = open_source(str(decoded))
                if out.n_frames != hi_f - lo_f or out.dtype != np.dtype(a.dtype):
                    raise ConfigError(f"{decoded}: {out.n_frames} frames of {out.dtype}, expected "
                                      f"{hi_f - lo_f} of {a.dtype} (frames {lo_f}:{hi_f} of the archive)")

                def restored(i, j):
                    return out.read(i - lo_f, j - lo_f).reshape((j - i,) + a.shape[1:])
            else:
                def restored(i, j):
                    return a[i:j]
            first = sorted({lo_f, hi_f, *(c for c in a.chunk_starts if lo_f < c < hi_f)})
            violations, sse, n = 0, 0.0, 0
            per_frame, frame_sse = np.zeros(hi_f - lo_f), np.zeros(hi_f - lo_f)
            worst = (-1.0, lo_f)
            for lo, hi in zip(first[:-1], first[1:]):
                y = restored(lo, hi)
                x = src.read(lo, hi).reshape(y.shape)
                v, pf, s = check_frames(x, y, cfg)
                violations, sse, n = violations + v, sse + float(s.sum()), n + x.size
                per_frame[lo - lo_f:hi - lo_f], frame_sse[lo - lo_f:hi - lo_f] = pf, s
                k = int(np.argmax(pf))
                if pf[k] > worst[0]:
                    worst = (float(pf[k]), int(lo + k))
            keyframes = np.flatnonzero(a.keyframes[lo_f:hi_f])
            span = vrange[1] - vrange[0]
            mse = sse / max(n, 1)
            psnr = _psnr(frame_sse / max(n // max(hi_f - lo_f, 1), 1), span)  # per frame
            low = int(np.argmin(np.where(np.isnan(psnr), np.inf, psnr)))  # the lowest PSNR (first of ties)
            res = {"archive": str(archive), "reference": str(reference) if not isinstance(reference, np.ndarray)
                   else "<array>", "decoded": None if decoded is None else str(decoded),
                   "first_frame": lo_f, "frames": hi_f - lo_f, "elements": n, "mode": mode, "bounds": bounds,
                   "limit": None if mode == "pwrel" else cfg.effective_abs_bound(),
                   "max_error": float(per_frame.max(initial=0.0)), "worst_frame": worst[1],
                   "lowest_psnr_frame": lo_f + low, "lowest_psnr_db": float(psnr[low]) if span > 0 else None,
                   "violations": violations, "ok": violations == 0,
                   "psnr_db": float(_psnr(np.array([mse]), span)[0]) if span > 0 else None,
                   "nrmse": math.sqrt(mse) / span if span > 0 else None,
                   "ratio": float(attrs.get("input_bytes", 0)) / max(os.path.getsize(archive), 1)}
            if plot:  # the frame to show: a violation's, else the one of the lowest PSNR
                w = worst[1] if violations else lo_f + low
                _plot(plot, per_frame, psnr, keyframes, res, w, src.read(w, w + 1)[0], restored(w, w + 1)[0], lo_f)
            return res
    finally:
        src.close()
        if out is not None:
            out.close()


def _psnr(mse: np.ndarray, span: float) -> np.ndarray:
    """PSNR in dB over the value range ``span`` (inf where exact; NaN without a range)."""
    with np.errstate(divide="ignore"):
        return 10 * np.log10(span * span / mse) if span > 0 else np.full(mse.shape, np.nan)


def _plot(path, per_frame, psnr, keyframes, res, shown: int, x, y, first: int = 0) -> None:
    """Top: per-frame PSNR (left) and max |error| as a share of the bound (right), keyframes
    marked; bottom, aligned and zoomed together: the shown frame's original, restored and
    error map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 8), dpi=100, layout="constrained")
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 1.3])
    top = fig.add_subplot(gs[0, :])
    t = first + np.arange(len(per_frame))
    finite = np.isfinite(psnr)
    if finite.any():
        top.plot(t[finite], psnr[finite], lw=1, color="tab:blue", label="PSNR per frame (dB)")
    if (~finite & ~np.isnan(psnr)).any():
        top.plot(t[~finite & ~np.isnan(psnr)], np.full(int((~finite & ~np.isnan(psnr)).sum()),
                 np.nanmax(np.where(finite, psnr, np.nan)) if finite.any() else 0.0), "^", color="tab:blue",
                 ms=3, label="exact frames (PSNR ∞)")
    top.set_ylabel("PSNR (dB)", color="tab:blue")
    right = top.twinx()
    limit = res["limit"]
    share = per_frame / limit if limit else per_frame
    right.plot(t, share, lw=1, marker=".", ms=3, color="tab:orange", label="max |error|" + (" / bound" if limit else ""))
    if limit:
        right.axhline(1.0, color="red", ls="--", lw=1, label=f"bound ({res['mode']} {res['bounds']})")
        right.set_ylim(0, 1.15 * max(1.0, float(share.max(initial=0.0))))
    right.set_ylabel("max |error|" + (" / bound" if limit else ""), color="tab:orange")
    for k in keyframes:
        top.axvline(first + k, color="gray", alpha=0.25, lw=0.8)
    top.axvline(shown, color="black", lw=1, ls=":")
    top.set_xlabel(f"frame (gray lines: keyframes; dotted: frame {shown}, shown below)")
    low = res.get("lowest_psnr_db")
    top.set_title(f"{os.path.basename(res['archive'])}: max error {res['max_error']:.4g}, PSNR "
                  f"{res['psnr_db'] if res['psnr_db'] is None else round(res['psnr_db'], 2)} dB (lowest frame "
                  f"{'n/a' if low is None else round(low, 2)} dB), ratio {res['ratio']:.2f}, "
                  f"{'bound held' if res['ok'] else str(res['violations']) + ' violations'}")
    lines = top.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    top.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left", fontsize=8)
    x = np.asarray(x, np.float64).reshape(x.shape[0], x.shape[1], -1)
    y = np.asarray(y, np.float64).reshape(x.shape)
    rgb = x.shape[2] == 3 and res.get("ok") is not None and x.max(initial=0) <= 255
    show = (lambda a: np.clip(a / 255.0, 0, 1)) if rgb else (lambda a: a[..., 0])
    diff = np.abs(y - x)[..., 0] if not rgb else np.abs(y - x).max(axis=2)
    lo_v, hi_v = (None, None) if rgb else (float(np.nanmin(show(x))), float(np.nanmax(show(x))))
    axes = []
    for i, (img, title, cmap) in enumerate(((show(x), "original", "gray"), (show(y), "restored", "gray"),
                                            (diff, "|restored − original|", "magma"))):
        ax = fig.add_subplot(gs[1, i], sharex=axes[0] if axes else None, sharey=axes[0] if axes else None)
        axes.append(ax)
        im = ax.imshow(img, cmap=None if (rgb and i < 2) else cmap, vmin=None if i == 2 else lo_v,
                       vmax=(limit if (i == 2 and limit and res["ok"]) else (None if i == 2 else hi_v)))
        ax.set_title(f"{title} (frame {shown})")
        ax.axis("off")
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01, label="|error|" + (" (0 .. bound)" if limit else ""))
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:  # e.g. an unknown image suffix
        raise ConfigError(f"--plot {path}: cannot write the picture ({exc})") from None
    finally:
        plt.close(fig)


def _cmd(args: argparse.Namespace) -> int:
    import json

    res = verify(args.archive, args.reference, decoded=args.decoded, frames=args.frames, plot=args.plot,
                 model=args.model)
    if args.json:
        print(json.dumps(res, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v)))
    else:
        lim = "pointwise" if res["limit"] is None else f"{res['limit']:g}"
        def db(v):
            return "n/a" if v is None else ("inf" if v == float("inf") else f"{v:.2f}")

        psnr = db(res["psnr_db"])
        what = f"{res['decoded']} (decoded)" if res["decoded"] else res["archive"]
        print(f"verify: {what}, {res['frames']} frames from {res['first_frame']}, {res['elements']} elements; "
              f"bound {res['mode']} "
              f"{' '.join(f'{b:g}' for b in res['bounds'])} (max allowed error {lim})\n"
              f"  max error {res['max_error']:.6g} (frame {res['worst_frame']}); PSNR {psnr} dB (lowest "
              f"{db(res['lowest_psnr_db'])} dB, frame {res['lowest_psnr_frame']}); NRMSE "
              f"{res['nrmse'] if res['nrmse'] is None else format(res['nrmse'], '.3g')}; ratio {res['ratio']:.2f}")
        if args.plot:
            print(f"  plot: {args.plot}")
    if not res["ok"]:
        raise BoundViolated(f"{res['violations']} element(s) lie outside the archive's bound "
                            f"(max error {res['max_error']:.6g})")
    print("verify: every element is within the archive's bound", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("verify", help="check a decoded archive against the original: bound on every element, "
                       "PSNR, NRMSE, ratio; --plot draws it",
                       description="Decode ARCHIVE chunk by chunk and compare every element with REFERENCE "
                       "against the archive's own error bound. Exit 0 when every element is within it, "
                       f"{EXIT_VIOLATED} when any is not.",
                       epilog="examples:\n  tezip-hpc verify run.h5 frames/ --plot run.png\n"
                       "  tezip-hpc verify run.h5 field.h5:/data --decoded restored.npy --frames 100:200",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("reference", metavar="REFERENCE", help="the original: image folder, .npy or file.h5:/dataset")
    p.add_argument("--decoded", metavar="OUTPUT", help="check this already decompressed output (.npy, .tif, "
                   "image folder, file.h5:/dataset) instead of decoding ARCHIVE again")
    p.add_argument("--frames", metavar="START:STOP", help="only these frames (what a --frames decompress wrote)")
    p.add_argument("--plot", metavar="PNG", help="draw per-frame max error vs the bound and the worst frame")
    p.add_argument("--model", metavar="FILE", help="the PredNet model, if the archive does not embed it")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_cmd)

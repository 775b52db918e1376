"""What `tezip-hpc info` prints: an open archive's description, one JSON-able dict. It reads
only through ArchiveReader's methods (format.describe opens the archive and calls it)."""

from __future__ import annotations

import json
import os


def summary(r, archive) -> dict:
    """The description of the archive ``archive``, open as the ArchiveReader ``r``."""
    a = r.attrs
    sizes = r.index["size"]
    return {
        "path": archive, "format": f"{a['format']} v{a['format_version']}", "tool_version": a.get("tool_version"),
        "created": a.get("created"), "shape": list(r.shape), "dtype": r.dtype.name,
        "channel_axis": bool(a.get("channel_axis", True)), "mode": a.get("mode"),
        "bounds": [float(b) for b in a.get("bounds", [])],
        "value_range": [float(v) for v in a.get("value_range", [])], "policy": r.policy(),
        "predictor": r.predictor(), "model_embedded": bool(a.get("model_embedded")),
        "codec": json.loads(r.codec_json()), "input_bytes": int(a.get("input_bytes", 0)),
        "archive_bytes": os.path.getsize(archive), "payload_bytes": int(sizes.sum()),
        "model_bytes": r.model_size(),
        "keyframes": int(r.keyframes.sum()), "mpi_ranks": int(a.get("mpi_ranks", 1)),
        "chunks": [{"index": i, "first_frame": int(r.index["first_frame"][i]),
                    "frames": int(r.index["n_frames"][i]), "bytes": int(sizes[i])} for i in range(r.n_chunks)],
        "source_kind": a.get("source_kind"), "image_mode": a.get("image_mode"),
        "source_path": a.get("source_path"), "source_attrs": r.source_attrs(), "source_groups": r.source_groups(),
    }

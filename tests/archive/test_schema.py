"""The archive package's seams: the schema's fixed predictor names against the registry, the
names format.py keeps importable, and the version below everything."""

from __future__ import annotations


def test_the_recorded_predictor_names_are_the_registry_names():
    """archive/ checks a recorded name against its own fixed list (it never imports predict/):
    that list and the registry's names must be the same set."""
    from tezip_hpc.archive.schema import PREDICTOR_NAMES
    from tezip_hpc.predict.registry import predictor_names

    assert set(PREDICTOR_NAMES) == set(predictor_names())


def test_format_keeps_the_names_its_importers_use():
    from tezip_hpc.archive import format as fmt
    from tezip_hpc.archive import schema, writer

    for name in ("ArchiveReader", "ArchiveWriter", "ChunkEntry", "archive_attrs", "describe",
                 "predictor_attrs", "sha256_hex", "fixed_str", "meta_digest", "index_digest", "INDEX_FIELDS",
                 "ARCHIVE_VERSION"):
        assert hasattr(fmt, name), name
    assert fmt.ArchiveWriter is writer.ArchiveWriter and fmt.meta_digest is schema.meta_digest


def test_the_version_lives_below_everything():
    import tezip_hpc
    from tezip_hpc._version import __version__

    assert tezip_hpc.__version__ == __version__
    assert schema_tool_version() == __version__


def schema_tool_version() -> str:
    from tezip_hpc.archive.schema import base_attrs

    return base_attrs()["tool_version"]


def test_payload_placement_lays_payloads_back_to_back():
    from tezip_hpc.archive.writer import placements

    assert placements(10, [b"ab", b"", b"cde"]) == [(10, 2), (12, 0), (12, 3)]
    assert placements(0, []) == []

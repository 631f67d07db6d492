"""The typed manifest: the JSON nsync writes round-trips unchanged, old formats still read,
a newer format is refused with "upgrade", and a malformed manifest names the backup and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nsync_dagster.errors import BackupStoreError, ManifestError
from nsync_dagster.manifest import (
    MANIFEST_FORMAT,
    DataFacts,
    Manifest,
    Matview,
    Role,
    Sequence,
    Table,
)
from nsync_dagster.postgres import dbstats
from nsync_dagster_tests.support.manifests import FORMAT_2, before_upload, format_1

FIXTURE = Path(__file__).parent.parent / "fixtures" / "manifest-format-4.json"
WHERE = "s3://nsync-test/nsync/2026/11/06/20261106T060000Z/"


def test_format_2_round_trips_to_the_same_json():
    text = json.dumps(FORMAT_2, indent=2, sort_keys=True)
    m = Manifest.from_json(text.encode(), WHERE)
    assert m.to_json() == text
    assert m.format == 2 and MANIFEST_FORMAT == 4
    assert m.tables["app.users"].rows == 3 and m.tables["app.users"].checksum == "-123456"
    assert set(m.checksum_methods().values()) == {"text"}  # format 2: hashtext of the row text
    assert m.sequences["app.users_id_seq"].last_value == 3
    assert m.memberships[0].set_option is True and m.roles[0].settings == ["search_path=app"]
    assert m.database.role_settings == {"app_reader": ["work_mem=64MB"]}
    assert m.zstd_level == 1 and not m.encrypted and m.rows == 3 and m.stored_bytes == 49
    bundle = m.objects["dump/small-tables.tar.zst"]
    assert bundle.compressed and bundle.members["3002.dat"].raw_size == 8
    assert not m.objects["roles.sql"].compressed


def test_format_1_reads_into_the_model_and_writes_back_unchanged():
    old = format_1()
    text = json.dumps(old, indent=2, sort_keys=True)
    m = Manifest.from_json(text, WHERE)
    assert m.format == 1 and m.zstd_level == 0 and m.compression == "none"
    # facts the first format did not record stay "not recorded", not "empty"
    assert m.roles[0].settings is None
    assert m.database.settings is None and m.database.role_settings is None
    assert not any(o.compressed for o in m.objects.values())
    assert m.to_json() == text  # no defaults added: the document keeps its old shape


def test_format_3_names_how_each_table_was_checksummed():
    doc = copy.deepcopy(FORMAT_2)
    doc["format"] = 3
    doc["tables"]["app.events"] = {"rows": 2, "checksum": "record:-77"}
    doc["tables"]["app.flags"] = {"rows": 1}  # checksums off
    m = Manifest.from_json(json.dumps(doc), WHERE)
    methods = m.checksum_methods()
    assert methods["app.users"] == "text" and methods["app.events"] == "record"
    assert m.tables["app.flags"].checksum_method is None


def test_format_4_names_its_own_checksum_methods():
    """``row:`` and ``rowtext:`` (format 4) beside the older ``record:`` and bare text ones."""
    doc = copy.deepcopy(FORMAT_2)
    doc["format"] = 4
    doc["tables"] = {"a.r": {"rows": 2, "checksum": "row:-9223372036854775809"},
                     "a.t": {"rows": 2, "checksum": "rowtext:42"},
                     "a.old": {"rows": 1, "checksum": "record:7"},
                     "a.text": {"rows": 1, "checksum": "-5"}}
    m = Manifest.from_json(json.dumps(doc), WHERE)
    assert m.checksum_methods() == {"a.r": "row", "a.t": "rowtext", "a.old": "record",
                                    "a.text": "text"}


def test_objects_digest_is_the_one_the_dict_code_computed():
    """``objects_sha256`` in the asset metadata and the digest must not change with the model."""
    import hashlib

    want = hashlib.sha256(json.dumps(FORMAT_2["objects"], sort_keys=True).encode()).hexdigest()
    assert Manifest.from_dict(copy.deepcopy(FORMAT_2)).objects_digest() == want


def _facts_json(facts: DataFacts) -> dict:
    return {s: {k: v.as_json() for k, v in facts.section(s).items()}
            for s in ("tables", "matviews", "sequences")}


def test_data_facts_are_what_dbstats_compares():
    m = Manifest.from_dict(copy.deepcopy(FORMAT_2))
    assert _facts_json(m.data_facts()) == {
        "tables": FORMAT_2["tables"], "matviews": FORMAT_2["matviews"],
        "sequences": FORMAT_2["sequences"]}
    assert _facts_json(m.data_facts({"app.users"})) == {
        "tables": {"app.users": FORMAT_2["tables"]["app.users"]}, "matviews": {},
        "sequences": {}}
    assert m.data_facts().rows == 3 and m.data_facts({"app.orders"}).rows == 0


def test_compare_names_each_difference_and_skips_facts_one_side_lacks():
    """The verification's comparison on typed facts: a checksum the copy was not asked for is
    not compared, a missing or extra relation and a changed figure are each one line."""
    want = Manifest.from_dict(copy.deepcopy(FORMAT_2)).data_facts()
    got = DataFacts(tables={"app.users": Table(rows=4), "app.extra": Table(rows=0)},
                    matviews={"app.user_totals": Matview(populated=False)},
                    sequences={"app.users_id_seq": Sequence(last_value=3, is_called=True)})
    assert dbstats.compare(want, got) == [
        "table app.orders is missing", "table app.extra exists but is not in the backup",
        "table app.users: rows is 4, expected 3",
        "matview app.user_totals: populated is False, expected True"]
    assert dbstats.compare(want, want) == []


def test_a_manifest_the_snapshot_wrote_round_trips_byte_for_byte():
    """``fixtures/manifest-format-4.json`` is a manifest.json as ``take_snapshot`` wrote it
    before the data facts were typed (format 4: row/rowtext checksums, role and database
    settings, memberships with their options). It reads into the model and is written back
    byte for byte, and every record keeps exactly the keys it had (none added as null)."""
    text = FIXTURE.read_text()
    m = Manifest.from_json(text, WHERE)
    assert m.to_json() == text
    assert m.checksum_methods() == {"app.empty": "row", "app.plans": "rowtext",
                                    "app.users": "row"}
    assert m.database.role_settings == {"neondb_owner": ["search_path=app, public"]}
    assert m.sequences["app.users_id_seq"] == Sequence(last_value=50, is_called=True)
    # the typed records dbstats returns write the same JSON as the dicts it returned before
    doc = json.loads(text)
    assert [r.as_json() for r in m.roles] == doc["roles"]
    assert [x.as_json() for x in m.memberships] == doc["memberships"]
    assert Role(**doc["roles"][0]).as_json() == doc["roles"][0]
    rebuilt = Manifest(**{k: getattr(m, k) for k in doc})
    assert rebuilt.to_json() == text
    # uploaded: the upload's fields are added, nothing else changes
    up = m.model_copy(update={"uploaded_at": "2026-11-27T06:01:00+00:00"})
    assert {k: v for k, v in json.loads(up.to_json()).items() if k != "uploaded_at"} == doc


def test_a_newer_format_is_refused_with_upgrade():
    newer = {**copy.deepcopy(FORMAT_2), "format": MANIFEST_FORMAT + 1, "tables": "changed"}
    with pytest.raises(ManifestError) as err:
        Manifest.from_json(json.dumps(newer), WHERE)
    text = str(err.value)
    assert WHERE in text and f"manifest format {MANIFEST_FORMAT + 1}" in text
    assert "newer nsync" in text and "upgrade nsync" in text
    assert isinstance(err.value, BackupStoreError)  # the restore's own failure class


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["tables"]["app.users"].update(rows="many"), "tables.app.users.rows"),
    (lambda d: d["database"].pop("encoding"), "database.encoding"),
    (lambda d: d["objects"]["roles.sql"].pop("sha256"), "objects.roles.sql.sha256"),
    (lambda d: d["memberships"][0].pop("set"), "memberships.0.set"),
    (lambda d: d.pop("backup_id"), "backup_id"),
    (lambda d: d.update(format=0), "format"),
])
def test_a_malformed_manifest_names_the_backup_and_the_field(change, field):
    doc = copy.deepcopy(FORMAT_2)
    change(doc)
    with pytest.raises(ManifestError) as err:
        Manifest.from_json(json.dumps(doc), WHERE)
    text = str(err.value)
    assert text.startswith(f"backup {WHERE}: manifest.json is not valid: ")
    assert f"{field}:" in text, text


def test_not_json_and_not_an_object_are_named():
    with pytest.raises(ManifestError, match="backup x: manifest.json is not JSON"):
        Manifest.from_json(b"{truncated", "x")
    with pytest.raises(ManifestError, match="is not a JSON object"):
        Manifest.from_json(b"[]", "x")


def test_unknown_compression_says_a_newer_nsync_wrote_it():
    m = before_upload(compression="brotli:3")
    with pytest.raises(ManifestError, match="unknown object compression 'brotli:3'.*newer"):
        _ = m.zstd_level


def test_unknown_keys_of_a_known_format_are_kept():
    """A later nsync may add a fact without a new format: an older one keeps it on rewrite."""
    doc = {**copy.deepcopy(FORMAT_2), "written_by": "nsync 9"}
    doc["tables"]["app.users"]["bytes"] = 123
    m = Manifest.from_dict(doc)
    again = json.loads(m.to_json())
    assert again["written_by"] == "nsync 9" and again["tables"]["app.users"]["bytes"] == 123


def test_upload_fields_added_by_model_copy_are_written():
    m = before_upload()
    assert "objects" not in json.loads(m.to_json())  # not uploaded yet
    done = m.model_copy(update={"uploaded_at": "2026-11-06T06:01:00+00:00"})
    assert json.loads(done.to_json())["uploaded_at"] == "2026-11-06T06:01:00+00:00"

"""The access list (``access-list.yaml``) is read strictly: each mistake in it is named with the
principal and field, and a missing file names ``NSYNC_ACCESS_LIST``. The review against real
servers is ``integration/test_access_review.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsync_dagster.errors import ConfigError
from nsync_dagster.security.access_list import load_access_list
from nsync_dagster_tests.support.env import REPO


@pytest.mark.parametrize("change, message", [
    (("kind: person\n    owner: data", "kind: robot\n    owner: data", 1),
     "principals[1] (analyst): kind 'robot'"),
    (("    owner: data team\n", "", 1), "principals[1] (analyst): field 'owner' is required"),
    (("roles: [app_ro]\n", "roles: app_ro\n", 1), "principals[1] (analyst): roles must be a list"),
    (("attributes: [createdb, createrole", "attributes: [superpowers", 1),
     "principals[0] (neondb_owner): attributes: superpowers not one of"),
    (("reviewed: 2026-11-01\n", "reviewed: last week\n", 1), "field 'reviewed' must be a date"),
    (("- name: support_agent", "- name: analyst", 1), "analyst is listed twice"),
    (("    purpose: \"Read-only", "    purpse: \"Read-only", 1), "unknown field(s) purpse"),
])
def test_bad_access_list_is_named(tmp_path, change, message):
    path = tmp_path / "list.yaml"
    path.write_text((REPO / "access-list.yaml").read_text().replace(*change))
    with pytest.raises(ConfigError) as err:
        load_access_list(path)
    assert message in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="NSYNC_ACCESS_LIST"):
        load_access_list(Path(tmp_path / "absent.yaml"))

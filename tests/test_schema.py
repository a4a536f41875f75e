"""The idempotent migration on chDB: a database made by an earlier version gets what this
one adds (columns, tables), and running it again changes nothing."""

from __future__ import annotations

import dataclasses

from contract.kinds import SPECS
from sinks.clickhouse.schema import migrate
from sinks.clickhouse.store import Store
from tests.scenario import insert_events
from tests.sink_data import T0, sms


def _columns(store: Store, table: str) -> set[str]:
    rows = store.query(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
        {"db": store.database, "t": table},
    )
    return {str(r[0]) for r in rows}


def test_an_earlier_database_gets_the_new_columns_and_keeps_its_rows(store: Store) -> None:
    insert_events(store, [sms("SM1", "sent", T0)])
    for spec in SPECS.values():  # as a database made before parse_errors existed
        store.command(f"ALTER TABLE {store.table(spec.table)} DROP COLUMN parse_errors")
    migrate(store)
    migrate(store)
    for spec in SPECS.values():
        assert "parse_errors" in _columns(store, spec.table)
    unreadable = sms("SM2", "sent", T0, num_media=None)
    insert_events(store, [dataclasses.replace(unreadable, parse_errors={"NumMedia": "two"})])
    rows = store.query(
        f"SELECT message_sid, num_media, parse_errors FROM {store.table('sms_events')} FINAL "
        "ORDER BY message_sid"
    )
    assert rows == [("SM1", None, {}), ("SM2", None, {"NumMedia": "two"})]

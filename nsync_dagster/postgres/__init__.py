"""Everything that talks to PostgreSQL: connection targets (pgconn; their TLS policy: tls),
client binaries, snapshot (its transaction: snaptx; sequence values from the dump: dumpseq),
restore, roles, swap, table statistics.
"""

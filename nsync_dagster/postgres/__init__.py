"""Everything that talks to PostgreSQL: connection targets, client binaries, snapshot, restore,
roles, swap, table statistics.
"""

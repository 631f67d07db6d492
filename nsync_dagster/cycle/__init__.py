"""The daily cycle as plain steps (pre-flight, snapshot, backup, staging), restore-anywhere and the
recovery test.
"""

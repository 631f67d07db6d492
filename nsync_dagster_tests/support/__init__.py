"""What the tests share besides fixtures: the test servers' names and credentials, the contract's
environment, running the daily job, and the stand-ins and probes some tests need.

``conftest.py`` holds only the fixtures (the servers themselves); tests import helpers from here:

* ``credentials``: the test servers' passwords and keys, and the leak check that searches for them;
* ``servers``: the Neon-shaped clusters' names, starting one, databases and buckets on them;
* ``env``: the repository's root, the contract's ``NSYNC_*`` variables for the test servers;
* ``runs``: the daily and retention jobs run in-process, a run that fails at once, the failure
  text, the event log;
* ``processes``: child processes' environments, Dagster homes, ``nsync`` as a subprocess;
* ``clock``: the fixed instants tests pass as ``now`` (no outcome depends on the hour);
* ``oracle``: the independent judge of a round trip (production's picture against staging's);
* ``livedb``: a busy production (writers, saboteurs, the test's own dump processes);
* ``manifests``: manifests as nsync writes them, older formats included;
* ``pausing``: a ``pg_restore`` that stops itself at a chosen phase;
* ``receivers``: HTTP and SMTP receivers for notifications and heartbeats;
* ``s3_proxy``: an HTTP proxy in front of the S3 endpoint that injects faults;
* ``iam_moto``: moto with IAM authorization on, for least-privilege tests;
* ``retention``: policies, day sets, and backups as S3 holds them (objects and markers);
* ``older_server``: production and staging on Debian's PostgreSQL 15;
* ``dockerfile``: ``deploy/Dockerfile`` read as its instructions;
* ``notifications``, ``age``, ``runbook``: the inputs shared by a unit test and the integration
  test of the same subject.

What two test modules share lives here, not in one of them (``unit/test_support_layout.py``
checks that, and that ``conftest.py`` files define fixtures only).

The Neon control-plane stand-in (``neon_standin.py``, ``neon_standin_server.py``,
``neon_copy.py``) stays beside this package, at the top of ``nsync_dagster_tests``.
"""

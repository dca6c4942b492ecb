"""The development harness: what tests, benchmarks and the demo run the backend with.

* ``fakels``: a fake Label Studio served over real HTTP (and the ``ls`` and ``foreign`` fixtures);
* ``synthetic``: sensor recordings with planted events, as tasks in memory or as CSV files;
* ``served``: a WSGI app (the Flask app, the fake) on a free loopback port in a thread;
* ``processes``: the backend under gunicorn as ./start.sh runs it, and a real Label Studio;
* ``lsdriver``: Label Studio's REST API used as a user does, and a project walked through it;
* ``ports`` / ``waiting``: free ports, polling, waiting until a project's training is idle.

Nothing here is part of the service: the runtime package is ``segmenter``.  Import it from
the repository root (pytest and ``python -m bench.…`` / ``python -m scripts.demo`` run there).
"""


class DriverError(RuntimeError):
    """A process or a REST call did not do what the harness needs."""

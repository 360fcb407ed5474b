"""Run by Python at start-up in each process whose PYTHONPATH holds this folder (the processes
a test armed with `shardvec_test_observers.hooked_env`): installs the armed observers."""

import os

if os.environ.get("SHARDVEC_TEST_PAUSE_FILE") or os.environ.get("SHARDVEC_TEST_HOLD_FILE"):
    try:
        import shardvec_test_observers
    except ImportError:  # a process without shardvec (a tool Ray starts): nothing to observe
        pass
    else:
        shardvec_test_observers.install()

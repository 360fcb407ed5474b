"""The test suite's hooks into running processes: kill points and lost layout pushes.

Production code passes named points (shardvec/coordinator/phases.py) and never imports this
package. A test arms a hook through the environment of the processes it starts;
`sitecustomize.py` here, on their PYTHONPATH (`hooked_env`), installs the observers at start-up
in every process of the test's cluster (servers and Ray workers alike).
"""

"""`python -m shardvec.bench NAME [options]`: the same commands as `shardvec bench NAME`."""

from shardvec.bench.cli import bench

if __name__ == "__main__":
    bench(prog_name="python -m shardvec.bench")

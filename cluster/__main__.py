from shardvec.cluster.cli import main

main()

"""Built-in benchmarks: every module here registers one or more classes with aifbench.benchmarks.registry."""

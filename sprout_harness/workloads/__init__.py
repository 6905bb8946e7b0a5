"""The workload catalog: dataset builders, phases (one module each) and suites, by name."""
